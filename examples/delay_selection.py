"""STDP on synapses with delays of their own selects the synapses whose spikes arrive together
(Gerstner, Kempter, van Hemmen & Wagner 1996; the mechanism behind Izhikevich's 2006
polychronous groups), then plots the learnt weights against each synapse's arrival time.

    python3 examples/delay_selection.py [--seconds 10] [--n-in 200] [--out delay_selection.png]

Each input neuron fires once per cycle, at a phase of its own; each of its synapses onto one
LIF neuron has an axonal delay of its own, so its spikes arrive at phase + delay. Pair-based
STDP (Song, Miller & Abbott 2000) applied at each spike's arrival, as BrainPy cannot (it has no
per-synapse delays) and as Brian2 does with `on_pre` after `Synapses.delay`, potentiates the
synapses whose spikes arrive just before the neuron fires and depresses those arriving after,
whatever the phase they were sent at: the neuron comes to read the inputs whose delays line
their spikes up.
"""

import argparse
import os

import torch

import brain


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="simulated seconds of learning")
    ap.add_argument("--n-in", type=int, default=200)
    ap.add_argument("--period", type=float, default=50.0, help="ms between an input's spikes")
    ap.add_argument("--dt", type=float, default=0.1, help="ms")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures",
                                                  "delay_selection.png"))
    args = ap.parse_args(argv)
    m = brain.models
    n, period, dt = args.n_in, args.period, args.dt

    g = torch.Generator().manual_seed(args.seed)
    phase = torch.rand(n, generator=g, dtype=torch.float64) * 0.6 * period  # ms within the cycle
    delay_steps = ((1.0 + torch.rand(n, generator=g, dtype=torch.float64) * 19.0) / dt).round().long()  # 1-20 ms
    cycles = int(args.seconds * 1000 / period)
    times = (phase[:, None] + period * torch.arange(cycles, dtype=torch.float64)[None, :]).flatten()
    senders = torch.arange(n)[:, None].expand(n, cycles).flatten()

    net = m.Network()
    inputs = net.add("inputs", m.SpikeTimeGroup(n, senders, times))
    # Refractory for 15 ms, so that it fires once per cycle.
    neuron = net.add("neuron", m.LIF(1, tau_ref=15.0, dtype="float64"))
    # Weights in units that keep the total drive of 200 inputs at any n.
    unit = 200.0 / n
    w0 = 0.6 * unit
    # One synapse from every input onto the neuron (CSR rows are the inputs).
    comm = m.CsrComm(torch.arange(n + 1), torch.zeros(n, dtype=torch.long),
                     torch.full((n,), w0, dtype=torch.float64), n, 1)
    proj = net.add("syn", m.AlignPostProj(inputs, comm, m.Expon(1, 5.0, dtype="float64"), m.CUBA(), neuron))
    proj.add_stdp(tau_plus=20.0, tau_minus=20.0, A_plus=0.02 * unit, A_minus=0.021 * unit, w_min=0.0, w_max=1.5 * unit)
    proj.set_synapse_delays(delay_steps)
    net.reset_state()

    result = m.Runner(net, dt=dt, monitors=["neuron.spike"], progress=True).run(args.seconds * 1000.0)
    fired = result["neuron.spike"][:, 0].nonzero().flatten().double() * dt
    weights = net.state_dict()["syn.comm.weights"]
    arrival = (phase + delay_steps.double() * dt) % period
    # Where the neuron fires in the cycle at the end: its first spike in each of the last cycles.
    last = fired[fired >= fired.max() - period] if len(fired) else fired
    first_phase = float((last % period).min()) if len(last) else float("nan")
    before = (first_phase - arrival) % period  # how long before the neuron's spike each arrives
    selected = weights[before < 10.0].mean().item()
    others = weights[before >= 10.0].mean().item()
    print(f"{len(fired)} spikes in {args.seconds} s; in the last cycle the neuron fires {first_phase:.1f} ms into it")
    print(f"mean weight: arriving up to 10 ms before that {selected:.3f}, the rest {others:.3f} "
          f"(all began at {w0:.3g})")
    print(f"simulated {args.seconds} s in {result['wall_seconds']:.2f} s")

    summary = {"spike_times_ms": fired, "weights": weights, "arrival_phase_ms": arrival,
               "fire_phase_ms": first_phase, "selected_mean": selected, "others_mean": others}
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
        dots = ax.scatter(arrival, weights, s=8, c=delay_steps.double() * dt, cmap="viridis")
        fig.colorbar(dots, ax=ax, label="delay (ms)", pad=0.01)
        ax.axvline(first_phase, color="tab:red", lw=1, label="the neuron fires")
        ax.axhline(w0, color="grey", lw=0.8, ls="--", label="initial weight")
        ax.set_xlabel("arrival in the cycle: phase + delay (ms)")
        ax.set_ylabel("learnt weight")
        ax.set_xlim(0, period)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title("weights after learning")
        ax_t.scatter(fired / 1000.0, fired % period, s=3, color="tab:red")
        ax_t.set_xlabel("time (s)")
        ax_t.set_ylabel("spike phase in the cycle (ms)")
        ax_t.set_ylim(0, period)
        ax_t.set_title("the neuron's spikes")
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")
    return summary


if __name__ == "__main__":
    main()
