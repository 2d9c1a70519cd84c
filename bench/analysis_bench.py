"""Timing of the analysis tools (issue 11's performance targets), written to bench/results/.

    python3 bench/analysis_bench.py [--repeats 5]

Measures, best of N runs after one warm-up:
  * Bifurcation1D of FitzHugh-Nagumo over 1,000 values of I, all fixed points and events
    (target: under 2 s on the 2-core CPU), with the built-in model and with a Python callable;
  * PhasePlane2D of FitzHugh-Nagumo at 200 x 200: vector field, nullclines and fixed points
    (target: under 1 s).
"""

import argparse
import json
import os
import platform
import time

import torch

from brain import analysis as ba

HERE = os.path.dirname(os.path.abspath(__file__))
VARS = {"v": (-3, 3), "w": (-1.5, 3)}


def fhn(v, w, I, a=0.7, b=0.8, tau=12.5):
    return v - v ** 3 / 3 - w + I, (v + a - b * w) / tau


def plain_torch_bifurcation(n=1000, grid=40, starts=8):
    """The baseline: what a PyTorch user writes without an analysis tool. Per parameter value,
    Newton (torch.func.jacrev Jacobians) from the smallest |f|^2 on a grid, de-duplicated,
    with eigenvalues; one value and one start at a time. It does not locate events."""
    v = torch.linspace(-3, 3, grid, dtype=torch.float64)
    w = torch.linspace(-1.5, 3, grid, dtype=torch.float64)
    V, W = torch.meshgrid(v, w, indexing="ij")
    field = lambda x, I: torch.stack(fhn(x[0], x[1], I))  # noqa: E731
    jac = torch.func.jacrev(field)
    found = 0
    for I in torch.linspace(0, 2, n, dtype=torch.float64):
        fv, fw = fhn(V, W, I)
        idx = (fv ** 2 + fw ** 2).flatten().topk(starts, largest=False).indices
        points = []
        for k in idx.tolist():
            x = torch.stack([V.flatten()[k], W.flatten()[k]])
            for _ in range(50):
                fx = field(x, I)
                if fx.abs().max() < 1e-10:
                    break
                x = x - torch.linalg.solve(jac(x, I), fx)
            if field(x, I).abs().max() < 1e-10 and all((x - p).abs().max() > 1e-4 for p in points):
                points.append(x)
                torch.linalg.eigvals(jac(x, I))
        found += len(points)
    return f"{found} points, no events located"


def best_of(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows = []

    def bifurcation(model):
        def run():
            t = ba.Bifurcation1D(model, variables=VARS, params={"I": (0, 2)}, resolution={"I": 1000}).compute()
            return f"{len(t['stability'])} points, events " + ", ".join(f"{e['kind']}@{e['I']:.6f}" for e in t["events"])
        return run

    def phase_plane(model):
        def run():
            pp = ba.PhasePlane2D(model, variables=VARS, params={"I": 0.8}, resolution=200)
            pp.vector_field()
            nc = pp.nullclines()
            fps = pp.fixed_points()
            return f"{sum(len(p) for p in nc.values())} nullcline points, {len(fps)} fixed point(s): " + \
                ", ".join(p["stability"] for p in fps)
        return run

    base_s, base_what = best_of(plain_torch_bifurcation, 1)
    print(f"baseline (plain PyTorch loop): {base_s:.3f} s -- {base_what}", flush=True)
    rows.append({"case": "baseline: plain PyTorch, Newton per value and start (torch.func.jacrev)",
                 "seconds": base_s, "target_s": 2.0, "result": base_what, "baseline": True})
    for name, target, fn in (
        ("Bifurcation1D FHN, 1000 values of I (built-in model)", 2.0, bifurcation("fitzhugh_nagumo")),
        ("Bifurcation1D FHN, 1000 values of I (Python callable)", 2.0, bifurcation(fhn)),
        ("PhasePlane2D FHN 200x200: field + nullclines + fixed points (built-in)", 1.0, phase_plane("fitzhugh_nagumo")),
        ("PhasePlane2D FHN 200x200: field + nullclines + fixed points (Python callable)", 1.0, phase_plane(fhn)),
    ):
        seconds, what = best_of(fn, args.repeats)
        rows.append({"case": name, "seconds": seconds, "target_s": target, "result": what})
        print(f"{name}: {seconds:.3f} s (target {target:g} s) -- {what}", flush=True)

    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    machine = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, " \
              f"{torch.get_num_threads()} threads"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "analysis_cpu.json"), "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=2)
    lines = [f"Analysis timings on {machine} (best of {args.repeats}, bench/analysis_bench.py)", "",
             "| case | time (s) | target (s) | time / target | speed-up vs plain PyTorch | result |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        speedup = "-" if "Bifurcation" not in r["case"] else f"{base_s / r['seconds']:.0f}x"
        lines.append(f"| {r['case']} | {r['seconds']:.3f} | {r['target_s']:g} | {r['seconds'] / r['target_s']:.2f} | "
                     f"{speedup} | {r['result']} |")
    with open(os.path.join(HERE, "results", "analysis_cpu.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
