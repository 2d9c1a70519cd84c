"""Run the COBA E/I network (Vogels & Abbott 2005; Brette et al. 2007) from Python and plot a
spike raster with matplotlib.

    python3 examples/coba_raster.py [--duration 1000] [--n-exc 3200 --n-inh 800] [--out coba_raster.png]
"""

import argparse
import os

import torch

import brain


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=1000.0, help="ms")
    ap.add_argument("--n-exc", type=int, default=3200)
    ap.add_argument("--n-inh", type=int, default=800)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures",
                                                  "coba_raster.png"))
    args = ap.parse_args(argv)

    # Connection probability scaled so every neuron keeps ~80 excitatory inputs at any size.
    p = min(1.0, 0.02 * 4000 / (args.n_exc + args.n_inh))
    net = brain.models.ei_network("coba", seed=args.seed, device=args.device, n_exc=args.n_exc, n_inh=args.n_inh, p=p)
    drive = [{"path": "E.input", "value": 20.0, "add": False}, {"path": "I.input", "value": 20.0, "add": False}]
    runner = brain.models.Runner(net, dt=0.1, monitors=["E.spike", "I.spike", ("E.V", [0, 1, 2])], inputs=drive,
                                 progress=True)
    result = runner.run(args.duration)
    seconds = args.duration / 1000
    for pop in ("E", "I"):
        spikes = result[f"{pop}.spike"]
        print(f"{pop}: {spikes.sum().item() / (spikes.shape[1] * seconds):.2f} Hz")
    print(f"simulated {args.duration:g} ms in {result['wall_seconds']:.2f} s")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_v) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    shown = min(400, args.n_exc)
    for pop, offset, colour in (("E", 0, "tab:blue"), ("I", shown, "tab:red")):
        spikes = result[f"{pop}.spike"][:, :min(shown // 4 if pop == "I" else shown, result[f"{pop}.spike"].shape[1])]
        t_idx, n_idx = spikes.nonzero(as_tuple=True)
        ax.scatter(result["t"][f"{pop}.spike"][t_idx], n_idx + offset, s=0.5, color=colour, label=pop)
    ax.set_ylabel("neuron")
    ax.legend(loc="upper right", markerscale=10)
    ax.set_title(f"COBA E/I network, {args.n_exc} + {args.n_inh} LIF neurons")
    ax_v.plot(result["t"]["E.V"], result["E.V"])
    ax_v.set_xlabel("time (ms)")
    ax_v.set_ylabel("V (mV)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
