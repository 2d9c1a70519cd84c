"""Brian2's STDP example (Song, Miller & Abbott 2000) in cpp_standalone mode, the anchor
bench/stdp/song2000_bench.py measures libbrain against (Debian's python3-brian, on the system
interpreter):

    /usr/bin/python3 bench/stdp/brian2_song2000.py N DURATION_S BUILD_DIR

N Poisson inputs at 15 Hz onto one conductance-based integrate-and-fire neuron through
synapses learning by additive STDP (Brian2's examples/synapses/STDP.py, the neuron starting at
its reset potential; gmax = 0.01 * 1000 / N, so that the drive does not grow with N), dt 0.1 ms,
forward Euler, one thread. Prints one JSON line: the loop
time Brian2 itself measured (device._last_run_time; compilation excluded), the output rate,
and the final weights' mean and fraction above gmax / 2 (the bimodal distribution the rule
makes).
"""

import json
import sys
import time

from brian2 import (Network, NeuronGroup, PoissonGroup, SpikeMonitor, Synapses, defaultclock, device, Hz, mV, ms,
                    prefs, seed, set_device)


def main():
    n, duration_s, build_dir = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    set_device("cpp_standalone", directory=build_dir, build_on_run=True)
    prefs.devices.cpp_standalone.openmp_threads = 0  # one thread, as the anchor
    seed(7)
    defaultclock.dt = 0.1 * ms
    gmax = 0.01 * 1000 / n  # the example's 0.01 at its N = 1000
    namespace = dict(taum=10 * ms, taupre=20 * ms, taupost=20 * ms, Ee=0 * mV, vt=-54 * mV, vr=-60 * mV, El=-74 * mV,
                     taue=5 * ms, gmax=gmax, dApre=0.01 * gmax, dApost=-0.01 * gmax * 1.05)
    inputs = PoissonGroup(n, rates=15 * Hz)
    neuron = NeuronGroup(1, """dv/dt = (ge * (Ee - v) + El - v) / taum : volt
                               dge/dt = -ge / taue : 1""", threshold="v > vt", reset="v = vr", method="euler",
                         namespace=namespace)
    neuron.v = "vr"
    S = Synapses(inputs, neuron, """w : 1
                 dApre/dt = -Apre / taupre : 1 (event-driven)
                 dApost/dt = -Apost / taupost : 1 (event-driven)""",
                 on_pre="""ge += w
                 Apre += dApre
                 w = clip(w + Apost, 0, gmax)""",
                 on_post="""Apost += dApost
                 w = clip(w + Apre, 0, gmax)""", namespace=namespace)
    S.connect()
    S.w = "rand() * gmax"
    spikes = SpikeMonitor(neuron, record=False)
    start = time.perf_counter()
    Network(inputs, neuron, S, spikes).run(duration_s * 1000 * ms)
    total = time.perf_counter() - start
    loop = float(device._last_run_time)
    w = S.w[:] / gmax
    print(json.dumps({"n": n, "duration_s": duration_s, "loop_seconds": loop,
                      "seconds_per_simulated_second": loop / duration_s, "build_and_run_seconds": total,
                      "rate_hz": float(spikes.count[0]) / duration_s, "mean_weight": float(w.mean()),
                      "strong_fraction": float((w > 0.5).mean())}))


if __name__ == "__main__":
    main()
