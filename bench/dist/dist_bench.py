"""Distributed `brain run` scaling on this machine: strong scaling (one network on 1 and 2
processes) and weak scaling (a fixed share per process), with the spike exchange's volume and
time measured by the run itself (summary.json "distributed"). Writes
bench/results/dist_<tag>.{md,json}. The processes are started as torchrun starts them (RANK,
WORLD_SIZE, MASTER_ADDR/PORT). Not a test: no timing is asserted anywhere.

    python3 bench/dist/dist_bench.py [--duration MS] [--procs 1,2] [--tag cpu]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from machine import cpu_model  # noqa: E402


def tool():
    env = os.environ.get("BRAIN_TOOL")
    if env:
        return env
    import brain
    return os.path.join(os.path.dirname(brain.__file__), "bin", "brain")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cfg, procs, workdir):
    """Seconds per simulated second (slowest rank's loop) and the exchange statistics."""
    path = os.path.join(workdir, "net.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    out = os.path.join(workdir, f"out{procs}")
    args = [tool(), "run", path, "--out", out, "--no-progress"]
    if procs == 1:
        env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}
        subprocess.run(args, check=True, capture_output=True, env=env)
    else:
        port = free_port()
        ps = [subprocess.Popen(args, env={**os.environ, "RANK": str(r), "WORLD_SIZE": str(procs), "MASTER_ADDR": "127.0.0.1",
                                          "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in range(procs)]
        for p in ps:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(err)
    s = json.load(open(os.path.join(out, "summary.json")))
    return s


def network(n, connectivity, delay_ms, duration):
    cfg = json.load(open(os.path.join(REPO, "models", "coba.json")))
    n_exc = n * 4 // 5
    cfg["network"].update({"n_exc": n_exc, "n_inh": n - n_exc, "p": 80.0 / n, "connectivity": connectivity,
                           "delay_ms": delay_ms})
    cfg["run"]["duration_ms"] = duration
    cfg["monitors"] = {"spikes": False, "voltage_neurons": []}
    return cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=200.0)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--tag", default="cpu")
    args = ap.parse_args()
    procs = [int(p) for p in args.procs.split(",")]
    cases = [  # (kind, N for 1 process, connectivity, delay)
        ("strong", 4000, "csr", 0.0), ("strong", 4000, "csr", 1.0), ("strong", 100000, "csr", 1.0),
        ("strong", 100000, "jit", 1.0), ("weak", 50000, "csr", 1.0)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, n0, conn, delay in cases:
            base = None
            for p in procs:
                n = n0 * p if kind == "weak" else n0
                s = run(network(n, conn, delay, args.duration), p, tmp)
                sps = s["seconds_per_simulated_second"]
                d = s.get("distributed", {})
                base = base or sps
                rows.append({"scaling": kind, "neurons": n, "connectivity": conn, "delay_ms": delay, "processes": p,
                             "s_per_sim_s": sps, "speedup" if kind == "strong" else "efficiency": base / sps,
                             "exchange_every_steps": d.get("exchange_every_steps", 0),
                             "bytes_per_step_rank0": d.get("bytes_per_step_by_rank0", 0.0),
                             "exchange_s_per_sim_s": d.get("exchange_seconds_slowest_rank", 0.0) / (args.duration / 1000),
                             "one_round": d.get("exchanges_in_one_round", 0), "exchanges": d.get("exchanges", 0),
                             "rates_hz": s["rates_hz"]})
                print(rows[-1], flush=True)
    machine = cpu_model()
    head = (f"Distributed COBA E/I (80 synapses/neuron, dt 0.1 ms, {args.duration:g} ms simulated, no monitors) on "
            f"{machine}; Gloo over loopback, processes started as torchrun does.\n"
            "Seconds of wall time per simulated second (slowest rank); strong: speed-up over 1 process; weak: "
            "efficiency (1-process time / time). Exchange: seconds per simulated second in the collectives (slowest "
            "rank), bytes sent per step by rank 0, and how many exchanges needed one all-gather.\n\n"
            "| scaling | N | conn | delay | procs | s / sim s | speed-up or efficiency | exchange every | bytes/step | "
            "exchange s / sim s | one-round exchanges | rates E/I |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        ratio = r.get("speedup", r.get("efficiency"))
        lines.append(f"| {r['scaling']} | {r['neurons']:,} | {r['connectivity']} | {r['delay_ms']:g} ms | {r['processes']} | "
                     f"{r['s_per_sim_s']:.3f} | {ratio:.2f} | {r['exchange_every_steps']} steps | "
                     f"{r['bytes_per_step_rank0']:.0f} | {r['exchange_s_per_sim_s']:.3f} | {r['one_round']}/{r['exchanges']} | "
                     f"{r['rates_hz']['E']:.1f}/{r['rates_hz']['I']:.1f} |")
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", f"dist_{args.tag}.md"), "w") as f:
        f.write(head + "\n".join(lines) + "\n")
    with open(os.path.join(REPO, "bench", "results", f"dist_{args.tag}.json"), "w") as f:
        json.dump({"machine": machine, "duration_ms": args.duration, "rows": rows}, f, indent=1)
    print(head + "\n".join(lines))


if __name__ == "__main__":
    main()
