"""brain.analysis from Python: user callables with named variables and parameters, analytic
fixed points and bifurcation points, slow points of a GRU, plots and bad input."""

import math
import os

import pytest
import torch

from brain import analysis as ba

FHN_A, FHN_B, FHN_TAU = 0.7, 0.8, 12.5
FHN_VARS = {"v": (-3, 3), "w": (-1.5, 3)}


def fhn(v, w, I, a=FHN_A, b=FHN_B, tau=FHN_TAU):
    return v - v ** 3 / 3 - w + I, (v + a - b * w) / tau


def fhn_hopf_points():
    """From the trace condition 1 - v^2 - b/tau = 0 on the fixed-point curve."""
    out = []
    for s in (-1, 1):
        v = s * math.sqrt(1 - FHN_B / FHN_TAU)
        out.append((v + FHN_A) / FHN_B - v + v ** 3 / 3)
    return out


def test_qif_normal_form_fixed_points_and_saddle_node():
    f = lambda x, I: x ** 2 + I  # noqa: E731
    pp = ba.PhasePlane1D(f, variables={"x": (-3, 3)}, params={"I": -0.25})
    fps = pp.fixed_points()
    assert [round(p["x"], 9) for p in fps] == [-0.5, 0.5]
    assert [p["stability"] for p in fps] == ["stable", "unstable"]
    bif = ba.Bifurcation1D(f, variables={"x": (-3, 3)}, params={"I": (-1, 1)}, resolution={"I": 80})
    table = bif.compute()
    assert [e["kind"] for e in table["events"]] == ["saddle-node"]
    assert abs(table["events"][0]["I"]) < 1e-8
    neg = table["I"] < -1e-6
    torch.testing.assert_close(table["x"][neg].abs(), (-table["I"][neg]).sqrt(), rtol=0, atol=1e-9)
    assert table["stable"].tolist() == [x < 0 for x in table["x"].tolist()]


def test_fitzhugh_nagumo_hopf_points_match_the_trace_condition():
    bif = ba.Bifurcation1D(fhn, variables=FHN_VARS, params={"I": (0, 2)}, resolution={"I": 300})
    table = bif.compute()
    assert [e["kind"] for e in table["events"]] == ["hopf", "hopf"]
    for event, expected in zip(table["events"], fhn_hopf_points()):
        assert abs(event["I"] - expected) < 1e-8
    assert len(table["stability"]) == 300


def test_builtin_model_by_name_matches_the_callable():
    pp_named = ba.PhasePlane2D("fitzhugh_nagumo", params={"I": 0.0})
    pp_callable = ba.PhasePlane2D(fhn, variables=FHN_VARS, params={"I": 0.0})
    (a,), (b,) = pp_named.fixed_points(), pp_callable.fixed_points()
    assert abs(a["v"] - b["v"]) < 1e-12 and abs(a["w"] - b["w"]) < 1e-12
    assert a["stability"] == b["stability"] == "stable focus"
    names = [m["name"] for m in ba.builtin_models()]
    assert {"fitzhugh_nagumo", "wilson_cowan", "qif_mean_field", "stuart_landau", "decision_making"} <= set(names)


def test_stuart_landau_hopf_and_limit_cycle_radius():
    def sl(x, y, mu, w=1.0):
        g = mu - x * x - y * y
        return g * x - w * y, g * y + w * x

    bif = ba.Bifurcation1D(sl, variables={"x": (-2, 2), "y": (-2, 2)}, params={"mu": (-1, 1)}, resolution={"mu": 41})
    events = bif.compute()["events"]
    assert [e["kind"] for e in events] == ["hopf"] and abs(events[0]["mu"]) < 1e-9
    pp = ba.PhasePlane2D(sl, variables={"x": (-2, 2), "y": (-2, 2)}, params={"mu": 0.36})
    (cycle,) = pp.limit_cycles({"x": 0.1, "y": 0.0}, duration=200, dt=0.01)
    assert cycle["found"]
    assert abs(cycle["x"]["amplitude"] - 0.6) < 1e-4
    assert abs(cycle["period"] - 2 * math.pi) < 1e-3


def test_nullclines_vector_field_and_trajectories():
    pp = ba.PhasePlane2D(fhn, variables=FHN_VARS, params={"I": 0.5}, resolution=100)
    nc = pp.nullclines()
    v, w = nc["v"][:, 0], nc["v"][:, 1]
    assert torch.allclose(w, v - v ** 3 / 3 + 0.5, atol=1e-9)
    field = pp.vector_field()
    assert field["derivatives"]["v"].shape == (100, 100) and field["skipped"] == 0
    traj = pp.trajectory({"v": [-2.0, 1.0], "w": [0.0, 0.5]}, duration=5, dt=0.01)
    assert traj["v"].shape == (501, 2) and traj["t"][-1].item() == pytest.approx(5)


def test_linear_rnn_slow_point_and_jacobian():
    torch.manual_seed(0)
    D = 5
    A = 0.4 * torch.randn(D, D, dtype=torch.float64)
    b = torch.randn(D, dtype=torch.float64)
    finder = ba.SlowPointFinder(lambda x: x @ A.T + b, f_type="discrete", lr=0.05, tolerance=1e-14)
    r = finder.find_fps(torch.randn(64, D, dtype=torch.float64))
    expected = torch.linalg.solve(torch.eye(D, dtype=torch.float64) - A, b)
    assert r["points"].shape == (1, D)
    torch.testing.assert_close(r["points"][0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(r["jacobians"][0], A)


def test_slow_points_of_a_gru_are_below_tolerance():
    torch.manual_seed(1)
    cell = torch.nn.GRUCell(3, 16).double()
    inp = torch.zeros(1, 3, dtype=torch.float64)
    tolerance = 1e-10

    def step(h):
        return cell(inp.expand(h.shape[0], -1), h)

    finder = ba.SlowPointFinder(step, optimizer="lbfgs", tolerance=tolerance, max_steps=3000,
                                outlier_threshold=float("inf"))
    r = finder.find_fps(torch.rand(128, 16, dtype=torch.float64) * 2 - 1)
    assert r["points"].shape[0] >= 1
    with torch.no_grad():
        residual = 0.5 * (step(r["points"]) - r["points"]).pow(2).sum(1)
    assert (residual < tolerance).all()
    assert r["eigenvalues"].shape == (r["points"].shape[0], 16)


def test_fast_slow_and_two_parameter_bifurcation():
    fs = ba.FastSlow1D(lambda x, u: (x ** 2 + u, torch.full_like(u, -0.01)),
                       fast_vars={"x": (-3, 3)}, slow_vars={"u": (-1, 1)}, resolution={"u": 40})
    events = fs.compute()["events"]
    assert len(events) == 1 and abs(events[0]["u"]) < 1e-8
    bif = ba.Bifurcation2D(lambda x, I, J: x ** 2 + I + J, variables={"x": (-3, 3)},
                           params={"I": (-1, 1), "J": (-0.5, 0.5)}, resolution={"I": 21, "J": 11})
    events = bif.compute()["events"]
    assert len(events) >= 10
    assert all(abs(e["I"] + e["J"]) < 1e-8 for e in events)


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    pp = ba.PhasePlane2D(fhn, variables=FHN_VARS, params={"I": 0.8}, resolution=60)
    pp.trajectory({"v": -2.0, "w": 0.5}, duration=50, dt=0.05)
    pp.plot(tmp_path / "pp.png")
    bif = ba.Bifurcation1D(fhn, variables=FHN_VARS, params={"I": (0, 2)}, resolution={"I": 50})
    bif.plot(tmp_path / "bif.png")
    for name in ("pp.png", "bif.png"):
        assert os.path.getsize(tmp_path / name) > 1000


def test_bad_input_is_rejected_with_a_clear_message():
    f = lambda x, I: x ** 2 + I  # noqa: E731
    with pytest.raises(RuntimeError, match="inverted range"):
        ba.PhasePlane1D(f, variables={"x": (1, -1)}, params={"I": 0})
    with pytest.raises(ValueError, match="needs 2 variable"):
        ba.PhasePlane2D(f, variables={"x": (-1, 1)}, params={"I": 0})
    with pytest.raises(ValueError, match="no parameter 'J'"):
        ba.PhasePlane2D("fitzhugh_nagumo", params={"J": 0})
    with pytest.raises(ValueError, match="unknown built-in model"):
        ba.PhasePlane2D("nope")
    with pytest.raises(RuntimeError, match="returned 2 values for 1 variables"):
        ba.PhasePlane1D(lambda x, I: (x, x), variables={"x": (-1, 1)}, params={"I": 0}).fixed_points()
    with pytest.raises(TypeError):  # the function does not take the parameter by its name
        ba.PhasePlane1D(lambda x: x, variables={"x": (-1, 1)}, params={"I": 0}).fixed_points()
    with pytest.raises(ValueError, match="sweeps 1 parameter"):
        ba.Bifurcation1D(f, variables={"x": (-1, 1)}, params={"I": 0})
    pp = ba.PhasePlane1D(lambda x: torch.sqrt(x) - 0.5, variables={"x": (-1, 1)}, resolution=200)
    assert pp.vector_field()["skipped"] == 100
    assert [round(p["x"], 9) for p in pp.fixed_points()] == [0.25]
