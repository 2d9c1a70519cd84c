"""The C++ model library from Python: COBA built and run through brain.models equals `brain run`
spike for spike, the modules are torch.nn.Modules, a spiking net trains with torch.optim, and
the examples run at tiny sizes."""

import copy
import importlib.util
import os
import subprocess

import numpy as np
import pytest
import torch

import brain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRAIN_TOOL = os.path.join(os.path.dirname(brain.__file__), "bin", "brain")
DRIVE = [{"path": "E.input", "value": 20.0, "add": False}, {"path": "I.input", "value": 20.0, "add": False}]


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "examples", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_coba_from_python_equals_brain_run(tmp_path):
    out = tmp_path / "run"
    subprocess.run([BRAIN_TOOL, "run", os.path.join(REPO, "models", "coba.json"), "--duration", "30", "--out",
                    str(out), "--no-progress"], check=True, capture_output=True)
    expected = np.load(out / "monitors.npz")
    net = brain.models.ei_network("coba", seed=42)
    runner = brain.models.Runner(net, dt=0.1, monitors=["E.spike", "I.spike", ("E.V", [0, 1, 2, 3, 4])],
                                 inputs=DRIVE, progress=False)
    result = runner.run(30.0)
    assert result["E.spike"].shape == (300, 3200) and result["E.spike"].dtype == torch.bool
    assert result["E.spike"].any()
    for key in ("E.spike", "I.spike", "E.V"):
        np.testing.assert_array_equal(result[key].numpy(), expected[key])
    np.testing.assert_allclose(result["t"]["E.V"].numpy(), expected["E.V.t"])
    runner.save(tmp_path / "py")
    assert set(np.load(tmp_path / "py" / "monitors.npz").files) >= {"E.spike", "E.V.t"}


def test_network_is_a_torch_module_with_its_state_as_buffers():
    net = brain.models.ei_network("cuba", seed=1, n_exc=80, n_inh=20, p=0.1)
    assert isinstance(net, torch.nn.Module)
    assert net.state("E.V").shape == (80,)
    buffers = dict(net.named_buffers())
    assert any(k.endswith("indptr") for k in buffers)
    assert any(k.endswith("E.V") or k == "E.V" for k in buffers)
    before = net.state("E.V").clone()
    brain.models.Runner(net, inputs=DRIVE, progress=False).run_steps(20)
    assert not torch.equal(before, net.state("E.V"))
    net.reset_state()
    assert net.state("E.V").shape == (80,)
    with pytest.raises(TypeError, match="unknown field 'n_excitatory'"):
        brain.models.ei_network("coba", n_excitatory=10)
    with pytest.raises(RuntimeError):
        brain.models.Runner(net, monitors=["E.no_such_state"], progress=False).run(1.0)


def test_state_dict_holds_the_model_and_loads_into_a_fresh_one(tmp_path):
    # Parameters and connectivity; not the run's states (a fresh SpikingNet has none until it
    # runs, so including them would make every strict load fail).
    x = (torch.rand(12, 3, 8, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    for recurrence in ("dense", "csr", "jit"):
        trained = brain.models.SpikingNet(8, 16, 3, recurrent=True, recurrence=recurrence, seed=5)
        with torch.no_grad():
            for p in trained.parameters():
                p.add_(0.1)
        y = trained(x)
        state = trained.state_dict()
        assert state and not any(k.startswith("lif.") for k in state), list(state)
        torch.save(state, tmp_path / "snn.pt")
        fresh = brain.models.SpikingNet(8, 16, 3, recurrent=True, recurrence=recurrence, seed=5)
        fresh.load_state_dict(torch.load(tmp_path / "snn.pt"))
        assert torch.equal(fresh(x), y), recurrence
    net = brain.models.ei_network("coba", seed=3, n_exc=40, n_inh=10, delay_ms=1.0)
    keys = set(net.state_dict())
    assert {"E2E.comm.weights", "E2E.comm.indptr", "E2E.comm.indices"} <= keys
    assert not any(k.endswith((".V", ".g", ".spike", ".history")) for k in keys), keys
    same = brain.models.ei_network("coba", seed=3, n_exc=40, n_inh=10, delay_ms=1.0)
    with torch.no_grad():
        for p in same.parameters():
            p.mul_(3.0)
    same.load_state_dict(net.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(same.parameters(), net.parameters()))
    with pytest.raises(RuntimeError, match="size mismatch for E2E.comm.indices"):
        brain.models.ei_network("coba", seed=4, n_exc=40, n_inh=10).load_state_dict(net.state_dict())


def test_spiking_net_and_readout_pickle_and_deep_copy_other_modules_say_why_not(tmp_path):
    x = (torch.rand(12, 3, 8, generator=torch.Generator().manual_seed(2)) < 0.3).double()
    net = brain.models.SpikingNet(8, 16, 3, recurrent=True, recurrence="csr", seed=5).double()
    net.input.weight.requires_grad_(False)
    net.eval()
    for twin in (copy.deepcopy(net), None):
        if twin is None:
            torch.save(net, tmp_path / "net.pt")
            twin = torch.load(tmp_path / "net.pt", weights_only=False)
        assert torch.equal(twin(x), net(x))
        assert not twin.training and not twin.input.weight.requires_grad and twin.readout.weight.requires_grad
        assert twin.cpp_module is not net.cpp_module
    # A Readout (a FORCE- or ridge-trained snapshot) too.
    readout = brain.models.Readout(6, 2)
    features = torch.randn(50, 6, dtype=torch.float64)
    readout.fit_ridge(features, features[:, :2] * 2 + 1)
    twin = copy.deepcopy(readout)
    with torch.no_grad():
        readout.weight.zero_()
    assert torch.allclose(twin(features), features[:, :2] * 2 + 1) and twin.weight.dtype == torch.float64
    with pytest.raises(TypeError, match="cannot be pickled or copied: build another"):
        copy.deepcopy(brain.models.ei_network("coba", n_exc=40, n_inh=10))


def test_tensors_cannot_be_swapped_in_from_python():
    """torch.func.functional_call (and register_buffer, register_parameter) would put a Python
    tensor where a C++ module never reads it: refused with what to do instead, and the model
    is left as it was (SpikingNet, which computes with given parameters, is the exception:
    test_spiking_net_functional_call). named_parameters/named_buffers take torch.nn.Module's
    arguments."""
    readout = brain.models.Readout(6, 2)
    features = torch.randn(4, 6, dtype=torch.float64)
    y = readout(features)
    zeros = {k: torch.zeros_like(v) for k, v in readout.named_parameters()}
    with pytest.raises(TypeError, match="cannot be set or replaced from Python.*p.copy_"):
        torch.func.functional_call(readout, zeros, (features,))
    snn = brain.models.SpikingNet(3, 8, 2, seed=1)
    with pytest.raises(TypeError, match="cannot be set or replaced"):
        snn.register_buffer("extra", torch.zeros(3))
    with pytest.raises(TypeError, match="cannot be set or replaced"):
        snn.readout.register_parameter("extra", torch.nn.Parameter(torch.zeros(3)))
    assert torch.equal(readout(features), y)
    names = [k for k, _ in snn.named_parameters()]
    assert names == ["input.weight", "input.bias", "readout.weight", "readout.bias"]
    assert [k for k, _ in snn.named_parameters("snn", remove_duplicate=False)] == [f"snn.{k}" for k in names]
    net = brain.models.ei_network("coba", seed=1, n_exc=8, n_inh=2, p=0.5)
    assert dict(net.named_buffers("net")).keys() == {f"net.{k}" for k, _ in net.named_buffers()}
    with pytest.raises(TypeError, match="cannot be set or replaced"):
        torch.func.functional_call(net, dict(net.named_buffers()), ())


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("recurrence", [None, "dense", "csr", "jit"])
def test_spiking_net_functional_call(fused, recurrence):
    """torch.func.functional_call runs a SpikingNet with the given parameters: the output is
    that of a copy holding them, gradients reach them (equal to the module's own backward),
    per-sample gradients (vmap of grad) equal a loop over the samples, and the module's own
    parameters and output are untouched afterwards."""
    from torch.func import functional_call, grad, vmap
    snn = brain.models.SpikingNet(4, 12, 3, recurrent=recurrence is not None, recurrence=recurrence or "dense",
                                  recurrent_prob=0.4, recurrent_delay=2, seed=3, fused=fused).double()
    x = torch.rand(15, 5, 4, dtype=torch.float64) * 4
    labels = torch.tensor([0, 1, 2, 1, 0])
    own_output = snn(x)
    params = {k: v.detach() * 1.3 for k, v in snn.named_parameters()}
    buffers = dict(snn.named_buffers())
    twin = copy.deepcopy(snn)
    twin.load_state_dict({**snn.state_dict(), **params})
    got = functional_call(snn, (params, buffers), (x,))
    assert torch.equal(got, twin(x)) and not torch.equal(got, own_output)
    assert torch.equal(snn(x), own_output)  # its own parameters again

    def loss(p, inputs, targets):
        out = functional_call(snn, p, (inputs,))
        return torch.nn.functional.cross_entropy(out.mean(0), targets)

    g = grad(loss)(params, x, labels)
    twin.zero_grad()
    torch.nn.functional.cross_entropy(twin(x).mean(0), labels).backward()
    for name, p in twin.named_parameters():
        assert p.grad.abs().sum() > 0, name
        assert torch.allclose(g[name], p.grad, rtol=1e-10, atol=1e-12), name

    def sample_loss(p, inputs, target):  # one sample: [T, n_in] -> a batch of one
        return loss(p, inputs.unsqueeze(1), target.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 1, 0))(params, x, labels)
    for b in range(x.shape[1]):
        one = grad(sample_loss)(params, x[:, b], labels[b])
        for name in params:
            assert torch.allclose(per_sample[name][b], one[name], rtol=1e-10, atol=1e-12), (name, b)
    assert torch.equal(snn(x), own_output)


def test_spiking_net_functional_call_is_checked():
    """A replacement of the wrong shape, or for the connectivity, is refused by name."""
    snn = brain.models.SpikingNet(4, 12, 3, recurrent=True, recurrence="csr", seed=3)
    x = torch.rand(5, 2, 4)
    with pytest.raises(ValueError, match=r"'readout.weight': .* shape \(3, 12\), got \(3, 11\)"):
        torch.func.functional_call(snn, {"readout.weight": torch.zeros(3, 11)}, (x,))
    with pytest.raises(TypeError, match="'readout.weight': a brain module's tensors cannot be removed"):
        del snn.readout._parameters["weight"]
    with pytest.raises(TypeError, match="'recurrent.indptr': the connectivity"):
        torch.func.functional_call(snn, {"recurrent.indptr": torch.zeros(13, dtype=torch.int32)}, (x,))
    with pytest.raises(RuntimeError, match="forward_with: no parameter 'readout.wieght'; its parameters are input"):
        snn.cpp_module.forward_with(x, {"readout.wieght": torch.zeros(3, 12)})
    snn(x)  # the run state exists after a call
    states = {name: torch.full_like(b, 5.0) for name, b in snn.named_buffers() if name.startswith("lif.")}
    assert states and torch.equal(torch.func.functional_call(snn, states, (x,)), snn(x))  # calls start from rest
    assert torch.equal(snn(x), snn(x)) and not snn._replacements


def test_double_keeps_integer_buffers():
    # torch's C++ Module::to converted every tensor: CSR indices became floats and the next
    # step failed. Floating-point tensors move, integer ones keep their dtype (as in Python).
    net = brain.models.ei_network("coba", seed=3, n_exc=40, n_inh=10, delay_ms=1.0, V_init="normal")
    net.double()
    dtypes = {name.rsplit(".", 1)[-1]: b.dtype for name, b in net.named_buffers()}
    assert dtypes["indptr"] == torch.int32 and dtypes["V"] == torch.float64
    brain.models.Runner(net, inputs=DRIVE, progress=False).run_steps(20)
    assert net.state("E.V").dtype == torch.float64
    snn = brain.models.SpikingNet(8, 16, 3, recurrent=True, recurrence="csr", seed=5).double()
    assert snn.state_dict()["recurrent.indptr"].dtype == torch.int32
    assert snn(torch.zeros(4, 2, 8, dtype=torch.float64)).dtype == torch.float64


def test_float64_inputs_reach_a_float64_network_unrounded():
    def last_V(drive):
        net = brain.models.Network()
        net.add("E", brain.models.LIF(3, V_th=1e9, tau=10.0, dtype="float64"))
        net.reset_state()
        inputs = [{"path": "E.input", "value": drive, "per_step": True}]
        return brain.models.Runner(net, monitors=["E.V"], inputs=inputs, progress=False).run_steps(5)["E.V"][-1]
    ones = torch.ones(5, 3, dtype=torch.float64)
    # 1e-12 is below float32's resolution at 1.0: rounded to float32 it vanished.
    assert (last_V(ones + 1e-12) > last_V(ones)).all()


def test_spiking_net_takes_an_empty_window():
    for recurrent, recurrence, fused in [(False, "dense", True), (False, "dense", False), (True, "dense", True),
                                          (True, "csr", True), (True, "jit", True), (True, "csr", False)]:
        net = brain.models.SpikingNet(8, 16, 3, recurrent=recurrent, recurrence=recurrence, fused=fused)
        assert net(torch.zeros(0, 2, 8)).shape == (0, 2, 3), (recurrent, recurrence, fused)


def test_spiking_net_trains_with_torch_optim():
    torch.manual_seed(0)
    net = brain.models.SpikingNet(n_in=8, n_hidden=32, n_out=2, seed=3)
    params = list(net.parameters())
    assert len(params) == 4 and all(p.requires_grad for p in params)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (64,), generator=g)
    x = (torch.rand(20, 64, 8, generator=g) < (0.1 + 0.4 * y.float()).view(1, -1, 1)).float()
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(net(x).mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (net(x).mean(0).argmax(1) == y).float().mean() > 0.9


def test_examples_run_at_tiny_sizes(tmp_path):
    pytest.importorskip("matplotlib")
    result = load_example("coba_raster").main(["--duration", "20", "--n-exc", "200", "--n-inh", "50", "--device",
                                               "cpu", "--out", str(tmp_path / "raster.png")])
    assert result["E.spike"].shape == (200, 200) and os.path.getsize(tmp_path / "raster.png") > 1000
    assert load_example("event_op_module").main(["--n-pre", "300", "--n-post", "50", "--steps", "60"]) < 0.5
    # STDP with per-synapse delays: potentiated where spikes arrive shortly before the neuron
    # fires, depressed where they arrive shortly after, whatever their delay.
    learnt = load_example("delay_selection").main(["--seconds", "3", "--n-in", "100",
                                                   "--out", str(tmp_path / "delays.png")])
    w0 = 0.6 * 2
    assert os.path.getsize(tmp_path / "delays.png") > 1000
    after = (learnt["arrival_phase_ms"] - learnt["fire_phase_ms"]) % 50.0
    assert learnt["selected_mean"] > 2 * w0 and learnt["weights"][(after > 0.5) & (after < 10)].mean() < 0.5 * w0
    pytest.importorskip("sklearn")
    history = load_example("train_digits").main(["--epochs", "3", "--limit", "400", "--hidden", "32", "--steps", "10"])
    assert history["losses"][-1] < history["losses"][0]


def test_digits_example_reaches_95_percent():
    pytest.importorskip("sklearn")
    result = load_example("train_digits").main([])
    assert result["test_accuracy"] >= 0.95, result


def test_evidence_example_learns_with_memory_bounded_bptt():
    history = load_example("train_evidence").main(["--epochs", "6", "--hidden", "64", "--recompute-chunk", "20"])
    assert history[-1]["eval_accuracy"] >= 0.85, history[-1]


def test_coba_built_from_parts_equals_the_library_network():
    """The same network composed in Python from LIF, fixed_prob, CsrComm, Expon, COBA and
    AlignPostProj (with the library's seeds and initial potentials) spikes identically."""
    seed, n_exc, n_inh, p = 7, 400, 100, 0.05
    reference = brain.models.ei_network("coba", seed=seed, n_exc=n_exc, n_inh=n_inh, p=p)
    m = brain.models
    net = m.Network("EINet")
    E = net.add("E", m.LIF(n_exc, tau_ref=5.0))
    I = net.add("I", m.LIF(n_inh, tau_ref=5.0))
    g = torch.Generator().manual_seed(seed ^ 0x5EED0001)
    E.set_V_init(torch.normal(-55.0, 2.0, (n_exc,), generator=g, dtype=torch.float64).float())
    I.set_V_init(torch.normal(-55.0, 2.0, (n_inh,), generator=g, dtype=torch.float64).float())
    for salt, (name, pre, post, w, tau, E_rev) in enumerate(
            [("E2E", E, E, 0.6, 5.0, 0.0), ("E2I", E, I, 0.6, 5.0, 0.0),
             ("I2E", I, E, 6.7, 10.0, -80.0), ("I2I", I, I, 6.7, 10.0, -80.0)], start=1):
        indptr, indices = m.fixed_prob(pre.size(), post.size(), p, pre is not post, seed * 4 + salt)
        comm = m.CsrComm(indptr, indices, torch.tensor(w), pre.size(), post.size())
        net.add(name, m.AlignPostProj(pre, comm, m.Expon(post.size(), tau), m.COBA(E_rev), post))
    net.reset_state()
    torch.testing.assert_close(net.state("E.V"), reference.state("E.V"), rtol=0, atol=0)
    monitors = ["E.spike", "I.spike"]
    ours = brain.models.Runner(net, monitors=monitors, inputs=DRIVE, progress=False).run(40.0)
    theirs = brain.models.Runner(reference, monitors=monitors, inputs=DRIVE, progress=False).run(40.0)
    assert ours["E.spike"].any()
    for key in monitors:
        assert torch.equal(ours[key], theirs[key])
    assert len(list(net.parameters())) == len(list(reference.parameters()))


def delayed_coba(seed=3, delay_shift=0, device="cpu"):
    """A small COBA network whose synapses each have a delay (0 to 1.2 ms, plus delay_shift
    steps) of their own."""
    net = brain.models.ei_network("coba", seed=seed, n_exc=160, n_inh=40, p=0.1, delay_ms=0.0, dtype="float64",
                                  device=device)
    g = torch.Generator().manual_seed(seed)
    for name in ("E2E", "E2I", "I2E", "I2I"):
        proj = getattr(net, name)
        proj.set_synapse_delays(torch.randint(0, 13, (proj.comm.indices.numel(),), generator=g) + delay_shift)
    net.reset_state()
    return net


def test_per_synapse_delays_replay_checkpoint_and_state_dict(tmp_path):
    """Per-synapse delays (AlignPostProj.set_synapse_delays) from Python: both engines, recorded-step
    replay and checkpoints carry the spike history the synapses read; the delays are in the
    state_dict. (Delivery itself is checked against a naive sum in C++ and against Brian2 in
    test_brian2_crosscheck.)"""
    monitors = ["E.spike", "I.spike", ("E.V", [0, 7])]

    def runner(net, engine="modules", **kw):
        return brain.models.Runner(net, monitors=monitors, inputs=DRIVE, progress=False, engine=engine, **kw)

    straight = runner(delayed_coba(), graphs="off").run_steps(300)
    assert straight["engine"] == "modules" and straight["E.spike"].any()
    # The fast engine takes them (delivered group by group: equal to rounding, see
    # test_fast_engine.cpp), and is what "auto" picks.
    fast = runner(delayed_coba(), engine="auto")
    assert fast.fast_engine_reason() == ""
    fast_run = fast.run_steps(300)
    assert fast_run["engine"] == "fast"
    assert torch.equal(fast_run["E.spike"], straight["E.spike"])
    torch.testing.assert_close(fast_run["E.V"], straight["E.V"], rtol=1e-9, atol=1e-9)
    emulated = runner(delayed_coba(), graphs="emulate").run_steps(300)
    assert emulated["graphs"] == "emulated" and emulated["replayed_steps"] > 0
    for key in ("E.spike", "I.spike", "E.V"):
        assert torch.equal(straight[key], emulated[key]), key

    first = runner(delayed_coba())
    first.run_steps(150)
    first.save_checkpoint(tmp_path / "half.ckpt")
    resumed = runner(delayed_coba())
    resumed.load_checkpoint(tmp_path / "half.ckpt")
    tail = resumed.run_steps(150)
    for key in ("E.spike", "I.spike", "E.V"):
        assert torch.equal(tail[key], straight[key][150:]), key

    state = delayed_coba().state_dict()
    assert any(k.startswith("E2E.synapse_delays.") for k in state), sorted(state)
    again = delayed_coba()
    again.load_state_dict(state)
    for k, v in again.state_dict().items():
        assert torch.equal(v, state[k]), k
    # The delays the loop reads are in the buffers' names: a state_dict of other delays is
    # refused by name, never run under this network's delays.
    with pytest.raises(RuntimeError, match=r'Missing key\(s\).*"E2E\.synapse_delays\.indptr_d13"'):
        delayed_coba(delay_shift=1).load_state_dict(state)

    # The builder draws them itself, as the JSON config's "delay_ms": {"dist": "uniform", ...} does.
    drawn = brain.models.ei_network("coba", n_exc=400, n_inh=100, p=0.05, delay_per_synapse=True,
                                    delay_ms_low=1.0, delay_ms_high=2.0)
    assert drawn.E2E.synapse_delay_groups() == list(range(10, 21))

    proj = brain.models.ei_network("coba", n_exc=40, n_inh=10, delay_ms=0.0).E2E
    with pytest.raises(RuntimeError, match="integer tensor"):
        proj.set_synapse_delays(torch.zeros(proj.comm.indices.numel()))
    with pytest.raises(RuntimeError, match=r"one delay per synapse \(\[\d+\]\)"):
        proj.set_synapse_delays(torch.zeros(3, dtype=torch.long))


def plastic_delayed_net(device="cpu"):
    """Poisson -> LIF E (50) through STDP synapses, and E onto itself through depressing (STP)
    synapses, each synapse with a delay of its own (0 to 8 steps)."""
    m = brain.models
    net = m.Network()
    src = net.add("src", m.PoissonGroup(40, 40.0, seed=2))
    E = net.add("E", m.LIF(50, dtype="float64"))
    g = torch.Generator().manual_seed(3)
    indptr, indices = m.fixed_prob(40, 50, 0.3, True, 4)
    w = 0.2 + 0.6 * torch.rand(indices.numel(), dtype=torch.float64, generator=g)
    inp = net.add("in", m.AlignPostProj(src, m.CsrComm(indptr, indices, w, 40, 50), m.Expon(50, 5.0, dtype="float64"),
                                        m.CUBA(), E))
    inp.add_stdp(A_plus=0.02, A_minus=0.021, w_min=0.0, w_max=1.0)
    inp.set_synapse_delays(torch.randint(0, 9, (indices.numel(),), generator=g))
    indptr, indices = m.fixed_prob(50, 50, 0.2, False, 5)
    rec = net.add("rec", m.AlignPostProj(E, m.CsrComm(indptr, indices, torch.tensor(1.5, dtype=torch.float64), 50, 50),
                                         m.Expon(50, 5.0, dtype="float64"), m.CUBA(), E))
    rec.set_synapse_delays(torch.randint(0, 9, (indices.numel(),), generator=g))
    rec.add_stp(U=0.4, tau_f=50.0, tau_d=300.0, facilitation=False)
    net.to(device)
    net.reset_state()
    return net


def test_per_synapse_delays_with_stp_and_stdp_replay_and_checkpoint(tmp_path):
    """STP and STDP on synapses with delays of their own (checked against one projection per
    delay and the delayed pair sum in C++, test_models.cpp), from Python: recorded-step replay
    (the rules' tensor ops on the step clock) equals the module engine's straight run (their
    fused CPU pass) in spikes and learnt weights; the fast engine (its spike queue, which sums
    arrivals in another order) equals it in spikes and to rounding in weights; and a
    checkpoint carries the rings of releases and traces, on either engine."""
    monitors = ["E.spike", ("E.V", [0, 9])]
    drive = [{"path": "E.input", "value": 12.0, "add": False}]

    def runner(net, **kw):
        return brain.models.Runner(net, monitors=monitors, inputs=drive, progress=False, **kw)

    net = plastic_delayed_net()
    w0 = net.state_dict()["in.comm.weights"].clone()
    straight = runner(net, graphs="off", engine="modules").run_steps(400)
    learnt = net.state_dict()["in.comm.weights"]
    assert straight["E.spike"].float().mean() > 0.002
    assert (learnt - w0).abs().max() > 1e-3

    again = plastic_delayed_net()
    emulated = runner(again, graphs="emulate", engine="modules").run_steps(400)
    assert emulated["graphs"] == "emulated" and emulated["replayed_steps"] > 0
    assert torch.equal(emulated["E.spike"], straight["E.spike"])
    torch.testing.assert_close(emulated["E.V"], straight["E.V"], rtol=0, atol=1e-12)
    torch.testing.assert_close(again.state_dict()["in.comm.weights"], learnt, rtol=0, atol=1e-14)

    fast_net = plastic_delayed_net()
    fast = runner(fast_net).run_steps(400)
    assert fast["engine"] == "fast"
    assert torch.equal(fast["E.spike"], straight["E.spike"])
    torch.testing.assert_close(fast_net.state_dict()["in.comm.weights"], learnt, rtol=0, atol=1e-12)

    for engine, reference, weights in (("modules", straight, learnt),
                                       ("fast", fast, fast_net.state_dict()["in.comm.weights"])):
        first_net = plastic_delayed_net()
        first = runner(first_net, engine=engine)
        assert first.run_steps(200)["engine"] == engine
        first.save_checkpoint(tmp_path / f"half_{engine}.ckpt")
        # The rings: 9 steps (delays 0 to 8) of the 40 inputs' traces and of the 50 neurons' releases.
        assert tuple(first_net.state("in.stdp_trace_history.history").shape) == (9, 40)
        assert tuple(first_net.state("rec.stp_releases.history").shape) == (9, 50)
        assert first_net.state("in.stdp_trace_history.history").abs().sum() > 0
        resumed_net = plastic_delayed_net()
        resumed = runner(resumed_net, engine=engine)
        resumed.load_checkpoint(tmp_path / f"half_{engine}.ckpt")
        tail = resumed.run_steps(200)
        assert torch.equal(tail["E.spike"], reference["E.spike"][200:]), engine
        assert torch.equal(resumed_net.state_dict()["in.comm.weights"], weights), engine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_per_synapse_delays_with_stp_and_stdp_equal_the_cpu():
    """On a GPU, STP and STDP with per-synapse delays take the tensor ops: the CPU's spikes,
    potentials and learnt weights to rounding."""
    drive = [{"path": "E.input", "value": 12.0, "add": False}]
    nets = [plastic_delayed_net(device=d) for d in ("cpu", "cuda")]
    runs = [brain.models.Runner(net, monitors=["E.spike", "E.V"], inputs=drive, progress=False,
                                graphs="off").run_steps(300) for net in nets]
    assert runs[0]["E.spike"].any()
    assert torch.equal(runs[1]["E.spike"].cpu(), runs[0]["E.spike"])
    torch.testing.assert_close(runs[1]["E.V"].cpu(), runs[0]["E.V"], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(nets[1].state_dict()["in.comm.weights"].cpu(),
                               nets[0].state_dict()["in.comm.weights"], rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("graphs", ["off", "auto"])
def test_cuda_per_synapse_delays_equal_the_cpu(graphs):
    """On a GPU the module engine delivers per-synapse delays with the CUDA event ops (and, with
    graphs="auto", from replayed CUDA graphs): the CPU's spikes, potentials to rounding."""
    monitors = ["E.spike", "I.spike", "E.V"]
    cpu = brain.models.Runner(delayed_coba(), monitors=monitors, inputs=DRIVE, progress=False,
                              engine="modules").run_steps(200)
    gpu = brain.models.Runner(delayed_coba(device="cuda"), monitors=monitors, inputs=DRIVE, progress=False,
                              graphs=graphs).run_steps(200)
    assert gpu["engine"] == "modules" and (graphs == "off" or gpu["replayed_steps"] > 0), gpu["graphs"]
    assert cpu["E.spike"].any()
    for key in ("E.spike", "I.spike"):
        assert torch.equal(gpu[key].cpu(), cpu[key]), key
    torch.testing.assert_close(gpu["E.V"].cpu(), cpu["E.V"], rtol=1e-9, atol=1e-9)


def test_trainers_ridge_rls_and_bptt_from_python():
    torch.manual_seed(0)
    X = torch.randn(500, 6, dtype=torch.float64)
    W = torch.randn(6, 2, dtype=torch.float64)
    Y = X @ W + 0.5
    w, b = brain.models.ridge(X, Y, alpha=0.0)
    torch.testing.assert_close(w, W)
    torch.testing.assert_close(b, torch.full((2,), 0.5, dtype=torch.float64))
    readout = brain.models.Readout(6, 2)
    rls = brain.models.RLS(readout, alpha=1e-6)
    for k in range(0, 500, 50):
        rls.update(X[k:k + 50], Y[k:k + 50])
    torch.testing.assert_close(readout(X), Y, atol=1e-6, rtol=0)
    readout.fit_ridge(X, Y, 0.0)
    torch.testing.assert_close(readout(X), Y)

    net = brain.models.SpikingNet(n_in=8, n_hidden=32, n_out=2, seed=1)
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 2, (128,), generator=g)
    x = (torch.rand(128, 20, 8, generator=g) < (0.1 + 0.4 * y.float()).view(-1, 1, 1)).float()  # [N, T, n_in]
    stats = brain.models.bptt_fit(net, x, y, lr=0.02, epochs=6, batch_size=32, progress=False)
    assert len(stats) == 6 and stats[-1]["loss"] < stats[0]["loss"] and stats[-1]["accuracy"] > 0.9
    with pytest.raises(RuntimeError, match="optimizer must be"):
        brain.models.bptt_fit(net, x, y, optimizer="nope", progress=False)


def test_every_point_neuron_and_synapse_builds_and_runs():
    m = brain.models
    drive = {"Izhikevich": 10.0, "HH": 10.0, "ExpIF": 30.0, "AdEx": 30.0, "QuaIF": 30.0, "ALIF": 20.0,
             "MorrisLecar": 100.0, "WangBuzsaki": 2.0}
    for name, current in drive.items():
        cls = getattr(m, name)
        assert "method" in cls.defaults()
        net = m.Network()
        net.add("N", cls(4, dtype="float64"))
        net.reset_state()
        out = m.Runner(net, dt=0.02, monitors=["N.spike"], inputs={"N.input": current}, progress=False).run(100.0)
        assert out["N.spike"].any(), name
    with pytest.raises(RuntimeError, match="unknown parameter 'tau_x'"):
        m.AdEx(3, tau_x=1.0)
    # Poisson input through each synapse kind onto an HH population.
    for syn in (m.DualExpon(20, 1.0, 5.0), m.Alpha(20, 2.0), m.Kinetic(20, "AMPA"), m.NMDA(20), m.Expon(20, 5.0)):
        net = m.Network()
        src = net.add("P", m.PoissonGroup(50, 200.0, seed=3))
        post = net.add("H", m.HH(20))
        indptr, indices = m.fixed_prob(50, 20, 0.5, True, 1)
        comm = m.CsrComm(indptr, indices, torch.tensor(0.5), 50, 20)
        net.add("P2H", m.AlignPostProj(src, comm, syn, m.COBA(0.0), post))
        net.reset_state()
        out = m.Runner(net, dt=0.01, monitors=["P.spike", "H.V"], progress=False).run(20.0)
        assert out["P.spike"].any() and out["H.V"].max() > -60, type(syn).__name__


def test_channel_neurons_equal_the_hh_model_and_stdp_changes_weights():
    m = brain.models
    hh = m.Network()
    hh.add("N", m.HH(3, dtype="float64"))
    cond = m.Network()
    group = cond.add("N", m.CondNeuGroup(3))
    for name, ch in (("Na", m.NaChannelHH(3)), ("K", m.KChannelHH(3)), ("L", m.LeakChannel(3))):
        group.add_channel(name, ch)
    results = []
    for net in (hh, cond):
        net.reset_state()
        results.append(m.Runner(net, dt=0.01, monitors=["N.V", "N.spike"], inputs={"N.input": 10.0},
                                progress=False).run(30.0))
    # The same equations, integrated differently (HH: exponential Euler on all four variables;
    # the channel group: per-channel updates): the same spikes, within a fraction of a ms.
    times = [r["N.spike"][:, 0].nonzero().flatten() for r in results]
    assert len(times[0]) == len(times[1]) >= 2
    assert (times[0] - times[1]).abs().max() <= 20  # steps of 0.01 ms
    torch.testing.assert_close(results[1]["N.V"][:100], results[0]["N.V"][:100], atol=0.1, rtol=0)

    net = m.Network()
    pre = net.add("P", m.PoissonGroup(30, 50.0, seed=1))
    post = net.add("N", m.LIF(10))
    indptr, indices = m.fixed_prob(30, 10, 0.5, True, 2)
    weights = torch.full((indices.numel(),), 0.5)
    proj = net.add("P2N", m.AlignPostProj(pre, m.CsrComm(indptr, indices, weights, 30, 10), m.Expon(10, 5.0),
                                          m.CUBA(), post))
    proj.add_stdp(A_plus=0.05, A_minus=0.05)
    net.reset_state()
    before = dict(net.named_parameters())
    key = next(k for k in before if k.endswith("weights"))
    w0 = before[key].detach().clone()
    m.Runner(net, dt=0.1, inputs={"N.input": 15.0}, progress=False).run(200.0)
    assert not torch.equal(dict(net.named_parameters())[key].detach(), w0)


def test_rate_models_and_reservoir_from_python():
    m = brain.models
    net = m.Network()
    osc = net.add("SL", m.StuartLandau(2, a=0.25, w=1.0))
    assert osc.variables() == ["x", "y"]
    net.reset_state()
    out = m.Runner(net, dt=0.01, monitors=["SL.x", "SL.y"], progress=False).run(100.0)
    radius = (out["SL.x"][-2000:] ** 2 + out["SL.y"][-2000:] ** 2).sqrt()
    torch.testing.assert_close(radius, torch.full_like(radius, 0.5), atol=1e-3, rtol=0)  # sqrt(a)
    with pytest.raises(RuntimeError, match="unknown parameter"):
        m.FHN(1, c=1.0)
    esn = m.Reservoir(n_in=1, size=50, spectral_radius=0.9, seed=1)
    esn.reset_state()
    states = esn.run(torch.randn(30, 1, dtype=torch.float64))
    assert states.shape == (30, 50)
    eig = torch.linalg.eigvals(esn.recurrent_matrix()).abs().max()
    assert abs(eig.item() - 0.9) < 1e-9


def test_spike_time_group_takes_tensors_and_plays_long_schedules_by_step():
    """SpikeTimeGroup from 1-D tensors equals it from lists (the schedule is indexed by step in
    C++, tested against a scan of it in test_system.cpp), and refuses non-integer indices."""
    m = brain.models
    g = torch.Generator().manual_seed(5)
    indices = torch.randint(0, 30, (5000,), generator=g)
    times = torch.rand(5000, generator=g, dtype=torch.float64) * 100.0
    runs = []
    for group in (m.SpikeTimeGroup(30, indices, times), m.SpikeTimeGroup(30, indices.tolist(), times.tolist())):
        net = m.Network()
        net.add("S", group)
        net.reset_state()
        runs.append(m.Runner(net, dt=0.1, monitors=["S.spike"], progress=False).run(101.0)["S.spike"])
    assert torch.equal(runs[0], runs[1])
    steps = (times / 0.1).round().long()
    want = torch.zeros_like(runs[0], dtype=torch.bool)
    want[steps, indices] = True
    assert torch.equal(runs[0].bool(), want)
    with pytest.raises(RuntimeError, match="indices must be integers"):
        m.SpikeTimeGroup(30, indices.double(), times)
    with pytest.raises(RuntimeError, match="must be 1-D"):
        m.SpikeTimeGroup(30, indices.view(50, 100), times.view(50, 100))
