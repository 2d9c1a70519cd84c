"""Brian2's COBA E/I network in cpp_standalone mode, the anchor the fast engine is measured
against (Debian's python3-brian, on the system interpreter):

    /usr/bin/python3 bench/coba/brian2_coba.py N DURATION_MS BUILD_DIR [--method euler|exponential_euler]
                                               [--delay-steps-max D [--delay-step-spacing S]]
                                               [--stdp A_PLUS,A_MINUS,W_MAX]

The network of models/coba.json scaled to N neurons (80% excitatory) at 80 synapses per
neuron (p = 80 / N), dt = 0.1 ms, one thread. With --delay-steps-max, every synapse gets a delay
of its own, S * randint(0, D // S + 1) steps (bench/coba/delays_bench.py draws ours alike).
With --stdp, E->E synapses carry a weight each (starting at we) and learn by pair-based
additive STDP (bench/coba/stdp_bench.py): traces of 20 ms; a presynaptic spike delivers w, then
w = clip(w - A_MINUS * apost, 0, W_MAX) and apre += 1; a postsynaptic spike
w = clip(w + A_PLUS * apre, 0, W_MAX) and apost += 1 (Brian2's traces are per synapse and
event-driven). Prints one JSON line: the loop time Brian2 itself measured
(device._last_run_time; compilation excluded), the build time, the rates and, with --stdp,
the E->E weights' mean at the end.
"""

import json
import sys
import time

from brian2 import (Network, NeuronGroup, SpikeMonitor, Synapses, defaultclock, device, ms, prefs, seed,
                    set_device)


def main():
    n, duration_ms, build_dir = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    options = dict(zip(sys.argv[4::2], sys.argv[5::2]))
    method = options.get("--method", "euler")
    delay_max = int(options.get("--delay-steps-max", 0))
    delay_spacing = int(options.get("--delay-step-spacing", 1))
    stdp = [float(x) for x in options["--stdp"].split(",")] if "--stdp" in options else None
    set_device("cpp_standalone", directory=build_dir, build_on_run=True)
    prefs.devices.cpp_standalone.openmp_threads = 0  # one thread, as the anchor
    seed(42)
    defaultclock.dt = 0.1 * ms
    n_exc = n * 4 // 5
    n_inh = n - n_exc
    p = 80.0 / n
    namespace = dict(taum=20 * ms, taue=5 * ms, taui=10 * ms, El=-60.0, Vt=-50.0, Vr=-60.0, Ee=0.0, Ei=-80.0,
                     I=20.0, we=0.6, wi=6.7)
    eqs = """
    dv/dt = (ge*(Ee-v) + gi*(Ei-v) - (v-El) + I)/taum : 1 (unless refractory)
    dge/dt = -ge/taue : 1
    dgi/dt = -gi/taui : 1
    """
    groups = {}
    for name, size in (("E", n_exc), ("I", n_inh)):
        g = NeuronGroup(size, eqs, threshold="v > Vt", reset="v = Vr", refractory=5 * ms, method=method,
                        namespace=namespace, name=name)
        g.v = "-55 + 2*randn()"
        groups[name] = g
    synapses = []
    for pre, post in (("E", "E"), ("E", "I"), ("I", "E"), ("I", "I")):
        if stdp and pre == post == "E":
            rule = dict(namespace, taupre=20 * ms, taupost=20 * ms, Ap=stdp[0], Am=stdp[1], wmax=stdp[2])
            S = Synapses(groups[pre], groups[post],
                         model="""w : 1
                         dapre/dt = -apre/taupre : 1 (event-driven)
                         dapost/dt = -apost/taupost : 1 (event-driven)""",
                         on_pre="""ge += w
                         w = clip(w - Am*apost, 0, wmax)
                         apre += 1""",
                         on_post="""w = clip(w + Ap*apre, 0, wmax)
                         apost += 1""",
                         namespace=rule, name=f"{pre}2{post}")
            plastic = S
        else:
            S = Synapses(groups[pre], groups[post], on_pre="ge += we" if pre == "E" else "gi += wi",
                         namespace=namespace, name=f"{pre}2{post}")
        S.connect(condition="i != j" if pre == post else None, p=p)
        if stdp and pre == post == "E":
            S.w = "we"
        if delay_max:
            S.delay = f"{delay_spacing} * floor(rand() * {delay_max // delay_spacing + 1}) * 0.1*ms"
        synapses.append(S)
    monitors = {name: SpikeMonitor(g, record=False) for name, g in groups.items()}
    start = time.perf_counter()
    # An explicit Network: Brian2's implicit one only sees objects bound to local names.
    Network(*groups.values(), *synapses, *monitors.values()).run(duration_ms * ms)
    total = time.perf_counter() - start
    loop = float(device._last_run_time)
    sim_s = duration_ms / 1000.0
    rates = {name: float(m.count[:].sum()) / (groups[name].N * sim_s) for name, m in monitors.items()}
    record = {"n": n, "duration_ms": duration_ms, "loop_seconds": loop, "seconds_per_simulated_second": loop / sim_s,
              "build_and_run_seconds": total, "rates_hz": rates, "method": method, "delay_steps_max": delay_max}
    if stdp:
        record["stdp"] = stdp
        record["mean_weight"] = float(plastic.w[:].mean())
    print(json.dumps(record))


if __name__ == "__main__":
    main()
