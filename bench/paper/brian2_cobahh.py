"""Brian2's COBA-HH network (its COBAHH example; Brette et al. 2007 benchmark 3) in
cpp_standalone mode, one thread (Debian's python3-brian, on the system interpreter):

    /usr/bin/python3 bench/paper/brian2_cobahh.py N DURATION_MS BUILD_DIR

N neurons (80% excitatory) at p = 80 / N (the example's 4000 at p = 0.02), dt = 0.1 ms,
exponential Euler. Prints one JSON line: the loop time Brian2 measured (compilation excluded)
and the rates.
"""

import json
import sys
import time

from brian2 import (Equations, Network, NeuronGroup, SpikeMonitor, Synapses, cm, defaultclock, device, exp, exprel,
                    mV, ms, msiemens, nS, prefs, second, seed, set_device, siemens, ufarad, umetre)


def main():
    size, duration_ms, build_dir = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    set_device("cpp_standalone", directory=build_dir, build_on_run=True)
    prefs.devices.cpp_standalone.openmp_threads = 0
    seed(42)
    defaultclock.dt = 0.1 * ms
    area = 20000 * umetre ** 2
    ns = dict(Cm=(1 * ufarad * cm ** -2) * area, gl=(5e-5 * siemens * cm ** -2) * area, El=-60 * mV, EK=-90 * mV,
              ENa=50 * mV, g_na=(100 * msiemens * cm ** -2) * area, g_kd=(30 * msiemens * cm ** -2) * area,
              VT=-63 * mV, taue=5 * ms, taui=10 * ms, we=6 * nS, wi=67 * nS, Ee=0 * mV, Ei=-80 * mV, exprel=exprel,
              exp=exp)
    eqs = Equations("""
    dv/dt = (gl*(El-v)+ge*(Ee-v)+gi*(Ei-v)-g_na*(m*m*m)*h*(v-ENa)-g_kd*(n*n*n*n)*(v-EK))/Cm : volt
    dm/dt = alpha_m*(1-m)-beta_m*m : 1
    dn/dt = alpha_n*(1-n)-beta_n*n : 1
    dh/dt = alpha_h*(1-h)-beta_h*h : 1
    dge/dt = -ge*(1./taue) : siemens
    dgi/dt = -gi*(1./taui) : siemens
    alpha_m = 0.32*(mV**-1)*4*mV/exprel((13*mV-v+VT)/(4*mV))/ms : Hz
    beta_m = 0.28*(mV**-1)*5*mV/exprel((v-VT-40*mV)/(5*mV))/ms : Hz
    alpha_h = 0.128*exp((17*mV-v+VT)/(18*mV))/ms : Hz
    beta_h = 4./(1+exp((40*mV-v+VT)/(5*mV)))/ms : Hz
    alpha_n = 0.032*(mV**-1)*5*mV/exprel((15*mV-v+VT)/(5*mV))/ms : Hz
    beta_n = .5*exp((10*mV-v+VT)/(40*mV))/ms : Hz
    """)
    P = NeuronGroup(size, model=eqs, threshold="v>-20*mV", refractory=3 * ms, method="exponential_euler", namespace=ns)
    n_exc = size * 4 // 5
    Pe, Pi = P[:n_exc], P[n_exc:]
    Ce = Synapses(Pe, P, on_pre="ge+=we", namespace=ns)
    Ci = Synapses(Pi, P, on_pre="gi+=wi", namespace=ns)
    Ce.connect(p=80.0 / size)
    Ci.connect(p=80.0 / size)
    P.v = "El + (randn() * 5 - 5)*mV"
    P.ge = "(randn() * 1.5 + 4) * 10.*nS"
    P.gi = "(randn() * 12 + 20) * 10.*nS"
    mon = SpikeMonitor(P, record=False)
    start = time.perf_counter()
    Network(P, Ce, Ci, mon).run(duration_ms * ms)
    total = time.perf_counter() - start
    loop = float(device._last_run_time)
    sim_s = duration_ms / 1000.0
    counts = mon.count[:]
    print(json.dumps({"n": size, "duration_ms": duration_ms, "loop_seconds": loop,
                      "seconds_per_simulated_second": loop / sim_s, "build_and_run_seconds": total,
                      "rates_hz": {"E": float(counts[:n_exc].sum()) / (n_exc * sim_s),
                                   "I": float(counts[n_exc:].sum()) / ((size - n_exc) * sim_s)}}))


if __name__ == "__main__":
    main()
