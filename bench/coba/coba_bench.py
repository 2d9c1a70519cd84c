"""COBA E/I simulation benchmark (issue 7): libbrain against Brian2 and plain PyTorch, one run.

The network of models/coba.json scaled to N neurons (80% excitatory) at 80 synapses per
neuron (p = 80 / N), forward Euler, dt = 0.1 ms, spike counts only (no dense monitors), as in
the anchors of ../shared/ANCHORS.md. Measured side by side, each in its own process:

  brain fast          `brain run --engine fast` (fused loops; all threads torch uses)
  brain fast 1 thread the same with OMP_NUM_THREADS=1 (Brian2's anchor is single-threaded)
  brain fast JIT      the same network with JIT connectivity (no synapse stored)
  brain modules       `brain run --engine modules` (op by op; small N only)
  Brian2 standalone   bench/coba/brian2_coba.py: cpp_standalone, one thread, its own loop timer
  torch sparse/dense  bench/coba/torch_coba.py: plain PyTorch (CUDA graphs on a GPU)

    python3 bench/coba/coba_bench.py                       # CPU: 4k, 40k, 100k, 400k
    python3 bench/coba/coba_bench.py --device cuda         # GPU rows (needs a CUDA build)
    python3 bench/coba/coba_bench.py --quick               # 4k and 40k, 200 ms

Reports seconds per simulated second (wall time of the simulation loop; setup and Brian2's
compilation excluded; brain fast's variants and Brian2 the median of --repeats runs, taken in
rounds), the
ratio of each baseline's time to brain fast, rates and peak memory; writes
bench/results/coba_<device>.md and .json with the machine and the commit.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from machine import commit, cpu_model  # noqa: E402  (bench/machine.py)
SYSTEM_PYTHON = "/usr/bin/python3"


def find_brain(explicit):
    for candidate in [explicit, os.path.join(REPO, "build", "brain"), os.path.join(REPO, "build-cpu", "brain"),
                      shutil.which("brain")]:
        if candidate and os.path.exists(candidate):
            return candidate
    sys.exit("coba_bench: no `brain` executable found; build it (./scripts/run.sh) or pass --brain PATH")


def config(n, connectivity, device):
    n_exc = n * 4 // 5
    with open(os.path.join(REPO, "models", "coba.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["network"].update(n_exc=n_exc, n_inh=n - n_exc, p=80.0 / n, method="euler", connectivity=connectivity)
    cfg["run"]["device"] = device
    cfg["monitors"] = {"spikes": False, "voltage_neurons": []}
    return cfg


def run_brain(brain, n, duration, engine, connectivity, device, threads=None):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "coba.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config(n, connectivity, device), f)
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        out = os.path.join(tmp, "out")
        proc = subprocess.run([brain, "run", path, "--engine", engine, "--duration", str(duration), "--out", out,
                               "--no-progress"], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-300:]}
        with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
            s = json.load(f)
    return {"seconds_per_simulated_second": s["seconds_per_simulated_second"], "rates_hz": s["rates_hz"],
            "peak_rss_mb": s.get("peak_rss_mb"), "build_seconds": s["build_seconds"], "engine": s["engine"],
            "synapses": s["synapses"]}


def median_runs(runs, repeats):
    """Runs every function of `runs` (a dict) `repeats` times, in rounds (each round runs each
    once, so a slow spell of a shared machine does not fall on one variant's runs only), and
    returns, per key, the run whose time is the median (or an error, if any run failed)."""
    results = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            results[key].append(run())
    chosen = {}
    for key, rs in results.items():
        if any("error" in r for r in rs):
            chosen[key] = next(r for r in rs if "error" in r)
            continue
        rs.sort(key=lambda r: r["seconds_per_simulated_second"])
        chosen[key] = dict(rs[len(rs) // 2])
        chosen[key]["all_seconds_per_simulated_second"] = [r["seconds_per_simulated_second"] for r in rs]
    return chosen


def run_json(cmd, timeout):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-300:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_time(r):
    if not r or "error" in r:
        return "n/a"
    t = r["seconds_per_simulated_second"]
    return f"{t:.3f}" if t < 10 else f"{t:.1f}"


def fmt_rates(r):
    if not r or "error" in r:
        return ""
    return f"{r['rates_hz']['E']:.1f}/{r['rates_hz']['I']:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sizes", default=None, help="comma-separated N (default 4000,40000,100000,400000)")
    ap.add_argument("--duration", type=float, default=1000.0, help="simulated ms for libbrain and Brian2")
    ap.add_argument("--quick", action="store_true", help="4k and 40k, 200 ms")
    ap.add_argument("--brain", default=None, help="the brain executable")
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--repeats", type=int, default=5,
                    help="runs of brain fast (each variant) and Brian2 per size, in rounds; the median is reported")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")] if a.sizes else ([4000, 40000] if a.quick else
                                                                    [4000, 40000, 100000, 400000])
    duration = 200.0 if a.quick else a.duration
    brain = find_brain(a.brain)
    have_brian2 = (not a.no_brian2 and a.device == "cpu" and os.path.exists(SYSTEM_PYTHON) and
                   subprocess.run([SYSTEM_PYTHON, "-c", "import brian2"], capture_output=True).returncode == 0)

    rows = []
    for n in sizes:
        print(f"N = {n:,} ...", file=sys.stderr, flush=True)
        row = {"n": n}
        engine = "fast" if a.device == "cpu" else "auto"  # the fast engine is CPU-only so far
        reps = max(1, a.repeats)
        runs = {"fast": lambda: run_brain(brain, n, duration, engine, "csr", a.device)}
        if a.device == "cpu":
            runs["fast_1thread"] = lambda: run_brain(brain, n, duration, "fast", "csr", a.device, threads=1)
        runs["fast_jit"] = lambda: run_brain(brain, n, duration, engine, "jit", a.device)
        if have_brian2 and n <= 100000:
            def brian2_run():
                with tempfile.TemporaryDirectory() as tmp:
                    return run_json([SYSTEM_PYTHON, os.path.join(HERE, "brian2_coba.py"), str(n), str(duration), tmp],
                                    timeout=1800)
            runs["brian2"] = brian2_run
        row.update(median_runs(runs, reps))
        if n <= 40000 or a.device == "cuda":
            # The op-by-op engine is slow on the CPU: a shorter run, reported per simulated second.
            row["modules"] = run_brain(brain, n, min(duration, 200.0 if n <= 4000 else 50.0), "modules", "csr", a.device)
        torch_ms = duration if a.device == "cuda" or n <= 4000 else min(duration, 200.0 if n <= 40000 else 20.0)
        row["torch_sparse"] = run_json([sys.executable, os.path.join(HERE, "torch_coba.py"), str(n), str(torch_ms),
                                        "--layout", "csr", "--device", a.device], timeout=1800)
        if n <= (40000 if a.device == "cuda" else 4000):
            row["torch_dense"] = run_json([sys.executable, os.path.join(HERE, "torch_coba.py"), str(n),
                                           str(min(torch_ms, 50.0 if a.device == "cpu" else torch_ms)), "--layout",
                                           "dense", "--device", a.device], timeout=1800)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    machine = cpu_model()
    head = (f"COBA E/I, 80 synapses/neuron, forward Euler, dt 0.1 ms, {duration:g} ms simulated; {a.device} on {machine};"
            f" commit {commit()}.\nSeconds of wall time per simulated second (lower is better), the median of "
            f"{max(1, a.repeats)} runs (in rounds over the four) for brain fast, fast 1 thread, fast JIT and Brian2; "
            f"'x' = baseline time / "
            f"brain fast time. Rates E/I in Hz. Memory: peak resident set of the brain process (about 350 MB of it is "
            f"the torch libraries). Slow baselines ran shorter: brain modules 200 ms (4k) or 50 ms, torch.sparse "
            f"200 ms at 40k and 20 ms above, torch dense 50 ms; their rates cover those spans only.\n")
    cols = ["N", "brain fast", "fast 1 thread", "fast JIT", "brain modules", "Brian2 standalone",
            "torch.sparse", "torch dense", "Brian2 / fast", "torch.sparse / fast", "rates fast", "rates Brian2",
            "rates torch", "memory fast", "memory JIT"]
    lines = [head, "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        fast = r["fast"].get("seconds_per_simulated_second") if "error" not in r["fast"] else None

        def ratio(key):
            other = r.get(key)
            if not fast or not other or "error" in other:
                return "n/a"
            return f"{other['seconds_per_simulated_second'] / fast:.1f}x"

        def mem(key):
            v = r.get(key, {}).get("peak_rss_mb")
            return f"{v:.0f} MB" if v else "n/a"

        lines.append("| " + " | ".join([
            f"{r['n']:,}", fmt_time(r["fast"]), fmt_time(r.get("fast_1thread")), fmt_time(r.get("fast_jit")),
            fmt_time(r.get("modules")), fmt_time(r.get("brian2")), fmt_time(r.get("torch_sparse")),
            fmt_time(r.get("torch_dense")), ratio("brian2"), ratio("torch_sparse"), fmt_rates(r["fast"]),
            fmt_rates(r.get("brian2")), fmt_rates(r.get("torch_sparse")), mem("fast"), mem("fast_jit")]) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    os.makedirs(a.out, exist_ok=True)
    suffix = "_quick" if a.quick else ""
    with open(os.path.join(a.out, f"coba_{a.device}{suffix}.md"), "w", encoding="utf-8") as f:
        f.write(table)
    with open(os.path.join(a.out, f"coba_{a.device}{suffix}.json"), "w", encoding="utf-8") as f:
        json.dump({"machine": machine, "device": a.device, "commit": commit(), "duration_ms": duration, "rows": rows},
                  f, indent=1)


if __name__ == "__main__":
    main()
