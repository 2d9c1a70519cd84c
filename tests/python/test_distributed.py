"""Distributed `brain run` (issue 13) with real processes on Gloo: the monitors of a run split
over 2, 3 and 4 processes are bit-identical to one process's, for stored (CSR) and JIT
connectivity, uniform or per-synapse delays, exchanging spikes every step or once per
minimum-delay window, with spikes sent as indices or as bit masks; torchrun starts it (`--no-python brain run` and `-m brain run`);
a rank killed mid-run makes the others stop with an error that names it; checkpoints are in a
layout that does not depend on the number of processes: a run checkpointed on 4 processes
finishes on 2 or on 1 (and one killed on 2 finishes on 4) with the same monitors."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from cli_helpers import BRAIN_TOOL, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, REPO, assert_same_monitors, monitors


pytestmark = pytest.mark.skipif(
    subprocess.run([BRAIN_TOOL, "info", "--json"], capture_output=True, text=True).stdout.find('"distributed": true') < 0,
    reason="this libbrain was built without distributed support (no Gloo headers)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp_path, connectivity="csr", delay_ms=0.0, duration=200.0, n_exc=1601, n_inh=399, record=True):
    cfg = json.load(open(os.path.join(REPO, "models", "coba.json")))
    cfg["network"].update({"connectivity": connectivity, "delay_ms": delay_ms, "n_exc": n_exc, "n_inh": n_inh, "p": 0.05})
    cfg["run"]["duration_ms"] = duration
    cfg["monitors"]["voltage_neurons"] = [0, 1600, 800, 801, 5]  # on different ranks, out of order
    if not record:
        cfg["monitors"] = {"spikes": False, "voltage_neurons": []}
    tag = "per_synapse" if isinstance(delay_ms, dict) else delay_ms
    path = tmp_path / f"net_{connectivity}_{tag}.json"
    path.write_text(json.dumps(cfg))
    return path


def spawn(n, args, port=None, extra_env=None):
    """Starts n ranks as torchrun would (RANK, WORLD_SIZE, MASTER_ADDR/PORT), without torchrun."""
    port = port or free_port()
    procs = []
    for rank in range(n):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(n), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), **(extra_env or {})}
        procs.append(subprocess.Popen([BRAIN_TOOL, "run", *map(str, args)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def wait_all(procs, timeout=240):
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        outs.append((p.returncode, out, err))
    return outs


def single(cfg, out, *extra):
    proc = subprocess.run([BRAIN_TOOL, "run", str(cfg), "--out", str(out), "--no-progress", *extra],
                          capture_output=True, text=True, timeout=240, env={k: v for k, v in os.environ.items() if k != "WORLD_SIZE"})
    assert proc.returncode == EXIT_OK, proc.stderr
    return out


# Per-synapse delays, drawn per synapse in [low, high] ms: the shortest one sets the window.
PER_SYNAPSE = {"dist": "uniform", "low": 0.5, "high": 2.0}
PER_SYNAPSE_FROM_ZERO = {"dist": "uniform", "low": 0.0, "high": 1.0}


def shortest_delay_ms(delay_ms):
    return delay_ms["low"] if isinstance(delay_ms, dict) else delay_ms


@pytest.mark.parametrize("connectivity,delay_ms,n,encoding", [
    ("csr", 0.0, 2, "auto"), ("csr", 0.0, 4, "auto"), ("jit", 0.0, 2, "auto"), ("jit", 0.0, 4, "auto"),
    ("csr", 0.5, 2, "auto"), ("jit", 0.5, 4, "auto"), ("csr", 0.0, 2, "masks"), ("csr", 0.5, 4, "indices"),
    ("csr", PER_SYNAPSE, 2, "auto"), ("csr", PER_SYNAPSE_FROM_ZERO, 3, "auto")])
def test_monitors_are_bit_identical_to_one_process(tmp_path, connectivity, delay_ms, n, encoding):
    cfg = config(tmp_path, connectivity, delay_ms)
    want = monitors(single(cfg, tmp_path / "one"))
    out = tmp_path / f"split{n}"
    results = wait_all(spawn(n, [cfg, "--out", out, "--no-progress", "--dist-encoding", encoding]))
    for rank, (code, _, err) in enumerate(results):
        assert code == EXIT_OK, f"rank {rank}: {err}"
    assert_same_monitors(want, monitors(out))
    assert want["E.spike"].any() and want["I.spike"].any()
    summary = json.load(open(out / "summary.json"))
    d = summary["distributed"]
    assert d["processes"] == n
    window = max(1, round(shortest_delay_ms(delay_ms) / 0.1))
    assert d["exchange_every_steps"] == window  # the minimum-delay window: fewer rounds
    assert d["exchanges"] == 2000 // window
    if encoding == "masks":
        assert d["messages_as_indices"] == 0
    if encoding == "indices":
        assert d["messages_as_masks"] == 0
    one = json.load(open(tmp_path / "one" / "summary.json"))
    assert summary["rates_hz"] == one["rates_hz"] and summary["synapses"] == one["synapses"]
    # Only rank 0 writes, and only rank 0 reports.
    assert results[0][1].count("split over") == 1 and all(not r[1] for r in results[1:])


def test_torchrun_launches_the_command_line_and_the_python_module(tmp_path):
    cfg = config(tmp_path, "jit", 0.0, duration=50.0)
    want = monitors(single(cfg, tmp_path / "one"))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*torchrun, "--no-python", BRAIN_TOOL, "run", str(cfg), "--out", str(tmp_path / "cli"),
                           "--no-progress"], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr
    assert_same_monitors(want, monitors(tmp_path / "cli"))
    proc = subprocess.run([*torchrun, "-m", "brain", "run", str(cfg), "--out", str(tmp_path / "py"), "--no-progress"],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr
    assert_same_monitors(want, monitors(tmp_path / "py"))


def test_a_killed_rank_stops_the_others_with_an_error_naming_it(tmp_path):
    cfg = config(tmp_path, "csr", 0.0, duration=1e6, record=False)  # far longer than the test
    procs = spawn(3, [cfg, "--out", tmp_path / "out", "--no-progress", "--dist-timeout", "20"])
    time.sleep(4)  # built and running
    assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
    procs[2].send_signal(signal.SIGKILL)
    start = time.monotonic()
    results = wait_all(procs[:2], timeout=60)
    elapsed = time.monotonic() - start
    procs[2].wait()
    assert elapsed < 30, f"the survivors took {elapsed:.0f} s to stop"
    for rank, (code, _, err) in enumerate(results):
        assert code == EXIT_FAILURE, f"rank {rank} exited {code}: {err}"
        assert f"rank {rank}:" in err and "rank 2 has died or hangs" in err, err


def ok(results):
    for rank, (code, _, err) in enumerate(results):
        assert code == EXIT_OK, f"rank {rank}: {err}"


@pytest.mark.parametrize("connectivity,delay_ms", [("csr", 0.5), ("jit", 0.0), ("csr", PER_SYNAPSE)])
def test_checkpoints_resume_on_any_number_of_processes(tmp_path, connectivity, delay_ms):
    # 2000 steps, checkpoints every 700 (not a multiple of the 5-step exchange window): the
    # last one, at step 1400, stays after the run.
    cfg = config(tmp_path, connectivity, delay_ms)
    want = monitors(single(cfg, tmp_path / "one"))
    ckpt = tmp_path / "run.ckpt"
    ok(wait_all(spawn(4, [cfg, "--out", tmp_path / "four", "--no-progress", "--checkpoint", ckpt,
                          "--checkpoint-every", "700"])))
    assert_same_monitors(want, monitors(tmp_path / "four"))
    for n in (2, 3):
        resumed = tmp_path / f"resumed_on_{n}.ckpt"
        shutil.copy(ckpt, resumed)
        ok(wait_all(spawn(n, [cfg, "--out", tmp_path / f"on{n}", "--no-progress", "--resume", resumed])))
        assert_same_monitors(want, monitors(tmp_path / f"on{n}"))
        summary = json.load(open(tmp_path / f"on{n}" / "summary.json"))
        assert summary["resumed_from"] == str(resumed) and summary["distributed"]["processes"] == n
    # One process (no torchrun) finishes it too.
    shutil.copy(ckpt, tmp_path / "resumed_on_1.ckpt")
    single(cfg, tmp_path / "on1", "--resume", str(tmp_path / "resumed_on_1.ckpt"))
    assert_same_monitors(want, monitors(tmp_path / "on1"))


def test_a_run_killed_on_two_processes_finishes_on_four(tmp_path):
    cfg = config(tmp_path, "csr", 0.5, duration=3000.0)
    want = monitors(single(cfg, tmp_path / "one"))
    ckpt = tmp_path / "run.ckpt"
    procs = spawn(2, [cfg, "--out", tmp_path / "killed", "--no-progress", "--checkpoint", ckpt,
                      "--checkpoint-every", "2000", "--dist-timeout", "20"])
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.2)
    assert ckpt.exists() and all(p.poll() is None for p in procs), "no checkpoint before the end of the run"
    procs[1].send_signal(signal.SIGKILL)
    code, _, err = wait_all(procs[:1], timeout=60)[0]
    procs[1].wait()
    assert code == EXIT_FAILURE and "rank 1 has died or hangs" in err, err
    assert not (tmp_path / "killed" / "monitors.npz").exists()
    ok(wait_all(spawn(4, [cfg, "--out", tmp_path / "four", "--no-progress", "--resume", ckpt])))
    assert_same_monitors(want, monitors(tmp_path / "four"))


def test_a_distributed_run_refuses_a_single_process_checkpoint(tmp_path):
    cfg = config(tmp_path, duration=20.0)
    ckpt = tmp_path / "one.ckpt"
    single(cfg, tmp_path / "one", "--checkpoint", str(ckpt), "--checkpoint-every", "100")
    for code, _, err in wait_all(spawn(2, [cfg, "--out", tmp_path / "o", "--resume", ckpt])):
        assert code == EXIT_USAGE and "a distributed run resumes the checkpoints of distributed runs" in err, err


def test_unsupported_distributed_options_are_refused(tmp_path):
    cfg = config(tmp_path, duration=10.0)
    for extra in (["--engine", "modules"], ["--save-network"]):
        results = wait_all(spawn(2, [cfg, "--out", tmp_path / "o", *extra]))
        for code, _, err in results:
            assert code == EXIT_USAGE and "not supported in distributed runs" in err, err


def test_an_incomplete_torchrun_environment_is_a_clear_error(tmp_path):
    cfg = config(tmp_path, duration=10.0)
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "MASTER_ADDR")}
    proc = subprocess.run([BRAIN_TOOL, "run", str(cfg), "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=60, env={**env, "RANK": "0", "WORLD_SIZE": "2"})
    assert proc.returncode == EXIT_FAILURE and "MASTER_PORT is not set" in proc.stderr, proc.stderr
