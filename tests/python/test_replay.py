"""Recorded, replayed steps (Runner graphs=...): the emulation on the CPU and real CUDA graphs
on a GPU give the op-by-op module engine's results; brain::poisson_spikes_at (the Poisson draw
at a step held in a tensor) equals the draw at that integer step, and passes opcheck."""

import pytest
import torch

import brain  # noqa: F401  (registers torch.ops.brain)
from brain import models as m
from brain import ops

HAS_CUDA = torch.cuda.is_available()


def run(net, graphs, steps=240, **kw):
    runner = m.Runner(net, monitors=["E.V", "I.spike", ("E.spike", [0, 5, 9], 2)],
                      inputs={"E.input": 20.0, "I.input": 20.0}, progress=False, engine="modules",
                      graphs=graphs, **kw)
    return runner.run_steps(steps)


def small_coba(device="cpu", **spec):
    return m.ei_network("coba", seed=3, device=device, n_exc=160, n_inh=40, p=0.1, delay_ms=0.2, **spec)


def test_emulated_replay_equals_the_op_by_op_loop():
    off = run(small_coba(), "off")
    emulated = run(small_coba(), "emulate")
    assert off["graphs"] == "off" and off["replayed_steps"] == 0
    assert emulated["graphs"] == "emulated" and emulated["replayed_steps"] >= 2 * 16
    for key in ("E.V", "I.spike", "E.spike"):
        assert torch.equal(off[key], emulated[key]), key
        assert torch.equal(off["t"][key], emulated["t"][key]), key
    assert off["spike_counts"] == emulated["spike_counts"]
    assert sum(off["spike_counts"].values()) > 0


def test_graphs_option_is_checked_and_explained():
    with pytest.raises(Exception, match="unknown graphs mode 'on'"):
        m.Runner(small_coba(), graphs="on")
    assert run(small_coba(), "auto", steps=50)["graphs"] in ("not on a CUDA device",
                                                             "this libbrain was built without CUDA")
    with pytest.raises(Exception, match="graph_steps .* must be a multiple"):
        run(small_coba(), "emulate", graph_steps=17)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_poisson_spikes_at_equals_the_integer_step(dtype):
    rates = torch.linspace(0, 800, 41, dtype=dtype).reshape(1, 41).expand(3, 41)
    for step in (0, 7, 2**35 + 3):
        want = ops.poisson_spikes(rates, 0.25, 5, step, 2)
        assert torch.equal(ops.poisson_spikes_at(rates, 0.25, 5, torch.tensor(step), 2), want)
    with pytest.raises(RuntimeError, match="step must be an int64 tensor"):
        ops.poisson_spikes_at(rates, 0.25, 5, torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="step must be >= 0"):
        ops.poisson_spikes_at(rates, 0.25, 5, torch.tensor(-2))


def test_poisson_spikes_at_opcheck_and_compile():
    rates = torch.full((2, 9), 300.0)
    step = torch.tensor(4)
    torch.library.opcheck(torch.ops.brain.poisson_spikes_at.default, (rates, 0.1, 3, step, 0))
    compiled = torch.compile(lambda r, s: ops.poisson_spikes_at(r, 0.1, 3, s), fullgraph=True)
    assert torch.equal(compiled(rates, step), ops.poisson_spikes(rates, 0.1, 3, 4))


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_poisson_spikes_at_reads_the_step_on_the_device():
    rates = torch.full((2, 1001), 450.0, device="cuda")
    step = torch.tensor(0, device="cuda")
    graph = torch.cuda.CUDAGraph()
    out = ops.poisson_spikes_at(rates, 0.1, 8, step)  # warm-up
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        with torch.cuda.graph(graph):
            out = ops.poisson_spikes_at(rates, 0.1, 8, step)
    torch.cuda.current_stream().wait_stream(stream)
    for s in (3, 12, 2**33):
        step.fill_(s)
        graph.replay()
        assert torch.equal(out.cpu(), ops.poisson_spikes(rates.cpu(), 0.1, 8, s)), s


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("build", ["coba", "coba_jit", "coba_hh", "poisson"])
def test_cuda_graphs_replay_the_module_engine(build):
    def make():
        if build == "coba":
            return small_coba("cuda")
        if build == "coba_jit":
            return small_coba("cuda", connectivity="jit")
        if build == "coba_hh":
            return m.coba_hh_network(seed=3, device="cuda", n_exc=160, n_inh=40, p=0.1)
        # Poisson inputs drawn at the clock's step, a stimulus that switches on at 10 ms
        return m.decision_network(coherence=[0.0, 51.2], seed=3, device="cuda", scale=0.1, stim_on=10.0)

    inputs = {} if build in ("coba_hh", "poisson") else {"E.input": 20.0, "I.input": 20.0}
    outs = {}
    for graphs in ("off", "auto", "emulate"):
        runner = m.Runner(make(), monitors=["E.V", "I.spike"], inputs=inputs, progress=False, engine="modules",
                          graphs=graphs, chunk_steps=50)
        outs[graphs] = runner.run_steps(400)
    assert outs["auto"]["graphs"] == "cuda" and outs["auto"]["replayed_steps"] >= 352, outs["auto"]["graphs"]
    assert outs["emulate"]["graphs"] == "emulated"
    for graphs in ("auto", "emulate"):
        # The same kernels, launched by a graph instead of one by one. Float atomics (spikes
        # scattered into postsynaptic sums) may add in another order, and a spiking network
        # amplifies the last bits over time: exact early on, statistically equal later.
        torch.testing.assert_close(outs[graphs]["E.V"][:50], outs["off"]["E.V"][:50], rtol=0, atol=1e-3)
        for pop, count in outs["off"]["spike_counts"].items():
            assert abs(outs[graphs]["spike_counts"][pop] - count) <= 0.1 * count + 5, (graphs, pop)
    if build != "poisson":  # the decision network's populations take longer than 40 ms to fire
        assert sum(outs["off"]["spike_counts"].values()) > 0


def test_a_failed_capture_runs_the_steps_one_by_one(monkeypatch):
    # BRAIN_TEST_CAPTURE_FAULT=1 makes the capture fail (in emulation before it records).
    off = run(small_coba(), "off")
    monkeypatch.setenv("BRAIN_TEST_CAPTURE_FAULT", "1")
    failed = run(small_coba(), "emulate")
    assert failed["graphs"] == ("emulated graph capture failed, steps ran one by one: "
                                "capture fault injected by BRAIN_TEST_CAPTURE_FAULT")
    assert failed["replayed_steps"] == 0
    for key in ("E.V", "I.spike", "E.spike"):
        assert torch.equal(off[key], failed[key]), key
    assert off["spike_counts"] == failed["spike_counts"]


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_a_failed_capture_puts_the_states_back_and_runs_step_by_step(monkeypatch):
    # On CUDA the fault is a real host sync (the clock read back) after the first recorded
    # step: CUDA refuses it and the capture is lost with the step's kernels recorded, not run.
    # The run must continue from the states before the capture (a missing restore would leave
    # the never-computed tensors of the recording), and the device must capture again after.
    def go(graphs):
        runner = m.Runner(small_coba("cuda"), monitors=["E.V", "I.spike"], inputs={"E.input": 20.0, "I.input": 20.0},
                          progress=False, engine="modules", graphs=graphs, chunk_steps=50)
        return runner.run_steps(400)

    off = go("off")
    monkeypatch.setenv("BRAIN_TEST_CAPTURE_FAULT", "1")
    failed = go("auto")
    monkeypatch.delenv("BRAIN_TEST_CAPTURE_FAULT")
    assert failed["graphs"].startswith("CUDA graph capture failed, steps ran one by one: "), failed["graphs"]
    assert failed["replayed_steps"] == 0
    torch.testing.assert_close(failed["E.V"][:50], off["E.V"][:50], rtol=0, atol=1e-3)
    assert torch.isfinite(failed["E.V"]).all()
    for pop, count in off["spike_counts"].items():
        assert abs(failed["spike_counts"][pop] - count) <= 0.1 * count + 5, pop
    again = go("auto")
    assert again["graphs"] == "cuda" and again["replayed_steps"] >= 352, again["graphs"]


def test_brain_run_takes_run_graphs(tmp_path):
    import json
    import os
    import subprocess

    import numpy as np

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tool = os.path.join(os.path.dirname(brain.__file__), "bin", "brain")
    cfg = json.loads(open(os.path.join(repo, "models", "coba.json"), encoding="utf-8").read())
    cfg["network"].update(n_exc=400, n_inh=100, p=0.08)
    cfg["run"]["engine"] = "modules"
    outs = {}
    for graphs in ("off", "emulate", "sometimes"):
        cfg["run"]["graphs"] = graphs
        path = tmp_path / f"{graphs}.json"
        path.write_text(json.dumps(cfg))
        proc = subprocess.run([tool, "run", str(path), "--duration", "30", "--out", str(tmp_path / graphs),
                               "--no-progress"], capture_output=True, text=True)
        if graphs == "sometimes":
            assert proc.returncode == 2 and "/run/graphs" in proc.stderr, proc.stderr
            continue
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((tmp_path / graphs / "summary.json").read_text())
        outs[graphs] = (np.load(tmp_path / graphs / "monitors.npz"), summary)
        assert ("steps replayed from emulated graphs" in proc.stdout) == (graphs == "emulate"), proc.stdout
    assert outs["emulate"][1]["graphs"]["how"] == "emulated" and outs["emulate"][1]["graphs"]["replayed_steps"] > 0
    assert outs["off"][1]["graphs"]["how"] == "off"
    for key in outs["off"][0].files:
        np.testing.assert_array_equal(outs["off"][0][key], outs["emulate"][0][key], err_msg=key)
