"""Simulates, in Brian2, the E/I network that `brain run --save-network` exported.

    /usr/bin/python3 tests/brian2/coba_brian2.py OUT_DIR CONFIG.json

Reads OUT_DIR/network.npz (every projection's CSR, optionally its per-synapse delays in steps
as "<projection>.delay_steps", and the initial potentials) and the same config, builds the
network with Brian2's own equations (forward Euler, like the config's "method": "euler";
Synapses.delay from the exported delays), simulates it for the config's duration and writes
OUT_DIR/brian2_spikes.npz with arrays i (neuron, E first then I) and step (time step).
Runs with Debian's python3-brian on the system interpreter.
"""

import json
import sys

import numpy as np
from brian2 import (Network, NeuronGroup, SpikeMonitor, Synapses, defaultclock, ms, prefs, seed)


def main():
    out_dir, config_path = sys.argv[1], sys.argv[2]
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
    net = cfg["network"]
    neuron = net["neuron"]
    assert net.get("method") == "euler", "the cross-check compares forward Euler"
    data = np.load(f"{out_dir}/network.npz")
    n_exc, n_inh = net["n_exc"], net["n_inh"]
    prefs.codegen.target = "numpy"
    seed(0)
    defaultclock.dt = cfg["run"]["dt_ms"] * ms

    coba = net["output"] == "coba"
    namespace = dict(taum=neuron["tau"] * ms, taue=net["tau_exc"] * ms, taui=net["tau_inh"] * ms,
                     El=neuron["V_rest"], Vt=neuron["V_th"], Vr=neuron["V_reset"],
                     Ee=net.get("E_exc", 0.0), Ei=net.get("E_inh", -80.0), I=net["input_current"],
                     we=net["w_exc"], wi=net["w_inh"])
    drive = "ge*(Ee-v) + gi*(Ei-v)" if coba else "ge + gi"
    eqs = f"""
    dv/dt = ({drive} - (v-El) + I)/taum : 1 (unless refractory)
    dge/dt = -ge/taue : 1
    dgi/dt = -gi/taui : 1
    """
    P = NeuronGroup(n_exc + n_inh, eqs, threshold="v > Vt", reset="v = Vr",
                    refractory=neuron["tau_ref"] * ms, method="euler", namespace=namespace)
    P.v = np.concatenate([data["E.V0"], data["I.V0"]])
    groups = {"E": (P[:n_exc], 0), "I": (P[n_exc:], n_exc)}
    synapses = []
    for name in ("E2E", "E2I", "I2E", "I2I"):
        pre, post = name[0], name[2]
        indptr, indices = data[f"{name}.indptr"].astype(np.int64), data[f"{name}.indices"].astype(np.int64)
        i = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        target = "ge += we" if pre == "E" else "gi += wi"
        S = Synapses(groups[pre][0], groups[post][0], on_pre=target, namespace=namespace)
        S.connect(i=i, j=indices)
        if f"{name}.delay_steps" in data:
            S.delay = data[f"{name}.delay_steps"] * defaultclock.dt
        synapses.append(S)
    mon = SpikeMonitor(P)
    # An explicit Network: Brian2's implicit one would miss the synapses kept in a list.
    Network(P, mon, *synapses).run(cfg["run"]["duration_ms"] * ms)
    steps = np.round(np.asarray(mon.t / defaultclock.dt)).astype(np.int64)
    np.savez(f"{out_dir}/brian2_spikes.npz", i=np.asarray(mon.i, dtype=np.int64), step=steps)


if __name__ == "__main__":
    main()
