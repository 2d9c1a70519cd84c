"""The calcium, calcium-activated potassium and h channels, the GIF neuron and the BioNMDA
synapse against independent float64 references: the same equations written out again here
and integrated by scipy's adaptive LSODA, not by our stepping scheme."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import brain

m = brain.models
FARADAY = 96485.33212


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ---- The channel equations (include/brain/models/channels.h), for the reference ----------
def hh_rates(V):
    am = 0.1 * (V + 40) / (1 - np.exp(-(V + 40) / 10))
    bm = 4 * np.exp(-(V + 65) / 18)
    ah = 0.07 * np.exp(-(V + 65) / 20)
    bh = 1 / (1 + np.exp(-(V + 35) / 10))
    an = 0.01 * (V + 55) / (1 - np.exp(-(V + 55) / 10))
    bn = 0.125 * np.exp(-(V + 65) / 80)
    return am, bm, ah, bh, an, bn


def cat_kinetics(V, V_sh=-3.0, T=36.0):
    phi_p, phi_q = 3.55 ** ((T - 24) / 10), 3.0 ** ((T - 24) / 10)
    p_inf = sigmoid((V + 59 - V_sh) / 6.2)
    tau_p = (1 / (np.exp(-(V + 132 - V_sh) / 16.7) + np.exp((V + 16.8 - V_sh) / 18.2)) + 0.612) / phi_p
    q_inf = sigmoid(-(V + 83 - V_sh) / 4)
    u = V - V_sh
    tau_q = (np.exp((u + 467) / 66.6) if u < -80 else np.exp(-(u + 22) / 10.5) + 28) / phi_q
    return p_inf, tau_p, q_inf, tau_q


def h_kinetics(V):
    return sigmoid(-(V + 75) / 5.5), 1 / (np.exp(-0.086 * V - 14.59) + np.exp(0.0701 * V - 1.87))


def step_current(t, dt, pulses):
    """The input held over the step containing t: pulses is [(start, end, amplitude)]."""
    t_step = math.floor(t / dt + 1e-9) * dt
    return sum(a for (t0, t1, a) in pulses if t0 <= t_step < t1)


def per_step_input(pulses, dt, steps, n):
    rows = torch.tensor([step_current(k * dt, dt, pulses) for k in range(steps)], dtype=torch.float64)
    return rows.unsqueeze(1).expand(steps, n).contiguous()


def spike_times(V, t, V_th=20.0):
    up = np.nonzero((V[1:] > V_th) & (V[:-1] <= V_th))[0]
    return t[up + 1]


def test_h_channel_sag_and_rebound_match_the_reference():
    dt, T = 0.05, 1500.0
    g_L, E_L = 0.05, -65.0
    pulses = [(100.0, 1100.0, -1.0)]
    net = m.Network()
    cell = net.add("N", m.CondNeuGroup(1, V_init=-65.0))
    cell.add_channel("L", m.LeakChannel(1, g=g_L, E=E_L))
    h = cell.add_channel("H", m.HChannel(1))
    net.reset_state()
    steps = int(round(T / dt))
    out = m.Runner(net, dt=dt, monitors=["N.V", "N.H.p"], progress=False,
                   inputs=[{"path": "N.input", "value": per_step_input(pulses, dt, steps, 1), "per_step": True}]).run(T)
    V = out["N.V"][:, 0].double().numpy()

    g_h, E_h = 0.04, -43.0
    p0 = h_kinetics(-65.0)[0]

    def rhs(t, y):
        v, p = y
        p_inf, tau = h_kinetics(v)
        I = step_current(t, dt, pulses)
        return [-g_L * (v - E_L) - g_h * p * (v - E_h) + I, (p_inf - p) / tau]

    t_grid = dt * np.arange(1, steps + 1)
    ref = solve_ivp(rhs, (0, T), [-65.0, p0], method="LSODA", t_eval=t_grid, rtol=1e-10, atol=1e-10, max_step=dt)
    assert np.abs(V - ref.y[0]).max() < 0.02  # mV; the splitting's O(dt) error
    assert np.abs(out["N.H.p"][:, 0].numpy() - ref.y[1]).max() < 1e-4
    # The picture the channel exists for: a sag back from the trough during the step and an
    # overshoot above rest after it.
    during = V[int(100 / dt):int(1100 / dt)]
    assert during[-1] - during.min() > 1.0
    assert V[int(1100 / dt):].max() > V[int(100 / dt) - 1] + 0.5
    torch.testing.assert_close(h.p_inf(torch.tensor([-75.0], dtype=torch.float64)), torch.tensor([0.5],
                               dtype=torch.float64))


def build_thalamic_cell(n, g_T, g_KCa, depth):
    cell = m.CondNeuGroup(n, V_init=-65.0)
    cell.add_channel("Na", m.NaChannelHH(n))
    cell.add_channel("K", m.KChannelHH(n))
    cell.add_channel("L", m.LeakChannel(n))
    cat = cell.add_channel("CaT", m.CaTChannel(n, g=g_T))
    pool = cell.add_channel("Ca", m.CalciumPool(n, depth=depth))
    pool.add_influx(cat)
    cell.add_channel("KCa", m.KCaChannel(n, pool, g=g_KCa))
    return cell


def reference_thalamic_cell(g_T, g_KCa, depth, pulses, dt, T):
    g_Na, E_Na, g_K, E_K, g_L, E_L = 120.0, 50.0, 36.0, -77.0, 0.3, -54.387
    E_Ca, E_KCa, tau_Ca, Ca_rest, alpha, beta = 120.0, -95.0, 5.0, 2.4e-4, 48.0, 0.09

    def rhs(t, y):
        V, mm, hh, nn, p, q, Ca, r = y
        am, bm, ah, bh, an, bn = hh_rates(V)
        p_inf, tau_p, q_inf, tau_q = cat_kinetics(V)
        I_T = -g_T * p * p * q * (V - E_Ca)
        I = (-g_Na * mm ** 3 * hh * (V - E_Na) - g_K * nn ** 4 * (V - E_K) - g_L * (V - E_L) + I_T
             - g_KCa * r * r * (V - E_KCa) + step_current(t, dt, pulses))
        drive = max(10 * I_T / (2 * FARADAY * depth), 0.0)
        a = alpha * Ca ** 2
        return [I, am * (1 - mm) - bm * mm, ah * (1 - hh) - bh * hh, an * (1 - nn) - bn * nn,
                (p_inf - p) / tau_p, (q_inf - q) / tau_q, drive + (Ca_rest - Ca) / tau_Ca, a * (1 - r) - beta * r]

    am, bm, ah, bh, an, bn = hh_rates(-65.0)
    p_inf, _, q_inf, _ = cat_kinetics(-65.0)
    a = alpha * Ca_rest ** 2
    y0 = [-65.0, 0.0529, 0.5961, 0.3177, p_inf, q_inf, Ca_rest, a / (a + beta)]
    steps = int(round(T / dt))
    t_grid = dt * np.arange(1, steps + 1)
    return t_grid, solve_ivp(rhs, (0, T), y0, method="LSODA", t_eval=t_grid, rtol=1e-9, atol=1e-11, max_step=dt).y


def test_t_type_rebound_burst_with_calcium_and_kca_matches_the_reference():
    # A hyperpolarizing step de-inactivates I_T; on release the cell fires rebound spikes
    # whose calcium opens the KCa channel, which spaces them out. A thin shell (0.1 um) makes the calcium matter.
    dt, T, depth = 0.01, 260.0, 0.1
    pulses = [(20.0, 170.0, -10.0)]
    variants = {"full": (2.0, 10.0), "no_T": (0.0, 10.0), "no_KCa": (2.0, 0.0)}
    net = m.Network()
    for name, (g_T, g_KCa) in variants.items():
        net.add(name, build_thalamic_cell(1, g_T, g_KCa, depth))
    net.reset_state()
    steps = int(round(T / dt))
    current = per_step_input(pulses, dt, steps, 1)
    monitors = [f"{v}.V" for v in variants] + ["full.Ca.Ca", "full.KCa.p"]
    inputs = [{"path": f"{v}.input", "value": current, "per_step": True} for v in variants]
    out = m.Runner(net, dt=dt, monitors=monitors, inputs=inputs, progress=False).run(T)

    t, ref = reference_thalamic_cell(*variants["full"], depth, pulses, dt, T)
    ours = {v: spike_times(out[f"{v}.V"][:, 0].double().numpy(), t) for v in variants}
    want = spike_times(ref[0], t)
    assert len(want) >= 3, want
    assert len(ours["full"]) == len(want)
    np.testing.assert_allclose(ours["full"], want, atol=0.3)  # ms
    rebound = ours["full"][ours["full"] > 170]
    assert len(rebound) >= 3
    # Calcium during the burst and the KCa gate follow the reference.
    Ca = out["full.Ca.Ca"][:, 0].double().numpy()
    assert Ca.max() > 10 * 2.4e-4
    assert abs(Ca.max() - ref[6].max()) < 0.05 * ref[6].max()
    assert np.abs(out["full.KCa.p"][:, 0].double().numpy() - ref[7]).max() < 0.02
    # Without I_T, fewer rebound spikes; without KCa, the calcium no longer slows the firing.
    assert len(ours["no_T"][ours["no_T"] > 170]) < len(rebound)
    fast = ours["no_KCa"][ours["no_KCa"] > 170]
    assert fast[1] - fast[0] < 0.7 * (rebound[1] - rebound[0])


def test_channel_parameters_are_validated():
    with pytest.raises(RuntimeError, match="g must be >= 0"):
        m.CaTChannel(1, g=-1.0)
    with pytest.raises(RuntimeError, match="phi must be positive"):
        m.HChannel(1, phi=0.0)
    with pytest.raises(RuntimeError, match="depth and tau must be positive"):
        m.CalciumPool(1, depth=0.0)
    with pytest.raises(RuntimeError, match="the pool has 2 neurons"):
        m.KCaChannel(3, m.CalciumPool(2))


def test_bio_nmda_matches_its_kinetic_equations():
    # One presynaptic spike at step 10: transmitter T for T_dur ms after it, then
    # dx/dt = alpha2 T (1 - x) - beta2 x and dg/dt = alpha1 x (1 - g) - beta1 g.
    dt, T_end = 0.1, 300.0
    net = m.Network()
    pre = net.add("P", m.SpikeTimeGroup(1, [0], [1.0]))
    syn = m.BioNMDA(1, dtype="float64")
    post = net.add("N", m.LIF(1, V_th=1e9, dtype="float64"))
    net.add("proj", m.AlignPreProj(pre, syn, m.OneToOne(1, torch.tensor(1.0, dtype=torch.float64)),
                                   m.MgBlock(E=0.0), post))
    net.reset_state()
    out = m.Runner(net, dt=dt, monitors=["proj.syn.g", "proj.syn.x", "P.spike"], progress=False).run(T_end)
    spike_step = int(out["P.spike"][:, 0].nonzero()[0])
    g = out["proj.syn.g"][:, 0].double().numpy()
    a1, b1, a2, b2, conc, dur = 2.0, 0.01, 0.2, 0.5, 1.0, 0.5
    t0 = (spike_step + 1) * dt  # the transmitter is there during the steps after the spike

    def rhs(t, y):
        gg, x = y
        Tc = conc if t0 <= t < t0 + dur - 1e-9 else 0.0
        return [a1 * x * (1 - gg) - b1 * gg, a2 * Tc * (1 - x) - b2 * x]

    steps = len(g)
    t_grid = dt * np.arange(1, steps + 1)
    ref = solve_ivp(rhs, (0, T_end), [0.0, 0.0], method="LSODA", t_eval=t_grid, rtol=1e-11, atol=1e-13,
                    max_step=dt / 2)
    assert g.max() > 0.05
    np.testing.assert_allclose(g, ref.y[0], atol=1e-5 * g.max())
    # Rise in a few ms, decay with 1/beta1 = 100 ms.
    peak = int(np.argmax(g))
    assert 1.0 < (peak - spike_step) * dt < 15.0
    later = peak + int(100 / dt)
    assert abs(g[later] / g[peak] - math.exp(-1)) < 0.05


def test_gif_from_python_fires_at_the_lif_period():
    neuron = m.GIF(1, dtype="float64")
    assert m.GIF.defaults()["V_th_inf"] == -50.0
    net = m.Network()
    net.add("G", neuron)
    net.reset_state()
    out = m.Runner(net, dt=0.1, monitors=["G.spike", "G.V_th"], inputs={"G.input": 1.5}, progress=False).run(200.0)
    steps = out["G.spike"][:, 0].nonzero().flatten()
    period = math.floor(20 * math.log(30 / 10) / 0.1) + 1
    assert (steps.diff() == period).all() and len(steps) >= 5
    assert (out["G.V_th"] == -50.0).all()
