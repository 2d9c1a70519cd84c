"""Soak test: COBA-4000 for 100 s simulated, checkpointing every second of simulated time,
with the process's resident memory sampled as it runs. Reports the memory over time: it may
grow by the monitors recorded so far (which a checkpointed run keeps growing, where an
uncheckpointed one allocates them up front) and the checkpoint being written, nothing more;
and checks that the final state equals that of the same run made without intermediate
checkpoints (both runs end with a checkpoint holding every state).

    python3 bench/soak/soak.py [--seconds 100] [--engine fast|modules] [--brain PATH]

Writes bench/results/soak_cpu.{md,json} and soak_rss.png (memory over time)."""

import argparse
import datetime
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from machine import cpu_model  # noqa: E402


def brain_tool():
    try:
        import brain
        return os.path.join(os.path.dirname(brain.__file__), "bin", "brain")
    except ImportError:
        return os.path.join(REPO, "build", "brain")


def read_checkpoint(path):
    """The tensors of a libbrain checkpoint (format in include/brain/io/checkpoint.h), as raw
    bytes with dtype code and shape, and its JSON header."""
    data = open(path, "rb").read()
    assert data[:8] == b"BRAINCKP" and data[-8:] == b"BRAINEND", "not a checkpoint"
    (payload_len,) = struct.unpack_from("<Q", data, 16)
    payload = data[24:24 + payload_len]
    pos = 0
    (hlen,) = struct.unpack_from("<Q", payload, pos)
    header = json.loads(payload[8:8 + hlen])
    pos = 8 + hlen
    (count,) = struct.unpack_from("<Q", payload, pos)
    pos += 8
    tensors = {}
    for _ in range(count):
        (nlen,) = struct.unpack_from("<I", payload, pos)
        name = payload[pos + 4:pos + 4 + nlen].decode()
        pos += 4 + nlen
        code, ndim = payload[pos], payload[pos + 1]
        pos += 2
        shape = struct.unpack_from(f"<{ndim}Q", payload, pos)
        pos += 8 * ndim
        (nbytes,) = struct.unpack_from("<Q", payload, pos)
        pos += 8
        tensors[name] = (code, shape, payload[pos:pos + nbytes])
        pos += nbytes
    return header, tensors


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(tool, config, seconds, engine, out, checkpoint, every, sample_s=0.05):
    cmd = [tool, "run", config, "--duration", str(seconds * 1000), "--engine", engine, "--no-progress", "--out", out,
           "--checkpoint", checkpoint, "--checkpoint-every", str(every)]
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        r = rss_mb(proc.pid)
        if r is not None:
            samples.append((time.time() - start, r))
        time.sleep(sample_s)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"brain run failed ({proc.returncode}):\n{stderr}")
    return samples, json.load(open(os.path.join(out, "summary.json"))), time.time() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=100.0, help="simulated seconds")
    ap.add_argument("--engine", default="fast", choices=["fast", "modules"])
    ap.add_argument("--brain", default=brain_tool())
    ap.add_argument("--results", default=os.path.join(REPO, "bench", "results"))
    args = ap.parse_args()

    config = json.load(open(os.path.join(REPO, "models", "coba.json")))
    config["monitors"] = {"spikes": False, "voltage_neurons": [0, 1, 2, 3, 4]}
    steps = int(round(args.seconds * 1000 / config["run"]["dt_ms"]))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "coba_soak.json")
        json.dump(config, open(cfg, "w"))
        every = 10000  # one simulated second
        samples, summary, wall = run(args.brain, cfg, args.seconds, args.engine, os.path.join(tmp, "a"),
                                     os.path.join(tmp, "a.ckpt"), every)
        samples_b, summary_b, wall_b = run(args.brain, cfg, args.seconds, args.engine, os.path.join(tmp, "b"),
                                           os.path.join(tmp, "b.ckpt"), steps)
        _, a = read_checkpoint(os.path.join(tmp, "a.ckpt"))
        _, b = read_checkpoint(os.path.join(tmp, "b.ckpt"))
        states = sorted(k for k in a if k.startswith("state/"))
        same_state = states == sorted(k for k in b if k.startswith("state/")) and all(a[k] == b[k] for k in states)
        same_monitors = open(os.path.join(tmp, "a", "monitors.npz"), "rb").read() == \
            open(os.path.join(tmp, "b", "monitors.npz"), "rb").read()
        recorded_mb = os.path.getsize(os.path.join(tmp, "a", "monitors.npz")) / 2**20

    # Memory over the run, after start-up (the first 10% of samples). The recordings grow in
    # both runs alike; what checkpointing adds beyond them must be noise.
    def growth(samples):
        steady = [r for t, r in samples[len(samples) // 10:]] or [r for _, r in samples]
        third = max(1, len(steady) // 3)
        return steady, sum(steady[:third]) / third, sum(steady[-third:]) / third

    steady, first, last = growth(samples)
    _, first_b, last_b = growth(samples_b)
    result = {
        "benchmark": "soak: COBA-4000, checkpoint every simulated second",
        "date": datetime.date.today().isoformat(),
        "machine": cpu_model(),
        "engine": args.engine,
        "simulated_seconds": args.seconds,
        "checkpoints": steps // every,
        "wall_seconds": wall,
        "seconds_per_simulated_second": summary["seconds_per_simulated_second"],
        "rss_mb": {"min": min(steady), "max": max(steady), "first_third_mean": first, "last_third_mean": last,
                   "growth_mb": last - first, "samples": len(samples),
                   "growth_without_checkpoints_mb": last_b - first_b, "recorded_mb": recorded_mb},
        "wall_seconds_without_checkpoints": wall_b,
        "rates_hz": summary["rates_hz"],
        "final_state_equals_uncheckpointed_run": same_state,
        "monitors_equal_uncheckpointed_run": same_monitors,
        "spike_counts_equal": summary["spike_counts"] == summary_b["spike_counts"],
    }
    os.makedirs(args.results, exist_ok=True)
    json.dump(result, open(os.path.join(args.results, "soak_cpu.json"), "w"), indent=2)
    md = [f"# Soak: COBA-4000, {args.seconds:g} s simulated, a checkpoint every simulated second", "",
          f"{result['date']}, {result['machine']}, {args.engine} engine", "",
          "| quantity | value |", "|---|---|",
          f"| wall time | {wall:.1f} s ({result['checkpoints']} checkpoints) |",
          f"| resident memory, first third of the run | {first:.1f} MB |",
          f"| resident memory, last third of the run | {last:.1f} MB |",
          f"| growth | {last - first:+.1f} MB (min {min(steady):.1f}, max {max(steady):.1f} MB) |",
          f"| growth of the same run without checkpoints | {last_b - first_b:+.1f} MB ({wall_b:.1f} s wall; "
          f"it allocates its recordings up front) |",
          f"| monitors recorded (held in memory, and in every checkpoint) | {recorded_mb:.1f} MB |",
          f"| rates | E {summary['rates_hz']['E']:.2f} Hz, I {summary['rates_hz']['I']:.2f} Hz |",
          f"| final state equals a run without checkpoints | {'yes' if same_state else 'NO'} |",
          f"| monitors equal a run without checkpoints | {'yes' if same_monitors else 'NO'} |"]
    open(os.path.join(args.results, "soak_cpu.md"), "w").write("\n".join(md) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot([t for t, _ in samples], [r for _, r in samples], label="checkpoint every 1 s")
        ax.plot([t for t, _ in samples_b], [r for _, r in samples_b], label="no checkpoints")
        ax.legend()
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("resident memory (MB)")
        ax.set_title(f"COBA-4000, {args.seconds:g} s simulated, checkpoint every 1 s")
        fig.tight_layout()
        fig.savefig(os.path.join(args.results, "soak_rss.png"), dpi=100)
    except ImportError:
        pass
    print("\n".join(md))
    if not (same_state and same_monitors and result["spike_counts_equal"]):
        raise SystemExit("soak: the checkpointed run differs from the uncheckpointed one")


if __name__ == "__main__":
    main()
