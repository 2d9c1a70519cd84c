"""Reliability of `brain run` (the command-line contract): runs killed with SIGKILL at random
moments, and half-way through a checkpoint write, resume to monitors bit-identical to a run
that never stopped; damaged or foreign checkpoints are refused; every field of the reference
configs, mutated, is rejected with its JSON path and exit code 2; NaN is found and named;
impossible configs are refused before anything is allocated; seeds and thread counts do not
change spikes."""

import concurrent.futures
import json
import os
import random
import re
import signal
import subprocess
import time

import pytest
import torch

import brain
from cli_helpers import BRAIN_TOOL, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, REPO, assert_same_monitors, monitors

COBA = os.path.join(REPO, "models", "coba.json")
CONFIGS = ["coba.json", "coba_jit.json", "cuba.json"]


def run(*args, env=None, timeout=300):
    return subprocess.run([BRAIN_TOOL, "run", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# The module engine makes the run last long enough (about 1.5 s) to be killed at random points.
KILL_ARGS = ["--duration", "600", "--engine", "modules", "--no-progress"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    proc = run(COBA, *KILL_ARGS, "--out", out)
    assert proc.returncode == EXIT_OK, proc.stderr
    return out


def test_sigkill_at_random_moments_then_resume_gives_identical_monitors(tmp_path, uninterrupted):
    rng = random.Random(20261123)
    ckpt = tmp_path / "run.ckpt"
    out = tmp_path / "out"
    base = [COBA, *KILL_ARGS, "--out", out, "--checkpoint", ckpt, "--checkpoint-every", "300"]
    kills = 0
    for attempt in range(8):
        args = base + (["--resume", ckpt] if ckpt.exists() else [])
        proc = subprocess.Popen([BRAIN_TOOL, "run", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if attempt < 4:
            time.sleep(rng.uniform(0.3, 1.6))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, err = proc.communicate(timeout=300)
        if proc.returncode == EXIT_OK:
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()
    assert proc.returncode == EXIT_OK
    assert kills >= 1, "every run finished before it could be killed"
    assert_same_monitors(monitors(out), monitors(uninterrupted))
    assert (out / "monitors.npz").read_bytes() == (uninterrupted / "monitors.npz").read_bytes()
    a = json.loads((out / "summary.json").read_text())
    b = json.loads((uninterrupted / "summary.json").read_text())
    assert a["spike_counts"] == b["spike_counts"] and a["rates_hz"] == b["rates_hz"]


@pytest.mark.parametrize("engine", ["modules", "fast"])
def test_kill_half_way_through_a_checkpoint_write_loses_nothing(tmp_path, engine):
    ckpt = tmp_path / "run.ckpt"
    args = [COBA, "--duration", "300", "--engine", engine, "--no-progress", "--checkpoint", ckpt,
            "--checkpoint-every", "500"]
    straight = run(*args[:-4], "--out", tmp_path / "straight")
    assert straight.returncode == EXIT_OK, straight.stderr
    # The third checkpoint write dies half-way: the second checkpoint must still be there, whole.
    killed = run(*args, "--out", tmp_path / "killed", env={"BRAIN_FAULT_KILL_IN_CHECKPOINT": "3"})
    assert killed.returncode == -signal.SIGKILL
    assert ckpt.exists() and (tmp_path / "run.ckpt.tmp").exists()
    resumed = run(*args, "--out", tmp_path / "resumed", "--resume", ckpt)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert_same_monitors(monitors(tmp_path / "resumed"), monitors(tmp_path / "straight"))


@pytest.fixture(scope="module")
def finished_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    proc = run(COBA, "--duration", "50", "--no-progress", "--out", d / "out", "--checkpoint", d / "run.ckpt",
               "--checkpoint-every", "250")
    assert proc.returncode == EXIT_OK, proc.stderr
    return d / "run.ckpt"


def test_a_fresh_run_over_an_existing_checkpoint_says_so(tmp_path, finished_checkpoint):
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(finished_checkpoint.read_bytes())
    proc = run(COBA, "--duration", "5", "--no-progress", "--out", tmp_path / "out", "--checkpoint", ckpt)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "already exists" in proc.stderr and f"--resume {ckpt}" in proc.stderr, proc.stderr
    quiet = run(COBA, "--duration", "5", "--no-progress", "--out", tmp_path / "out2", "--checkpoint",
                tmp_path / "new.ckpt")
    assert quiet.returncode == EXIT_OK and "already exists" not in quiet.stderr, quiet.stderr


@pytest.mark.parametrize("damage", ["truncated", "bit_flip", "empty", "garbage"])
def test_damaged_checkpoints_are_refused(tmp_path, finished_checkpoint, damage):
    data = bytearray(finished_checkpoint.read_bytes())
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "bit_flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"not a checkpoint at all" * 10)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(bytes(data))
    proc = run(COBA, "--duration", "50", "--no-progress", "--out", tmp_path / "out", "--resume", bad)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "cannot resume" in proc.stderr and "bad.ckpt" in proc.stderr
    expected = {"truncated": "truncated", "bit_flip": "checksum", "empty": "too short", "garbage": "magic"}[damage]
    assert expected in proc.stderr, proc.stderr


def test_checkpoints_write_each_recording_once(tmp_path):
    # The recordings go to <checkpoint>.rec, one record per checkpoint with what is new; the
    # checkpoint itself holds the state, so its size does not grow with the run.
    sizes = {}
    for duration in (100, 400):
        d = tmp_path / str(duration)
        proc = run(COBA, "--duration", duration, "--no-progress", "--out", d / "out", "--checkpoint", d / "run.ckpt",
                   "--checkpoint-every", "100")
        assert proc.returncode == EXIT_OK, proc.stderr
        recorded = sum(a.nbytes for a in monitors(d / "out").values())
        sizes[duration] = ((d / "run.ckpt").stat().st_size, (d / "run.ckpt.rec").stat().st_size, recorded)
    (ckpt_short, rec_short, recorded_short), (ckpt_long, rec_long, recorded_long) = sizes[100], sizes[400]
    assert abs(ckpt_long - ckpt_short) < 1024, sizes
    assert ckpt_long < recorded_long / 4, sizes
    # 10 and 40 records: each sample once (spikes and voltages, plus their times), never again.
    assert 0.9 * recorded_long < rec_long < 1.3 * recorded_long, sizes
    assert 0.9 * recorded_short < rec_short < 1.3 * recorded_short, sizes


def test_a_resumed_run_checkpointing_elsewhere_carries_the_recordings(tmp_path):
    args = [COBA, "--duration", "100", "--no-progress"]
    straight = run(*args, "--out", tmp_path / "straight")
    assert straight.returncode == EXIT_OK, straight.stderr
    first = tmp_path / "a" / "run.ckpt"
    proc = run(*args, "--out", tmp_path / "first", "--checkpoint", first, "--checkpoint-every", "300")
    assert proc.returncode == EXIT_OK, proc.stderr  # its last checkpoint is at step 900 of 1000
    second = tmp_path / "b" / "run.ckpt"
    proc = run(*args, "--out", tmp_path / "second", "--resume", first, "--checkpoint", second,
               "--checkpoint-every", "100")
    assert proc.returncode == EXIT_OK, proc.stderr
    assert_same_monitors(monitors(tmp_path / "second"), monitors(tmp_path / "straight"))
    first.unlink()
    (tmp_path / "a" / "run.ckpt.rec").unlink()  # the second checkpoint stands on its own
    proc = run(*args, "--out", tmp_path / "third", "--resume", second)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert_same_monitors(monitors(tmp_path / "third"), monitors(tmp_path / "straight"))


@pytest.mark.parametrize("damage", ["missing", "bit_flip", "truncated"])
def test_damaged_recordings_files_are_refused(tmp_path, finished_checkpoint, damage):
    d = tmp_path / "copy"
    d.mkdir()
    ckpt = d / "run.ckpt"
    ckpt.write_bytes(finished_checkpoint.read_bytes())
    data = bytearray((finished_checkpoint.parent / "run.ckpt.rec").read_bytes())
    if damage == "bit_flip":
        first = int.from_bytes(data[:8], "little")  # the first record's length, then its bytes
        data[8 + first // 2] ^= 0x10
    elif damage == "truncated":
        data = data[: len(data) // 2]
    if damage != "missing":
        (d / "run.ckpt.rec").write_bytes(bytes(data))
    proc = run(COBA, "--duration", "50", "--no-progress", "--out", tmp_path / "out", "--resume", ckpt)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "cannot resume" in proc.stderr and "run.ckpt.rec" in proc.stderr, proc.stderr
    expected = {"missing": "cannot open the recordings file", "bit_flip": "checksum", "truncated": "truncated"}[damage]
    assert expected in proc.stderr, proc.stderr


def test_checkpoint_of_another_config_is_refused(tmp_path, finished_checkpoint):
    proc = run(COBA, "--duration", "50", "--seed", "7", "--no-progress", "--out", tmp_path / "out", "--resume",
               finished_checkpoint)
    assert proc.returncode == EXIT_USAGE
    assert "different configuration" in proc.stderr, proc.stderr
    proc = run(os.path.join(REPO, "models", "cuba.json"), "--duration", "50", "--no-progress", "--out",
               tmp_path / "out", "--resume", finished_checkpoint)
    assert proc.returncode == EXIT_USAGE and "different configuration" in proc.stderr


# ---- every field of every reference config, mutated ----

def leaves(node, path=""):
    """(JSON pointer, value) of every leaf field (arrays count as leaves)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, f"{path}/{k}")
    else:
        yield path, node


def objects(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from objects(v, f"{path}/{k}")


def set_at(config, pointer, value):
    keys = pointer.strip("/").split("/")
    node = config
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


DELETE = object()


def wrong_type(value):
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return "12"
    if isinstance(value, str):
        return 3
    if isinstance(value, list):
        return {"not": "a list"}
    return [value]


# Values outside each field's documented range (include/brain/models/config.h and networks.h).
OUT_OF_RANGE = {
    "/network/n_exc": 0, "/network/n_inh": -5, "/network/p": 1.5, "/network/tau_exc": 0, "/network/tau_inh": -1.0,
    "/network/delay_ms": -0.1, "/network/neuron/tau": 0, "/network/neuron/tau_ref": -1, "/network/neuron/V_th": -70.0,
    "/network/V_init/std": -1.0, "/network/output": "conductance", "/network/dtype": "float16",
    "/network/connectivity": "dense", "/run/duration_ms": 0, "/run/dt_ms": -0.1, "/run/seed": -1,
    "/run/device": "tpu", "/model": "hopfield", "/monitors/voltage_neurons": [0, 10 ** 9],
    "/monitors/raster_neurons": -1,
}


def mutations():
    seen = set()
    for name in CONFIGS:
        config = json.load(open(os.path.join(REPO, "models", name)))
        for pointer, value in leaves(config):
            for kind, new in (("wrong_type", wrong_type(value)), ("out_of_range", OUT_OF_RANGE.get(pointer, DELETE)),
                              ("missing", DELETE)):
                if kind == "out_of_range" and new is DELETE:
                    continue
                if (pointer, kind) not in seen:
                    seen.add((pointer, kind))
                    yield name, pointer, kind, new
        for pointer, _ in objects(config):
            if (pointer, "unknown_field") not in seen:
                seen.add((pointer, "unknown_field"))
                yield name, pointer + "/bogus_field", "unknown_field", 1


def check_mutation(tmp_dir, name, pointer, kind, new):
    config = json.load(open(os.path.join(REPO, "models", name)))
    set_at(config, pointer, new)
    path = os.path.join(tmp_dir, f"{abs(hash((name, pointer, kind)))}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    proc = run(path, "--validate", timeout=60)
    if kind == "missing":
        # Every field has a default: leaving one out is valid.
        ok = proc.returncode == EXIT_OK
    else:
        # The path of the field, or of the element of it that is wrong (".../voltage_neurons/1").
        ok = proc.returncode == EXIT_USAGE and re.search(f": {re.escape(pointer)}(/[0-9]+)?: ", proc.stderr) is not None
    return ok, f"{name} {pointer} {kind} -> {new!r}: exit {proc.returncode}: {proc.stderr.strip()[:300]}"


def test_every_config_field_mutated_is_rejected_with_its_json_path(tmp_path):
    cases = list(mutations())
    assert len(cases) > 80
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: check_mutation(str(tmp_path), *c), cases))
    failures = [msg for ok, msg in results if not ok]
    assert not failures, "\n".join(failures)


def test_malformed_json_and_bad_options_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    for text in ["", "{", "[1, 2]", '{"network": {"p": 0.1}} trailing', "\x00\xff",
                 '{"network": {"n_exc": 1e999}}']:  # a number too large for a double (found by fuzzing)
        bad.write_text(text)
        proc = run(bad, "--validate")
        assert proc.returncode == EXIT_USAGE, (text, proc.stderr)
        analyze = subprocess.run([BRAIN_TOOL, "analyze", str(bad)], capture_output=True, text=True, timeout=60)
        assert analyze.returncode == EXIT_USAGE, (text, analyze.stderr)
    for args in (["--duration", "-5"], ["--duration", "nan"], ["--seed", "x"], ["--checkpoint-every", "0"],
                 ["--checkpoint-every", "10"], ["--device", "gpu"], ["--bogus"], ["--resume"]):
        proc = run(COBA, *args)
        assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
    assert run(tmp_path / "missing.json").returncode == EXIT_USAGE


# ---- numerical guard, resources, determinism ----

def test_nan_in_a_state_stops_the_run_naming_it(tmp_path):
    config = json.load(open(COBA))
    config["network"]["w_exc"] = 3e38  # float32: the first arrivals overflow the conductance to Inf
    path = tmp_path / "overflow.json"
    path.write_text(json.dumps(config))
    for engine in ("fast", "modules"):
        proc = run(path, "--duration", "100", "--engine", engine, "--no-progress", "--out", tmp_path / engine)
        assert proc.returncode == EXIT_FAILURE, proc.stderr
        assert "became NaN or Inf at step" in proc.stderr and "population '" in proc.stderr, proc.stderr
    proc = run(path, "--duration", "20", "--no-check-finite", "--no-progress", "--out", tmp_path / "unchecked")
    assert proc.returncode == EXIT_OK, proc.stderr


def test_an_impossible_config_is_refused_before_allocating(tmp_path):
    config = json.load(open(COBA))
    config["network"].update({"n_exc": 4_000_000, "n_inh": 1_000_000, "p": 0.1})
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(config))
    start = time.time()
    proc = run(path, "--no-progress", "--out", tmp_path / "out")
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "needs about" in proc.stderr and "JIT connectivity" in proc.stderr
    assert time.time() - start < 30  # refused up front, not after trying
    # The same network with JIT connectivity and no spike monitors fits.
    config["network"]["connectivity"] = "jit"
    config["monitors"] = {"spikes": False, "voltage_neurons": [0]}
    path.write_text(json.dumps(config))
    assert run(path, "--validate").returncode == EXIT_OK


def test_same_seed_same_spikes_across_runs_and_thread_counts(tmp_path):
    config = json.load(open(COBA))
    config["network"].update({"n_exc": 32000, "n_inh": 8000, "p": 0.002})  # above the fast engine's parallel size
    path = tmp_path / "40k.json"
    path.write_text(json.dumps(config))
    outs = []
    for threads in ("1", "2", "2"):
        out = tmp_path / f"t{threads}_{len(outs)}"
        proc = run(path, "--duration", "100", "--no-progress", "--out", out, env={"OMP_NUM_THREADS": threads})
        assert proc.returncode == EXIT_OK, proc.stderr
        outs.append(out)
    for out in outs[1:]:
        assert (out / "monitors.npz").read_bytes() == (outs[0] / "monitors.npz").read_bytes()
    other = run(path, "--duration", "100", "--seed", "43", "--no-progress", "--out", tmp_path / "seed43")
    assert other.returncode == EXIT_OK
    assert (tmp_path / "seed43" / "monitors.npz").read_bytes() != (outs[0] / "monitors.npz").read_bytes()


@pytest.mark.parametrize("engine", ["modules", "fast"])
def test_deterministic_flag_keeps_cpu_monitors_and_says_so(tmp_path, engine):
    # CPU sums are reproducible already, so the monitors must not move; under torch's
    # deterministic mode every uninitialised tensor is also filled with NaN, so a read of
    # memory never written would show up here (and stop the run through the guard).
    base = [COBA, "--duration", "100", "--engine", engine, "--no-progress"]
    plain = run(*base, "--out", tmp_path / "plain")
    det = run(*base, "--deterministic", "--out", tmp_path / "det")
    assert plain.returncode == EXIT_OK and det.returncode == EXIT_OK, det.stderr
    assert (tmp_path / "det" / "monitors.npz").read_bytes() == (tmp_path / "plain" / "monitors.npz").read_bytes()
    assert json.loads((tmp_path / "det" / "summary.json").read_text())["deterministic"] is True
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["deterministic"] is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deterministic_cuda_runs_with_jit_connectivity_repeat_bit_identically(tmp_path):
    # The JIT ops' deterministic CUDA kernels sum in the CPU op's order (no atomics).
    base = [os.path.join(REPO, "models", "coba_jit.json"), "--device", "cuda", "--deterministic",
            "--duration", "100", "--no-progress"]
    first = run(*base, "--out", tmp_path / "a")
    second = run(*base, "--out", tmp_path / "b")
    assert first.returncode == EXIT_OK and second.returncode == EXIT_OK, first.stderr + second.stderr
    assert (tmp_path / "a" / "monitors.npz").read_bytes() == (tmp_path / "b" / "monitors.npz").read_bytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deterministic_cuda_runs_repeat_and_resume_bit_identically(tmp_path):
    base = [COBA, "--device", "cuda", "--deterministic", "--duration", "200", "--no-progress"]
    first = run(*base, "--out", tmp_path / "a")
    second = run(*base, "--out", tmp_path / "b")
    assert first.returncode == EXIT_OK and second.returncode == EXIT_OK, first.stderr + second.stderr
    straight = (tmp_path / "a" / "monitors.npz").read_bytes()
    assert (tmp_path / "b" / "monitors.npz").read_bytes() == straight
    # Killed while writing its third checkpoint (step 1500), resumed from the second.
    ckpt = tmp_path / "run.ckpt"
    killed = run(*base, "--out", tmp_path / "c", "--checkpoint", ckpt, "--checkpoint-every", "500",
                 env={"BRAIN_FAULT_KILL_IN_CHECKPOINT": "3"})
    assert killed.returncode == -signal.SIGKILL
    resumed = run(*base, "--out", tmp_path / "c", "--checkpoint", ckpt, "--checkpoint-every", "500", "--resume", ckpt)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    assert (tmp_path / "c" / "monitors.npz").read_bytes() == straight


# ---- the same from Python ----

DRIVE = [{"path": "E.input", "value": 20.0, "add": False}, {"path": "I.input", "value": 20.0, "add": False}]


def small_runner(**kwargs):
    net = brain.models.ei_network("coba", seed=5, n_exc=400, n_inh=100, p=0.05, delay_ms=0.2)
    return net, brain.models.Runner(net, monitors=["E.spike", ("E.V", [0, 7])], inputs=DRIVE, progress=False,
                                    identity="small-coba", **kwargs)


@pytest.mark.parametrize("engine", ["modules", "fast"])
def test_python_runner_resumes_and_saves_between_runs(tmp_path, engine):
    _, straight = small_runner(engine=engine)
    expected = straight.run_steps(500)
    ckpt = tmp_path / "run.ckpt"
    _, first = small_runner(engine=engine, checkpoint=ckpt, checkpoint_every=120)
    first.run_steps(500)
    _, again = small_runner(engine=engine)
    resumed = again.resume(ckpt)  # from the checkpoint of step 480
    for key in ("E.spike", "E.V"):
        assert torch_equal(resumed[key], expected[key]), key
    assert resumed["spike_counts"] == expected["spike_counts"]

    _, a = small_runner(engine=engine)
    a.run_steps(200)
    a.save_checkpoint(tmp_path / "between.ckpt")
    tail = a.run_steps(100)
    _, b = small_runner(engine=engine)
    b.load_checkpoint(tmp_path / "between.ckpt")
    assert torch_equal(b.run_steps(100)["E.spike"], tail["E.spike"])
    _, c = small_runner(engine=engine)
    with pytest.raises(brain.models.CheckpointError, match="no run in progress"):
        c.resume(tmp_path / "between.ckpt")
    (tmp_path / "bad.ckpt").write_bytes((tmp_path / "between.ckpt").read_bytes()[:-3])
    with pytest.raises(brain.models.CheckpointError, match="truncated"):
        c.load_checkpoint(tmp_path / "bad.ckpt")


def test_python_runner_guard_names_the_state(tmp_path):
    import torch
    net, _ = small_runner()
    drive = torch.full((300, 1), 20.0)
    drive[42] = float("nan")
    runner = brain.models.Runner(net, monitors=["E.spike"], progress=False,
                                 inputs=[{"path": "E.input", "value": drive, "per_step": True, "add": False}])
    with pytest.raises(brain.models.NonFiniteError, match=r"state 'E.V' .* at step 42"):
        runner.run_steps(300)
    with pytest.raises(ValueError, match="checkpoint_every"):
        brain.models.Runner(net, checkpoint=tmp_path / "x.ckpt", checkpoint_every=0)


def test_python_bptt_resumes_from_its_training_checkpoint(tmp_path):
    import torch
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(48, 15, 10, generator=gen) < 0.2).float()
    y = torch.randint(0, 2, (48,), generator=gen)

    def fit(epochs, directory, resume=""):
        net = brain.models.SpikingNet(10, 12, 2, seed=4)
        history = brain.models.bptt_fit(net, x, y, lr=1e-2, epochs=epochs, batch_size=16, seed=3, progress=False,
                                        checkpoint_dir=directory, resume_from=resume)
        return net, history

    straight, h1 = fit(3, tmp_path / "a")
    fit(1, tmp_path / "b")
    resumed, h2 = fit(3, tmp_path / "c", resume=tmp_path / "b" / "training.ckpt")
    assert [e["loss"] for e in h1] == [e["loss"] for e in h2]
    for (name, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(p, q), name


def torch_equal(a, b):
    import torch
    return torch.equal(a, b)
