"""libbrain against Brian2 (CPU) and plain PyTorch (GPU) on the papers' two simulation
benchmarks (Fig. 4C-D): the COBA-LIF network (Vogels-Abbott, the fast engine) and the COBA-HH
network (Brette et al. 2007 benchmark 3, also the fast engine), at 80 synapses per neuron as N
grows. Seconds per simulated second of the simulation loop (setup and compilation excluded),
and the rates, which must agree across simulators.

  brain               brain.models.ei_network / coba_hh_network, brain.models.Runner
  Brian2              bench/coba/brian2_coba.py, bench/paper/brian2_cobahh.py: cpp_standalone,
                      one thread (Debian's python3-brian on /usr/bin/python3)
  PyTorch (GPU only)  bench/coba/torch_coba.py: plain PyTorch with CUDA graphs (COBA-LIF)

    python3 bench/paper/simulators.py [--quick] [--no-brian2] [--device cuda]
"""

import json
import os
import subprocess
import tempfile
import time

import brain
from common import REPO, SYSTEM_PYTHON, Experiment, parser, pyplot


def ours(model, n, duration, device):
    m = brain.models
    if model == "lif":
        net = m.ei_network("coba", seed=1, device=device, n_exc=n * 4 // 5, n_inh=n - n * 4 // 5, p=80.0 / n,
                           method="euler")
        runner = m.Runner(net, dt=0.1, inputs={"E.input": 20.0, "I.input": 20.0}, progress=False)
    else:
        net = m.coba_hh_network(seed=1, device=device, n_exc=n * 4 // 5, n_inh=n - n * 4 // 5, p=80.0 / n)
        runner = m.Runner(net, dt=0.1, progress=False)
    t0 = time.time()
    out = runner.run(duration)
    wall = time.time() - t0
    c = out["spike_counts"]
    sim_s = duration / 1000.0
    return {"simulator": "brain", "model": model, "n": n, "engine": out["engine"],
            "seconds_per_simulated_second": wall / sim_s,
            "rates_hz": {"E": c["E"] / (n * 4 // 5) / sim_s, "I": c["I"] / (n - n * 4 // 5) / sim_s}}


def brian2(model, n, duration):
    script = os.path.join(REPO, "bench", "coba", "brian2_coba.py") if model == "lif" else \
        os.path.join(REPO, "bench", "paper", "brian2_cobahh.py")
    with tempfile.TemporaryDirectory() as build:
        r = subprocess.run([SYSTEM_PYTHON, script, str(n), str(duration), build], capture_output=True, text=True,
                           timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"Brian2 failed on {model} N={n}:\n{r.stderr[-2000:]}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {"simulator": "Brian2", "model": model, "n": n, "seconds_per_simulated_second":
            d["seconds_per_simulated_second"], "rates_hz": d["rates_hz"]}


def torch_gpu(n, duration):
    r = subprocess.run(["python3", os.path.join(REPO, "bench", "coba", "torch_coba.py"), str(n), str(duration),
                        "--device", "cuda"], capture_output=True, text=True, check=True, timeout=3600)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {"simulator": "PyTorch", "model": "lif", "n": n, "seconds_per_simulated_second":
            d["seconds_per_simulated_second"], "rates_hz": d.get("rates_hz", {})}


def brian2_available():
    return os.path.exists(SYSTEM_PYTHON) and subprocess.run([SYSTEM_PYTHON, "-c", "import brian2"],
                                                            capture_output=True).returncode == 0


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--no-brian2", action="store_true", help="libbrain only (Brian2 compiles for each point)")
    args = p.parse_args(argv)
    exp = Experiment("simulators", args)
    if args.quick:
        sizes, duration = {"lif": [1000, 4000], "hh": [1000, 4000]}, 100.0
    else:
        sizes, duration = {"lif": [4000, 16000, 64000, 256000], "hh": [4000, 8000, 16000, 32000]}, 1000.0
    use_brian2 = not args.no_brian2 and brian2_available()
    rows = []
    for model, ns in sizes.items():
        for n in ns:
            rows.append(ours(model, n, duration, args.device))
            if use_brian2:
                rows.append(brian2(model, n, duration))
            if args.device == "cuda" and model == "lif":
                rows.append(torch_gpu(n, duration))

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    for ax, model, title in ((axes[0], "lif", "COBA-LIF"), (axes[1], "hh", "COBA-HH")):
        for sim, style in (("brain", "o-"), ("Brian2", "s-"), ("PyTorch", "^-")):
            pts = [r for r in rows if r["model"] == model and r["simulator"] == sim]
            if pts:
                ax.loglog([r["n"] for r in pts], [r["seconds_per_simulated_second"] for r in pts], style, label=sim)
        ax.set(xlabel="N (neurons, 80 synapses each)", ylabel="s per simulated second", title=title)
        ax.legend(fontsize=8)
    fig.suptitle(f"Simulation speed on {args.device}" + ("" if use_brian2 else " (Brian2 not run)"))
    hh = [r for r in rows if r["model"] == "hh" and r["simulator"] == "brain"]
    claims = {"COBA-HH fires at physiological rates (5-100 Hz) at every size":
                  all(5 < r["rates_hz"][k] < 100 for r in hh for k in ("E", "I"))}
    if use_brian2:
        # Both networks are chaotic, so runs with different random draws agree only in their
        # statistics: COBA-LIF rates within a few percent; self-sustained COBA-HH rates vary by
        # +-40% from seed to seed in Brian2 and in libbrain alike at N = 1000 (measured: 19-42 Hz
        # and 25-54 Hz over 600 ms), less in larger networks. Compared at each model's largest N.
        largest = {model: max(ns) for model, ns in sizes.items()}
        pairs = [(a, b) for a in rows for b in rows if a["simulator"] == "brain" and b["simulator"] == "Brian2"
                 and a["model"] == b["model"] and a["n"] == b["n"] == largest[a["model"]]]
        tolerance = {"lif": 0.25, "hh": 0.4}
        claims["at the largest N, rates agree with Brian2's (COBA-LIF within 25%, chaotic COBA-HH within 40%)"] = \
            bool(pairs) and all(abs(a["rates_hz"][k] - b["rates_hz"][k]) <= tolerance[a["model"]] * b["rates_hz"][k]
                                for a, b in pairs for k in ("E", "I"))
    return exp.save(fig, {"rows": rows, "duration_ms": duration, "brian2": use_brian2}, claims,
                    "Simulators: COBA-LIF and COBA-HH against Brian2")


if __name__ == "__main__":
    main()
