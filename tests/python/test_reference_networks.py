"""The reference networks beyond COBA/CUBA (COBA-HH, Wang 2002 decision making, the CANN) and
the blocks they are built from (Traub-Miles channels, GroupComm, shared AlignPre synapses,
Poisson rate inputs, synaptic initial conditions), each against an independent reference:
closed forms, dense computations, or the behaviour the papers report."""

import json
import math
import os
import subprocess

import pytest
import torch

import brain
from cli_helpers import BRAIN_TOOL, EXIT_USAGE, REPO, monitors

m = brain.models


# ---- building blocks ----------------------------------------------------------------------------

def traub_miles_rates(V, VT=-63.0):
    """Brian2's COBAHH expressions, written out (exprel(x) = (e^x - 1) / x)."""
    def exprel(x):
        return math.expm1(x) / x if x != 0 else 1.0
    return {
        "alpha_m": 0.32 * 4 / exprel((13 - V + VT) / 4), "beta_m": 0.28 * 5 / exprel((V - VT - 40) / 5),
        "alpha_h": 0.128 * math.exp((17 - V + VT) / 18), "beta_h": 4 / (1 + math.exp((40 - V + VT) / 5)),
        "alpha_n": 0.032 * 5 / exprel((15 - V + VT) / 5), "beta_n": 0.5 * math.exp((10 - V + VT) / 40),
    }


@pytest.mark.parametrize("V", [-80.0, -63.0 + 13.0, -60.0, -23.0, 0.0])  # -50 and -23 hit the removable singularities
def test_traub_miles_gates_relax_exactly_to_the_published_rates(V):
    # Held at V for one step from 0, a gate reaches x_inf (1 - e^{-(alpha + beta) dt}).
    dt = 0.05
    neuron = m.CondNeuGroup(1, V_init=V, V_th=100.0)
    neuron.add_channel("Na", m.NaChannelTM(1, g=0.0))
    neuron.add_channel("K", m.KChannelTM(1, g=0.0))
    neuron.add_channel("leak", m.LeakChannel(1, g=0.0))
    net = m.Network()
    net.add("n", neuron)
    net.reset_state()
    m.Runner(net, dt=dt, progress=False).run(dt)
    r = traub_miles_rates(V)
    for gate, state in (("m", "n.Na.m"), ("h", "n.Na.h"), ("n", "n.K.n")):
        a, b = r["alpha_" + gate], r["beta_" + gate]
        expected = a / (a + b) * (1 - math.exp(-(a + b) * dt))
        assert net.state(state).item() == pytest.approx(expected, rel=1e-9, abs=1e-12), gate


def test_traub_miles_gates_can_start_at_rest():
    ch = m.NaChannelTM(3, V_rest=-65.0)
    ch.reset_state()
    r = traub_miles_rates(-65.0)
    assert torch.allclose(ch.find_state("m"), torch.full((3,), r["alpha_m"] / (r["alpha_m"] + r["beta_m"]),
                                                         dtype=torch.float64))


def cond_group(kind, fused, n=64):
    pop = m.CondNeuGroup(n, C=1.0, V_th=-20.0 if kind == "tm" else 20.0, V_init=-65.0)
    if kind == "tm":
        pop.add_channel("Na", m.NaChannelTM(n, V_rest=-65.0))
        pop.add_channel("K", m.KChannelTM(n))  # gates from 0: the benchmark's start
        pop.add_channel("leak", m.LeakChannel(n, g=0.05, E=-60.0))
    else:
        pop.add_channel("Na", m.NaChannelHH(n))
        pop.add_channel("K", m.KChannelHH(n))
        pop.add_channel("leak", m.LeakChannel(n))
    pop.set_fused(fused)
    pop.set_V_init(torch.linspace(-80.0, 10.0, n, dtype=torch.float64))
    net = m.Network()
    net.add("n", pop)
    net.reset_state()
    return net


@pytest.mark.parametrize("kind", ["tm", "hh"])
def test_fused_conductance_step_equals_the_op_by_op_step(kind):
    # Isolated neurons under a constant drive spanning rest to bursting: 300 ms, 3000 steps,
    # through hundreds of spikes; the one-pass CPU update and the op-by-op one take the same
    # steps (rounding differs between the kernel's exp, kernels/fastsim/det_exp.h, and ATen's,
    # and grows through spikes).
    drive = torch.linspace(0.0, 15.0, 64, dtype=torch.float64)
    runs = []
    for fused in (False, True):
        net = cond_group(kind, fused)
        out = m.Runner(net, monitors=["n.V", "n.spike", "n.Na.m", "n.K.n"], inputs={"n.input": drive},
                       progress=False).run(300.0)
        runs.append(out)
    assert runs[1]["n.spike"].sum() > 200
    assert torch.equal(runs[0]["n.spike"], runs[1]["n.spike"])
    for key in ("n.V", "n.Na.m", "n.K.n"):
        torch.testing.assert_close(runs[1][key][:10], runs[0][key][:10], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(runs[1][key], runs[0][key], rtol=1e-5, atol=1e-4)


def thalamic_group(fused, order, n=48):
    """HH spikes with T-type calcium, a calcium pool, KCa and h channels, in `order`: the pool
    after its influx channel and before KCa (the usual order), or KCa first and the pool
    before the channel that feeds it (each then reads the other's value from the step before,
    as the op-by-op path does)."""
    pop = m.CondNeuGroup(n, V_init=-65.0)
    pop.add_channel("Na", m.NaChannelHH(n))
    pop.add_channel("K", m.KChannelHH(n))
    pop.add_channel("L", m.LeakChannel(n))
    cat = m.CaTChannel(n, g=2.0)
    pool = m.CalciumPool(n, depth=0.1)
    pool.add_influx(cat)
    kca = m.KCaChannel(n, pool, g=10.0)
    parts = {"usual": [("CaT", cat), ("Ca", pool), ("KCa", kca)], "reversed": [("KCa", kca), ("Ca", pool), ("CaT", cat)]}
    for name, ch in parts[order]:
        pop.add_channel(name, ch)
    pop.add_channel("H", m.HChannel(n))
    pop.set_fused(fused)
    pop.set_V_init(torch.linspace(-85.0, -50.0, n, dtype=torch.float64))
    net = m.Network()
    net.add("n", pop)
    net.reset_state()
    return net, pop


@pytest.mark.parametrize("order", ["usual", "reversed"])
def test_fused_step_with_calcium_kca_and_h_channels_equals_the_op_by_op_step(order):
    drive = torch.linspace(-10.0, 15.0, 48, dtype=torch.float64)  # hyperpolarised (rebound, I_h) to firing
    keys = ["n.V", "n.Ca.Ca", "n.KCa.p", "n.CaT.p", "n.CaT.q", "n.H.p"]
    runs = []
    for fused in (False, True):
        net, pop = thalamic_group(fused, order)
        assert pop.takes_fused_step() == fused
        runs.append(m.Runner(net, dt=0.01, monitors=keys + ["n.spike"], inputs={"n.input": drive},
                             progress=False).run(100.0))
    assert runs[1]["n.spike"].sum() > 100
    assert torch.equal(runs[0]["n.spike"], runs[1]["n.spike"])
    assert runs[1]["n.Ca.Ca"].max() > 10 * 2.4e-4  # the calcium and KCa paths are exercised
    for key in keys:
        scale = runs[0][key].abs().max()
        torch.testing.assert_close(runs[1][key][:10], runs[0][key][:10], rtol=1e-12, atol=1e-12 * scale)
        torch.testing.assert_close(runs[1][key], runs[0][key], rtol=1e-6, atol=1e-8 * scale)


def test_a_kca_channel_whose_pool_is_elsewhere_is_stepped_op_by_op():
    n = 4
    pool = m.CalciumPool(n)  # not a channel of the group
    pop = m.CondNeuGroup(n)
    pop.add_channel("L", m.LeakChannel(n))
    pop.add_channel("KCa", m.KCaChannel(n, pool))
    pool.reset_state()
    net = m.Network()
    net.add("n", pop)
    net.reset_state()
    assert not pop.takes_fused_step()
    m.Runner(net, progress=False).run(1.0)  # still runs, op by op


@pytest.mark.parametrize("batch", [0, 3])
def test_group_comm_equals_the_dense_matrix_it_stands_for(batch):
    gen = torch.Generator().manual_seed(0)
    pre = torch.randint(0, 3, (50,), generator=gen)
    post = torch.randint(0, 2, (40,), generator=gen)
    W = torch.randn(3, 2, dtype=torch.float64, generator=gen)
    dense = W[pre][:, post]  # [50, 40]
    x = (torch.rand((batch, 50) if batch else (50,), generator=gen) < 0.3).to(torch.float64)
    comm = m.GroupComm(pre, post, W)
    assert torch.allclose(comm.forward(x), x @ dense)


def test_group_comm_trains_its_group_weights():
    pre, post = torch.tensor([0, 0, 1]), torch.tensor([1, 0])
    W = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    comm = m.GroupComm(pre, post, W)
    torch.autograd.gradcheck(lambda w: m.GroupComm(pre, post, w).forward(x), (W,))
    assert comm.n_pre() == 3 and comm.n_post() == 2


def test_group_comm_rejects_bad_labels():
    with pytest.raises(RuntimeError, match=r"post_groups labels must lie in \[0, 2\)"):
        m.GroupComm(torch.tensor([0, 1]), torch.tensor([0, 2]), torch.ones(2, 2))
    with pytest.raises(RuntimeError, match="weights must be"):
        m.GroupComm(torch.tensor([0]), torch.tensor([0]), torch.ones(2))


def nmda_net(shared):
    """Poisson -> LIF E (5) and I (3) through NMDA AlignPre projections, one shared NMDA state or two."""
    net = m.Network()
    src = net.add("src", m.PoissonGroup(6, 300.0, seed=4))
    E = net.add("E", m.LIF(5, dtype="float64"))
    I = net.add("I", m.LIF(3, dtype="float64"))
    s1 = m.NMDA(6, dtype="float64")
    s2 = s1 if shared else m.NMDA(6, dtype="float64")
    W1 = torch.rand(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    W2 = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    net.add("toE", m.AlignPreProj(src, s1, m.DenseComm(W1), m.MgBlock(), E, 2))
    net.add("toI", m.AlignPreProj(src, s2, m.DenseComm(W2), m.MgBlock(), I, 2))
    net.reset_state()
    return net


def test_align_pre_projections_sharing_a_synapse_equal_separate_synapses():
    runs = []
    for shared in (False, True):
        out = m.Runner(nmda_net(shared), monitors=["E.V", "I.V", "toE.g_post"], progress=False).run(30.0)
        runs.append(out)
    assert runs[0]["toE.g_post"].abs().sum() > 0
    for key in ("E.V", "I.V", "toE.g_post"):
        assert torch.equal(runs[0][key], runs[1][key]), key


def delayed_nmda_net(distinct, shift=0, device="cpu"):
    """Poisson -> LIF E (30) through NMDA, and E onto itself through NMDA AlignPre synapses each
    with a delay of its own (`distinct` different ones, plus `shift` steps)."""
    net = m.Network()
    src = net.add("src", m.PoissonGroup(20, 200.0, seed=4))
    E = net.add("E", m.LIF(30, dtype="float64"))
    indptr, indices = m.fixed_prob(20, 30, 0.3, True, 5)
    net.add("in", m.AlignPreProj(src, m.NMDA(20, dtype="float64"),
                                 m.CsrComm(indptr, indices, torch.tensor(0.5, dtype=torch.float64), 20, 30),
                                 m.MgBlock(), E))
    indptr, indices = m.fixed_prob(30, 30, 0.2, False, 6)
    g = torch.Generator().manual_seed(7)
    w = torch.rand(indices.numel(), dtype=torch.float64, generator=g)
    rec = net.add("rec", m.AlignPreProj(E, m.NMDA(30, dtype="float64"), m.CsrComm(indptr, indices, w, 30, 30),
                                        m.MgBlock(), E))
    rec.set_synapse_delays(torch.randint(0, distinct, (indices.numel(),), generator=g) * 3 + shift)
    net.to(device)
    net.reset_state()
    return net


@pytest.mark.parametrize("distinct", [3, 25])
def test_align_pre_per_synapse_delays_replay_checkpoint_and_state_dict(tmp_path, distinct):
    """AlignPreProj.set_synapse_delays from Python (delivery is checked against a naive sum in
    C++, test_models.cpp): recorded-step replay and checkpoints carry the history of g the
    synapses read, and the delays are in the state_dict."""
    monitors = ["E.spike", "E.V", "rec.g_post"]
    drive = [{"path": "E.input", "value": 3.0, "add": False}]

    def runner(net, **kw):
        return m.Runner(net, monitors=monitors, inputs=drive, progress=False, **kw)

    net = delayed_nmda_net(distinct)
    assert net.rec.has_synapse_delays() and not getattr(net, "in").has_synapse_delays()
    assert net.rec.synapse_delay_groups() == ([0, 3, 6] if distinct == 3 else None)
    straight = runner(net, graphs="off").run_steps(400)
    assert straight["engine"] == "modules" and straight["E.spike"].any()
    assert straight["rec.g_post"].abs().max() > 0
    emulated = runner(delayed_nmda_net(distinct), graphs="emulate").run_steps(400)
    assert emulated["graphs"] == "emulated" and emulated["replayed_steps"] > 0
    for key in monitors:
        assert torch.equal(straight[key], emulated[key]), key

    first = runner(delayed_nmda_net(distinct))
    first.run_steps(200)
    first.save_checkpoint(tmp_path / "half.ckpt")
    resumed = runner(delayed_nmda_net(distinct))
    resumed.load_checkpoint(tmp_path / "half.ckpt")
    tail = resumed.run_steps(200)
    for key in monitors:
        assert torch.equal(tail[key], straight[key][200:]), key

    state = delayed_nmda_net(distinct).state_dict()
    assert any(k.startswith("rec.synapse_delays.") for k in state), sorted(state)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\).*"rec\.synapse_delays\.'):
        delayed_nmda_net(distinct, shift=1).load_state_dict(state)
    with pytest.raises(RuntimeError, match="before reset_state"):
        late = getattr(net, "in")
        late.set_synapse_delays(torch.zeros(late.comm.indices.numel(), dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_align_pre_per_synapse_delays_equal_the_cpu():
    """On a GPU, AlignPre per-synapse delays (by delay group through the CUDA csr_matmul, and by
    synapse) give the CPU's spikes, potentials to rounding."""
    drive = [{"path": "E.input", "value": 3.0, "add": False}]
    for distinct in (3, 25):
        runs = [m.Runner(delayed_nmda_net(distinct, device=d), monitors=["E.spike", "E.V"], inputs=drive,
                         progress=False, graphs="off").run_steps(300) for d in ("cpu", "cuda")]
        assert runs[0]["E.spike"].any()
        assert torch.equal(runs[1]["E.spike"].cpu(), runs[0]["E.spike"]), distinct
        torch.testing.assert_close(runs[1]["E.V"].cpu(), runs[0]["E.V"], rtol=1e-9, atol=1e-9)


def test_a_shared_presynaptic_synapse_needs_the_same_presynaptic_population():
    a, b = m.PoissonGroup(4, 10.0, seed=1), m.PoissonGroup(4, 10.0, seed=2)
    post = m.LIF(2)
    syn = m.NMDA(4)
    m.AlignPreProj(a, syn, m.AllToAll(4, 2, torch.tensor(1.0)), m.MgBlock(), post)
    with pytest.raises(RuntimeError, match="another presynaptic population"):
        m.AlignPreProj(b, syn, m.AllToAll(4, 2, torch.tensor(1.0)), m.MgBlock(), post)


def test_poisson_rate_input_adds_to_the_rates_for_one_step():
    net = m.Network()
    net.add("p", m.PoissonGroup(20000, 0.0, seed=3))
    net.reset_state()
    steps = torch.zeros(100, 20000)
    steps[:50] = 500.0  # 500 Hz for 5 ms, then nothing
    out = m.Runner(net, monitors=["p.spike"], inputs=[{"path": "p.rate_input", "value": steps, "per_step": True,
                                                       "add": False}], progress=False).run(10.0)
    s = out["p.spike"].float()
    assert s[:50].mean().item() == pytest.approx(0.05, rel=0.03)  # rate * dt
    assert s[50:].sum().item() == 0


def test_expon_initial_conductance():
    e = m.Expon(4, 5.0)
    e.set_g_init(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    e.reset_state(2)
    assert torch.equal(e.find_state("g"), torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 2))


# ---- the CANN -----------------------------------------------------------------------------------

def test_cann_decodes_a_bump_where_it_is():
    c = m.CANN1D(256)
    for z in (-3.0, -1.0, 0.0, 2.5, 3.1):
        assert abs(c.ring_distance(c.decode(c.stimulus(torch.tensor(z))) - z).item()) < 1e-6


def test_cann_tracks_a_moving_stimulus_and_holds_the_bump_after_it():
    dt = 0.1
    c = m.CANN1D(256, k=8.1)
    c.reset_state()
    pos = torch.cat([torch.zeros(100), torch.linspace(0, 1.5 * math.pi, 200), torch.full((100,), 1.5 * math.pi)])
    drive = c.stimulus(pos)
    out = m.Runner(c, dt=dt, monitors=["u"], inputs=[{"path": "input_u", "value": drive, "per_step": True,
                                                       "add": False}], progress=False).run(40.0)
    error = c.ring_distance(c.decode(out["u"].double()) - pos.double()).abs()
    assert error.max() < 0.3  # lag while the stimulus moves at 0.24 rad/ms
    assert error[-50:].max() < 1e-2 and error[-1] < 1e-4  # and it catches up once the stimulus stops
    # Without input the bump stays where the stimulus left it (an attractor), and does not decay.
    free = m.Runner(c, dt=dt, monitors=["u"], progress=False).run(100.0)["u"].double()
    assert abs(c.ring_distance(c.decode(free[-1]) - 1.5 * math.pi).item()) < 1e-3
    peak = free.max(-1).values
    assert peak[-1] > 0.05 and torch.allclose(peak[-1], peak[-200], rtol=1e-3)


def test_cann_rejects_bad_parameters():
    with pytest.raises(RuntimeError, match="tau and a must be positive"):
        m.CANN1D(10, a=0.0)
    with pytest.raises(RuntimeError, match="unknown parameter 'width'"):
        m.CANN1D(10, width=1.0)


# ---- COBA-HH ------------------------------------------------------------------------------------

def test_coba_hh_is_self_sustained_at_physiological_rates():
    net = m.coba_hh_network(seed=1, n_exc=800, n_inh=200, p=0.08)  # the same fan-in as 4000 at p = 0.02
    out = m.Runner(net, monitors=["E.spike", "I.spike"], progress=False).run(200.0)
    late = slice(1000, 2000)  # the last 100 ms: the initial transient is over
    rate_E = out["E.spike"][late].float().sum().item() / 800 / 0.1
    rate_I = out["I.spike"][late].float().sum().item() / 200 / 0.1
    assert 10 < rate_E < 100 and 10 < rate_I < 100, (rate_E, rate_I)


def test_coba_hh_initial_state_depends_only_on_the_seed():
    a, b = m.coba_hh_network(seed=5, n_exc=40, n_inh=10), m.coba_hh_network(seed=5, n_exc=40, n_inh=10, dtype="float64")
    for path in ("E.V", "I2E.syn.g", "E2I.syn.g"):
        assert torch.allclose(a.state(path).double(), b.state(path), atol=1e-5), path
    b.reset_state()
    assert torch.allclose(a.state("E.V").double(), b.state("E.V"), atol=1e-5)  # a reset draws the same again
    g_inh = m.coba_hh_network(seed=5, n_exc=3000, n_inh=10).state("I2E.syn.g")
    assert g_inh.mean().item() == pytest.approx(1.0, abs=0.05) and g_inh.std().item() == pytest.approx(0.6, abs=0.05)


def test_coba_hh_rejects_unknown_fields():
    with pytest.raises(TypeError, match="unknown field 'n_excitatory'"):
        m.coba_hh_network(n_excitatory=10)


# ---- Wang 2002 ----------------------------------------------------------------------------------

def test_decision_network_chooses_the_favoured_pool():
    # Half size (weights scale up), stimulus 100-600 ms, strong coherence both ways.
    net = m.decision_network(coherence=[100.0, -100.0, 100.0, -100.0], scale=0.5, stim_off=600.0, seed=3)
    out = m.Runner(net, monitors=["rates.rate"], progress=False).run(700.0)
    rates = out["rates.rate"]  # [T, trials, 4]
    late = rates[5000:7000].mean(0)  # 500-700 ms
    assert (late[[0, 2], 0] > 15).all() and (late[[0, 2], 1] < 5).all(), late
    assert (late[[1, 3], 1] > 15).all() and (late[[1, 3], 0] < 5).all(), late
    assert (late[:, 3] > 5).all()  # the interneurons fire throughout
    spont = rates[:1000].mean((0, 1))  # before the stimulus: low spontaneous rates
    assert (spont[:3] < 5).all()


def test_decision_network_checks_its_trials():
    net = m.decision_network(coherence=[0.0, 10.0], scale=0.25)
    with pytest.raises(RuntimeError, match="2 coherence values for 3 trials"):
        net.reset_state(3)
    with pytest.raises(RuntimeError, match=r"coherence must lie in \[-100, 100\]"):
        m.decision_network(coherence=150.0)


# ---- `brain run` on their configs ---------------------------------------------------------------

def brain_run(*args):
    return subprocess.run([BRAIN_TOOL, "run", *map(str, args), "--no-progress"], capture_output=True, text=True)


def test_brain_run_coba_hh_config(tmp_path):
    r = brain_run(os.path.join(REPO, "models", "coba_hh.json"), "--duration", "40", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Hodgkin-Huxley neurons" in r.stderr and "COBA-HH network, 4000 neurons" in r.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["neurons"] == 4000 and summary["synapses"] > 250_000
    assert 5 < summary["rates_hz"]["E"] < 150
    m = monitors(tmp_path)
    assert m["E.spike"].shape == (400, 3200) and m["E.V"].shape == (400, 5)
    # The same network from Python, spike for spike.
    net = brain.models.coba_hh_network(seed=42)
    ours = brain.models.Runner(net, monitors=["E.spike"], progress=False).run(40.0)
    assert (ours["E.spike"].numpy() == m["E.spike"]).all()
    assert (tmp_path / "raster.svg").exists() and (tmp_path / "traces.svg").exists()


def test_brain_run_decision_making_config(tmp_path):
    with open(os.path.join(REPO, "models", "decision_making.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["network"].update(scale=0.5, coherence=-100.0, stim_on=100.0, stim_off=600.0)
    path = tmp_path / "dm.json"
    path.write_text(json.dumps(cfg))
    r = brain_run(path, "--duration", "600", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    d = summary["decision"]
    assert d["choice"] == "B" and d["rate_B_hz"] > 15 > d["rate_A_hz"], d
    assert "decision (coherence -100%): pool B" in r.stdout
    # Configs are validated with the model's own fields.
    cfg["network"]["coherence"] = 300
    path.write_text(json.dumps(cfg))
    r = brain_run(path)
    assert r.returncode == EXIT_USAGE and "/network/coherence: expected a number in [-100, 100]" in r.stderr


# ---- The CANN and ESN reference networks ----------------------------------------------------

def stationary_bump_height(n, k, J0, a):
    """The larger root of k rho sqrt(2 pi) a u0^2 - rho J0 u0 / sqrt(2) + 1 = 0: the height of the
    bump u0 exp(-x^2 / (4 a^2)) that holds itself with no input (CANN1D's sums over rho = n / 2pi
    neurons per radian taken as integrals); none above k_c = rho J0^2 / (8 sqrt(2 pi) a)."""
    rho = n / (2 * math.pi)
    A, B = k * rho * math.sqrt(2 * math.pi) * a, rho * J0 / math.sqrt(2)
    disc = B * B - 4 * A
    return None if disc < 0 else (B + math.sqrt(disc)) / (2 * A)


def test_cann_network_holds_the_analytic_bump_and_loses_it_above_k_c():
    n, J0, a = 256, 4.0, 0.5
    k_c = n / (2 * math.pi) * J0 ** 2 / (8 * math.sqrt(2 * math.pi) * a)
    for k, holds in ((8.1, True), (1.2 * k_c, False)):
        net = m.cann_network(size=n, k=k, z0=1.0, stim_off=30.0)
        out = m.Runner(net, dt=0.05, monitors=["cann.u", "bump.position", "bump.height", "stimulus.active"],
                       progress=False).run(200.0)
        u = out["cann.u"][-1].double()
        assert out["stimulus.active"][:599].all() and not out["stimulus.active"][601:].any()
        if holds:
            u0 = stationary_bump_height(n, k, J0, a)
            assert abs(u.max().item() / u0 - 1) < 0.01, (u.max().item(), u0)
            x = -math.pi + torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
            d = (x - 1.0 + math.pi) % (2 * math.pi) - math.pi
            torch.testing.assert_close(u, u0 * torch.exp(-d ** 2 / (4 * a * a)), atol=0.01 * u0, rtol=0)
            assert abs(out["bump.position"][-1].item() - 1.0) < 1e-3
        else:
            assert stationary_bump_height(n, k, J0, a) is None
            assert u.abs().max() < 1e-3 and out["bump.height"][-1].item() < 1e-6


def test_brain_run_cann_config_tracks_and_remembers(tmp_path):
    r = brain_run(os.path.join(REPO, "models", "cann.json"), "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["units"] == 512 and s["tracking"]["speed_rad_per_ms"] == 0.01
    assert s["tracking"]["mean_abs_error_rad"] < 0.05
    assert s["persistence"]["persists"] and abs(s["persistence"]["drift_rad"]) < 0.01
    mon = monitors(tmp_path)
    assert mon["cann.u"].shape == (400, 512) and mon["bump.error"].shape == (8000, 1)
    # The bump trails a stimulus that moves to larger positions.
    on = (mon["stimulus.active"][:, 0] > 0) & (mon["bump.error.t"] > 50)
    assert (mon["bump.error"][on, 0] < 0).mean() > 0.95
    assert "the bump persists" in r.stdout
    for picture in ("activity.svg", "positions.svg"):
        assert (tmp_path / picture).read_text().startswith("<svg")
    # The same network from Python, step for step.
    net = m.cann_network(seed=42, z0=-2.0, speed=0.01, stim_off=300.0)
    ours = m.Runner(net, dt=0.05, monitors=["bump.position"], progress=False).run(400.0)
    assert torch.equal(ours["bump.position"], torch.from_numpy(mon["bump.position"]))


def test_esn_lorenz_beats_persistence_by_far_and_brain_run_writes_it(tmp_path):
    result = m.esn_lorenz(size=200, train_steps=2000, test_steps=500, record_units=5)
    assert result["prediction"].shape == (500, 3) and result["states"].shape == (2600, 5)
    assert result["test_nrmse"] < 0.02 < 0.5 < result["persistence_nrmse"]
    jit = m.esn_lorenz(size=200, train_steps=2000, test_steps=500, connectivity="jit")
    assert jit["test_nrmse"] < 0.05
    with pytest.raises(TypeError, match="unknown field 'units'"):
        m.esn_lorenz(units=10)

    r = brain_run(os.path.join(REPO, "models", "esn.json"), "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["samples"] == 5100 and s["test_nrmse"] < 0.01 and s["persistence_nrmse"] > 0.5
    mon = monitors(tmp_path)
    assert mon["prediction"].shape == (1000, 3) and mon["states"].shape == (5100, 20)
    same = m.esn_lorenz(seed=7)
    assert abs(same["test_nrmse"] - s["test_nrmse"]) < 1e-12
    assert (tmp_path / "prediction.svg").exists()
    r = brain_run(os.path.join(REPO, "models", "esn.json"), "--duration", "10")
    assert r.returncode == EXIT_USAGE and "--duration is" in r.stderr


@pytest.mark.parametrize("model", ["cann", "esn"])
def test_rate_models_refuse_what_only_spiking_networks_have(tmp_path, model):
    config = os.path.join(REPO, "models", f"{model}.json")
    for extra, what in ((["--save-network"], "--save-network is"), (["--checkpoint", str(tmp_path / "c.ckpt")], None)):
        if what is None and model == "cann":
            continue  # the CANN checkpoints like any network
        r = brain_run(config, "--out", tmp_path / "o", *extra)
        assert r.returncode == EXIT_USAGE, r.stderr
        assert f"{what or '--checkpoint and --resume are'} not supported for the {model} model" in r.stderr
        assert not (tmp_path / "o" / "network.npz").exists()
