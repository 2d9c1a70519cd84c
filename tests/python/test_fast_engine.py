"""The fast engine from the command line and from Python: `brain run --engine fast` writes the
same monitors as `--engine modules`, with either compiled variant of its loop (AVX2 and the
portable one), and Python's Runner picks it, or the module engine, as documented."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import brain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRAIN_TOOL = os.path.join(os.path.dirname(brain.__file__), "bin", "brain")
DRIVE = [{"path": "E.input", "value": 20.0, "add": False}, {"path": "I.input", "value": 20.0, "add": False}]


def brain_run(tmp_path, name, *args, env=None, config=None):
    out = tmp_path / name
    cmd = [BRAIN_TOOL, "run", config or os.path.join(REPO, "models", "coba.json"), "--duration", "300", "--out",
           str(out), "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return proc, out


@pytest.mark.parametrize("model", ["coba.json", "coba_jit.json", "coba_hh.json"])
def test_fast_and_module_engines_write_the_same_monitors(tmp_path, model):
    config = os.path.join(REPO, "models", model)
    if model == "coba_hh.json":  # Hodgkin-Huxley groups through CondNeuGroup's one-pass step; smaller
        cfg = json.loads(open(config, encoding="utf-8").read())
        cfg["network"].update(n_exc=800, n_inh=200, p=0.08)
        config = str(tmp_path / "coba_hh_small.json")
        with open(config, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
    runs = {}
    for name, args, env in (("modules", ["--engine", "modules"], None), ("fast", ["--engine", "fast"], None),
                            ("portable", ["--engine", "fast"], {"BRAIN_FAST_ISA": "baseline"})):
        proc, out = brain_run(tmp_path, name, *args, env=env, config=config)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["engine"] == ("modules" if name == "modules" else "fast")
        runs[name] = (np.load(out / "monitors.npz"), summary)
    reference, ref_summary = runs["modules"]
    assert reference["E.spike"].sum() > 1000, reference["E.spike"].sum()
    for name in ("fast", "portable"):
        monitors, summary = runs[name]
        assert sorted(monitors.files) == sorted(reference.files)
        for key in reference.files:
            np.testing.assert_array_equal(monitors[key], reference[key], err_msg=f"{name}: {key}")
        assert summary["rates_hz"] == ref_summary["rates_hz"]


def test_engine_is_validated(tmp_path):
    proc, _ = brain_run(tmp_path, "bad", "--engine", "turbo")
    assert proc.returncode == 2 and "--engine must be auto, fast or modules" in proc.stderr
    cfg = json.loads(open(os.path.join(REPO, "models", "coba.json"), encoding="utf-8").read())
    cfg["run"]["engine"] = "turbo"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    proc, _ = brain_run(tmp_path, "bad2", config=str(path))
    assert proc.returncode == 2 and "/run/engine" in proc.stderr


def test_spike_counts_without_spike_monitors(tmp_path):
    cfg = json.loads(open(os.path.join(REPO, "models", "coba.json"), encoding="utf-8").read())
    cfg["monitors"] = {"spikes": False, "voltage_neurons": []}
    path = tmp_path / "counts.json"
    path.write_text(json.dumps(cfg))
    proc, out = brain_run(tmp_path, "counts", config=str(path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert 10 < summary["rates_hz"]["E"] < 40 and 10 < summary["rates_hz"]["I"] < 40
    assert summary["peak_rss_mb"] > 0
    assert "monitors.npz" in os.listdir(out)


def test_python_runner_engines():
    results = {}
    for engine in ("modules", "fast", "auto"):
        net = brain.models.ei_network("coba", seed=7)
        runner = brain.models.Runner(net, monitors=["E.spike", ("E.V", [0, 9])], inputs=DRIVE, progress=False,
                                     engine=engine)
        assert runner.fast_engine_reason() == ""
        results[engine] = runner.run(50.0)
    assert results["modules"]["engine"] == "modules"
    assert results["fast"]["engine"] == "fast" and results["auto"]["engine"] == "fast"
    for key in ("E.spike", "E.V"):
        torch.testing.assert_close(results["fast"][key], results["modules"][key], rtol=0, atol=0)
    assert results["fast"]["spike_counts"] == results["modules"]["spike_counts"]
    assert results["fast"]["spike_counts"]["E"] == int(results["fast"]["E.spike"].sum())


def test_python_runner_keeps_modules_when_recording_gradients():
    net = brain.models.ei_network("coba", seed=7)
    for p in net.parameters():
        p.requires_grad_(True)
    runner = brain.models.Runner(net, monitors=["E.spike"], inputs=DRIVE, progress=False)
    assert "gradient" in runner.fast_engine_reason()
    assert runner.run(2.0)["engine"] == "modules"
    with pytest.raises(RuntimeError, match="fast engine cannot run"):
        brain.models.Runner(net, monitors=["E.spike"], inputs=DRIVE, progress=False, engine="fast").run(2.0)


def test_coba_benchmark_runs_at_a_tiny_size(tmp_path):
    """bench/coba/coba_bench.py end to end (without Brian2, which takes a compilation per size)."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "coba", "coba_bench.py"), "--sizes", "2000",
                           "--duration", "20", "--no-brian2", "--brain", BRAIN_TOOL, "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "coba_cpu.json").read_text())
    (row,) = result["rows"]
    for key in ("fast", "fast_1thread", "fast_jit", "modules", "torch_sparse", "torch_dense"):
        assert "error" not in row[key], (key, row[key])
        assert row[key]["seconds_per_simulated_second"] > 0
    assert row["fast"]["engine"] == "fast" and row["modules"]["engine"] == "modules"
    assert row["fast"]["rates_hz"] == row["fast_1thread"]["rates_hz"] == row["modules"]["rates_hz"]
    table = (tmp_path / "coba_cpu.md").read_text()
    assert "| 2,000 |" in table


def _plastic_net(seed=3):
    """A small COBA network whose E->E synapses learn by STDP and whose E->I synapses facilitate
    and depress (Tsodyks-Markram)."""
    m = brain.models
    net = m.Network()
    g = torch.Generator().manual_seed(seed)
    sizes = {"E": 400, "I": 100}
    pops = {}
    for name, size in sizes.items():
        pops[name] = net.add(name, m.LIF(size, tau_ref=5.0, method="euler"))
        pops[name].set_V_init(-55.0 + 2.0 * torch.randn(size, generator=g))
    for k, (pre, post) in enumerate((("E", "E"), ("E", "I"), ("I", "E"), ("I", "I"))):
        indptr, indices = m.fixed_prob(sizes[pre], sizes[post], 0.1, pre != post, seed + k)
        weights = torch.rand(indices.numel(), generator=g) * 1.2 if pre == post == "E" else torch.tensor(
            0.6 if pre == "E" else 6.7)
        proj = net.add(f"{pre}2{post}", m.AlignPostProj(
            pops[pre], m.CsrComm(indptr, indices, weights, sizes[pre], sizes[post]),
            m.Expon(sizes[post], 5.0 if pre == "E" else 10.0), m.COBA(0.0 if pre == "E" else -80.0), pops[post],
            2 if pre == "E" else 0))
        if pre == post == "E":
            proj.add_stdp(A_plus=0.024, A_minus=0.0252, w_min=0.0, w_max=1.2)
        if (pre, post) == ("E", "I"):
            proj.add_stp(U=0.2, tau_f=300.0, tau_d=150.0)
    net.reset_state()
    return net


def test_plasticity_runs_on_the_fast_engine_with_the_module_engines_bits():
    """Pair-based STDP and short-term plasticity compile into the fast engine ("auto" takes
    it): the spikes, the learnt weights, the traces and STP's u and x are the module engine's
    bit for bit, also over two runs of one network (bench/coba/stdp_bench.py measures it; test_fast_engine.cpp covers the delays,
    index types, dtypes, engines taking turns and threads)."""
    outcomes = {}
    for engine in ("modules", "fast", "auto"):
        net = _plastic_net()
        w0 = net.state_dict()["E2E.comm.weights"].clone()
        runner = brain.models.Runner(net, monitors=["E.spike"], inputs=DRIVE, progress=False, engine=engine)
        parts = [runner.run(60.0), runner.run(60.0)]
        assert all(p["engine"] == ("modules" if engine == "modules" else "fast") for p in parts)
        outcomes[engine] = (torch.cat([p["E.spike"] for p in parts]), net.state_dict()["E2E.comm.weights"],
                            *(net.state(path).clone() for path in ("E2E.stdp_pre_trace", "E2E.stdp_post_trace",
                                                                   "E2I.stp.u", "E2I.stp.x")))
    spikes, weights = outcomes["modules"][:2]
    assert spikes.sum() > 500
    assert (weights != w0).float().mean() > 0.25, "STDP must have moved many weights"
    assert outcomes["modules"][5].min() < 0.9, "releases must have depleted x"
    for engine in ("fast", "auto"):
        for got, want in zip(outcomes[engine], outcomes["modules"]):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_stdp_benchmark_runs_at_a_tiny_size(tmp_path):
    """bench/coba/stdp_bench.py end to end (without Brian2, which compiles for a minute)."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "coba", "stdp_bench.py"), "--n", "1000",
                           "--duration", "10", "--fast-duration", "20", "--repeats", "1", "--no-brian2", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "stdp_cpu.json").read_text())["rows"]
    assert [r["weights"] for r in rows] == ["static", "STDP"]
    assert rows[0]["fast"]["mean_weight"] == pytest.approx(0.6) and rows[1]["fast"]["mean_weight"] != rows[0]["fast"][
        "mean_weight"]
    assert rows[1]["fast"]["rates_hz"] == rows[1]["fast_1thread"]["rates_hz"]
    assert "| STDP |" in (tmp_path / "stdp_cpu.md").read_text()


def test_poisson_driven_network_runs_on_the_fast_engine():
    """A PoissonGroup feeding LIF populations compiles into the fast engine, which draws the
    op's counter-based spikes: the sources' and the neurons' spikes and potentials are the
    module engine's bits."""
    m = brain.models
    results = {}
    for engine in ("modules", "auto"):
        net = m.Network()
        source = net.add("P", m.PoissonGroup(200, torch.linspace(5.0, 60.0, 200), seed=4))
        cells = net.add("N", m.LIF(100, tau_ref=2.0, dtype="float64"))
        indptr, indices = m.fixed_prob(200, 100, 0.2, True, 9)
        net.add("P2N", m.AlignPostProj(source, m.CsrComm(indptr, indices, torch.tensor(0.5, dtype=torch.float64), 200,
                                                         100), m.Expon(100, 5.0, dtype="float64"), m.COBA(0.0), cells, 3))
        net.reset_state()
        runner = m.Runner(net, monitors=["P.spike", "N.spike", "N.V"], progress=False, engine=engine)
        assert runner.fast_engine_reason() == ""
        results[engine] = runner.run(100.0)
    assert results["auto"]["engine"] == "fast" and results["modules"]["engine"] == "modules"
    assert results["modules"]["P.spike"].dtype == torch.bool and results["modules"]["N.spike"].sum() > 20
    for key in ("P.spike", "N.spike", "N.V"):
        torch.testing.assert_close(results["auto"][key], results["modules"][key], rtol=0, atol=0)
    assert results["auto"]["spike_counts"] == results["modules"]["spike_counts"] == {"N": int(results["auto"]["N.spike"].sum())}


def test_song2000_benchmark_runs_at_a_tiny_size(tmp_path):
    """bench/stdp/song2000_bench.py end to end (without Brian2): the Poisson inputs, the STDP
    synapses and the neuron compile into the fast engine, and the module engine runs them too."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "stdp", "song2000_bench.py"), "--sizes", "1000",
                           "--seconds", "1", "--module-seconds", "0.1", "--no-brian2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads((tmp_path / "song2000_cpu.json").read_text())["rows"]
    assert row["fast"]["rate_hz"] > 1 and row["fast"]["rate_hz"] == row["fast_1thread"]["rate_hz"]
    initial = float(torch.rand(1000, generator=torch.Generator().manual_seed(7)).mean())  # the bench's draw, / gmax
    assert 0 < row["fast"]["mean_weight"] < 1 and abs(row["fast"]["mean_weight"] - initial) > 1e-4
    assert "| 1,000 |" in (tmp_path / "song2000_cpu.md").read_text()
