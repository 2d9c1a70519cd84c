"""libbrain's C++ models from Python, as ordinary torch.nn.Modules.

    import brain, torch
    net = brain.models.ei_network("coba", seed=42)               # 3200 E + 800 I LIF neurons
    runner = brain.models.Runner(net, monitors=["E.spike", ("E.V", [0, 1, 2])],
                                 inputs={"E.input": 20.0, "I.input": 20.0}, progress=True)
    result = runner.run(1000.0)        # {"E.spike": tensor [10000, 3200], "E.V": ..., "t": {...}}

    snn = brain.models.SpikingNet(n_in=10, n_hidden=64, n_out=2)
    opt = torch.optim.Adam(snn.parameters(), lr=1e-2)
    out = snn(x)                       # [T, B, n_in] -> [T, B, n_out], surrogate gradients

The modules are the C++ objects (torch.nn.cpp.ModuleWrapper): their parameters and state
buffers are the C++ tensors, so torch.optim updates the model the C++ code runs, and
`.to(device)`, `.train()`, `.eval()`, `state_dict()` work as for any module (the state_dict holds
parameters and connectivity, not where a run has got to: see CppModule).
"""

import os

import torch
from torch.nn.cpp import ModuleWrapper, OrderedDictWrapper

from . import _loader

_C = _loader.load_extension()

NonFiniteError = _C.NonFiniteError
CheckpointError = _C.CheckpointError

__all__ = ["CheckpointError", "NonFiniteError", "DynamicalSystem", "Network", "ei_network", "Runner", "SpikingNet",
           "Readout", "RLS", "LMS", "ridge", "bptt_fit", "backward_recomputing", "evidence_accumulation", "LIF", "Expon", "COBA", "CUBA",
           "MgBlock", "CsrComm", "JitComm", "AlignPostProj", "AlignPreProj", "fixed_prob", "ExpIF", "AdEx", "QuaIF",
           "Izhikevich", "HH", "ALIF", "MorrisLecar", "WangBuzsaki", "DualExpon", "Alpha", "Kinetic", "NMDA",
           "PoissonGroup", "SpikeTimeGroup", "CondNeuGroup", "NaChannelHH", "KChannelHH", "LeakChannel",
           "FHN", "WilsonCowan", "QIFMeanField", "StuartLandau", "ThresholdLinear", "Reservoir", "CANN1D",
           "NaChannelTM", "KChannelTM", "CaTChannel", "HChannel", "CalciumPool", "KCaChannel", "GIF", "BioNMDA",
           "DenseComm", "OneToOne", "AllToAll", "GroupComm", "coba_hh_network",
           "decision_network", "cann_network", "esn_lorenz"]

# The building blocks are the C++ classes themselves; compose them in a Network.
#   LIF(n, V_rest=-60, V_reset=-60, V_th=-50, tau=20, R=1, tau_ref=0, method="exp_euler",
#       dtype="float32", device="cpu")              .set_V_init(tensor)  .size()
#   Expon(n, tau, method="exp_euler", dtype="float32", device="cpu")
#   COBA(E), CUBA(), MgBlock(E=0, cc_Mg=1.2, alpha=0.062, beta=3.57)
#   CsrComm(indptr, indices, weights, n_pre, n_post, event=True)   (rows presynaptic)
#   JitComm(n_pre, n_post, prob, seed, weight, dist="homo", event=True)
#   AlignPostProj(pre, comm, syn, out, post, delay_steps=0)
#   AlignPreProj(pre, syn, comm, out, post, delay_steps=0); .set_synapse_delays(delay_steps) with a
#       CsrComm: each synapse carries g of its presynaptic neuron from its own number of steps ago
#       (before reset_state(); any synapse, e.g. NMDA), .has_synapse_delays(), .synapse_delay_groups()
#   fixed_prob(n_pre, n_post, prob, include_self, seed, device="cpu") -> (indptr, indices)
#       (int32, built on `device`; the pattern of the JIT matrix of the seed: brain.ops.jitc_pattern)
#   ExpIF, AdEx, QuaIF, GIF, Izhikevich, HH, ALIF, MorrisLecar, WangBuzsaki:
#       Cls(n, dtype="float32", device="cpu", method=None, **parameters); Cls.defaults()
#   DualExpon(n, tau_rise, tau_decay), Alpha(n, tau), Kinetic(n, kind="AMPA"|"GABAa", ...),
#   NMDA(n, tau_decay=100, tau_rise=2, a=0.5),
#   BioNMDA(n, alpha1=2, beta1=0.01, alpha2=0.2, beta2=0.5, T=1, T_dur=0.5)  (second-order kinetics)
#   PoissonGroup(n, rate_hz or rates_hz, seed), SpikeTimeGroup(n, indices, times_ms) (lists or 1-D tensors;
#       a step costs its own spikes, however long the schedule)
LIF, Expon, COBA, CUBA, MgBlock = _C.LIF, _C.Expon, _C.COBA, _C.CUBA, _C.MgBlock
ExpIF, AdEx, QuaIF, GIF, Izhikevich, HH, ALIF, MorrisLecar, WangBuzsaki = (
    _C.ExpIF, _C.AdEx, _C.QuaIF, _C.GIF, _C.Izhikevich, _C.HH, _C.ALIF, _C.MorrisLecar, _C.WangBuzsaki)
DualExpon, Alpha, Kinetic, NMDA, BioNMDA, PoissonGroup, SpikeTimeGroup = (
    _C.DualExpon, _C.Alpha, _C.Kinetic, _C.NMDA, _C.BioNMDA, _C.PoissonGroup, _C.SpikeTimeGroup)
#   CondNeuGroup(n, C=1, V_th=20, V_init=-65).add_channel(name, NaChannelHH(n) | KChannelHH(n) |
#       LeakChannel(n))  (g, E keyword arguments; float64 by default)
#   AlignPostProj(...).add_stp(U, tau_f, tau_d, facilitation), .add_stdp(tau_plus, tau_minus,
#       A_plus, A_minus, w_min, w_max)  (STDP needs a DenseComm, or a CsrComm with one weight per synapse)
#   AlignPostProj(pre, CsrComm(...), syn, out, post).set_synapse_delays(delay_steps): one delay per
#       synapse (integer tensor [nnz], steps, the CSR's order) instead of delay_steps; before
#       reset_state(); STP and STDP act on each synapse's arrivals (before or after the delays are
#       set: see set_synapse_delays in brain/models/synapses.h). .synapse_delay_groups(): the distinct delays when
#       delivered by delay group, None when by synapse (brain/dyn/delay.h, HeteroDelayCsr)
CondNeuGroup, NaChannelHH, KChannelHH, LeakChannel = _C.CondNeuGroup, _C.NaChannelHH, _C.KChannelHH, _C.LeakChannel
#   NaChannelTM(n, g=100, E=50, V_T=-63, V_rest=None), KChannelTM(n, g=30, E=-90, V_T=-63, V_rest=None):
#       Traub-Miles channels (COBA-HH); gates start at 0, or at their steady state at V_rest
NaChannelTM, KChannelTM = _C.NaChannelTM, _C.KChannelTM
#   CaTChannel(n, g=2, E=120, V_sh=-3, T=36, V_init=-65): T-type calcium (Huguenard & McCormick 1992)
#   HChannel(n, g=0.04, E=-43, phi=1, V_init=-65): hyperpolarization-activated I_h
#   CalciumPool(n, depth=1, tau=5, Ca_rest=2.4e-4).add_influx(ca_channel): [Ca] in mM, state "Ca"
#   KCaChannel(n, pool, g=10, E=-95, alpha=48, beta=0.09, hill=2, phi=1): calcium-activated K (AHP)
#   Add the pool after its calcium channels and before the KCa channels (see channels.h).
CaTChannel, HChannel, CalciumPool, KCaChannel = _C.CaTChannel, _C.HChannel, _C.CalciumPool, _C.KCaChannel
#   Rate models FHN, WilsonCowan, QIFMeanField, StuartLandau, ThresholdLinear:
#       Cls(n, dtype="float64", device="cpu", method=None, **parameters); states are the
#       variables (e.g. "v", "w"), inputs "input_<variable>"
#   Reservoir(n_in, size, spectral_radius, leak, input_scale, bias_scale, density,
#       connectivity="dense"|"jit", seed).run(inputs [T, n_in]) -> states [T, size]; states
#       "x" and "input" (set_input(u), or a Runner input on "<name>.input")
#   CANN1D(n, tau=1, k=8.1, a=0.5, A=10, J0=4, z_min=-pi, z_max=pi): a ring attractor; variable "u",
#       input "input_u"; .stimulus(positions) -> [..., n], .decode(u) -> bump position, .features()
FHN, WilsonCowan, QIFMeanField, StuartLandau, ThresholdLinear, Reservoir, CANN1D = (
    _C.FHN, _C.WilsonCowan, _C.QIFMeanField, _C.StuartLandau, _C.ThresholdLinear, _C.Reservoir, _C.CANN1D)
#   DenseComm(weights [n_pre, n_post]), OneToOne(n, weight), AllToAll(n_pre, n_post, weight, include_self=True),
#   GroupComm(pre_groups, post_groups, weights [G_pre, G_post]): all-to-all between labelled groups
DenseComm, OneToOne, AllToAll, GroupComm = _C.DenseComm, _C.OneToOne, _C.AllToAll, _C.GroupComm
CsrComm, JitComm, AlignPostProj, AlignPreProj, fixed_prob = (_C.CsrComm, _C.JitComm, _C.AlignPostProj,
                                                             _C.AlignPreProj, _C.fixed_prob)


def _cpp(module):
    return module.cpp_module if isinstance(module, ModuleWrapper) else module


class _WrappedChildren:
    """A C++ module's children as torch.nn.Modules (CppModule), for the torch.nn.Module code
    that recurses through `_modules` (state_dict, load_state_dict): torch's ModuleWrapper
    hands over the bare C++ children, which have none of torch.nn.Module's methods. Each
    child keeps one wrapper while it is the same C++ object (hooks stay registered)."""

    def __init__(self, cpp_module, replacements=None, prefix=""):
        self.cpp_module = cpp_module
        self.wrappers = {}
        self.replacements, self.prefix = replacements, prefix

    def _wrap(self, name, child):
        if child is None:
            return None
        wrapper = self.wrappers.get(name)
        if wrapper is None or wrapper.cpp_module is not child:
            wrapper = self.wrappers[name] = CppModule(child, _replacements=self.replacements,
                                                      _prefix=f"{self.prefix}{name}.")
        return wrapper

    def items(self):
        return [(name, self._wrap(name, child)) for name, child in self.cpp_module._modules.items()]

    def keys(self):
        return self.cpp_module._modules.keys()

    def values(self):
        return [child for _, child in self.items()]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.cpp_module._modules)

    def __contains__(self, name):
        return name in self.cpp_module._modules

    def __getitem__(self, name):
        return self._wrap(name, self.cpp_module._modules[name])


class _StateNames:
    """The module's own state buffers (brain::DynamicalSystem states: membranes, conductances,
    spikes...) as torch's set of non-persistent buffers: state_dict() keeps the model
    (parameters, connectivity) and leaves out where a run has got to, as torch leaves out an
    RNN's hidden state. A run's states are saved by Runner.save_checkpoint."""

    def __init__(self, cpp_module):
        self.cpp_module = cpp_module

    def _names(self):
        return set(_C.own_state_names(self.cpp_module))

    def __contains__(self, name):
        return name in self._names()

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())

    def add(self, name):
        raise TypeError("brain modules register their buffers in C++")

    discard = add


class _CppTensors(OrderedDictWrapper):
    """A C++ module's parameters or buffers as torch.nn.Module sees them. The module computes
    with its own C++ tensors, so putting another tensor in their place from Python (what
    torch.func.functional_call and torch.nn.utils.stateless do, or assigning a Parameter)
    would silently change nothing: it is refused, saying what works instead. A module that
    can compute with given parameters (SpikingNet) passes `replacements`, a dict shared by its
    submodules' wrappers: functional_call's swaps then land there, keyed by the parameter's
    full name, the module reads them for the call, and swapping the module's own tensor back
    removes them. Its connectivity buffers can only be "swapped" for themselves; its run-state
    buffers are reset by every call, so a state given for one is ignored."""

    def __init__(self, cpp_module, attr, replacements=None, prefix=""):
        super().__init__(cpp_module, attr)
        self.replacements, self.prefix = replacements, prefix

    def __getitem__(self, name):
        if self.replacements is not None and self.prefix + name in self.replacements:
            return self.replacements[self.prefix + name]
        return super().__getitem__(name)

    def __setitem__(self, name, value):
        if self.replacements is not None and name in self.cpp_dict:
            own = self.cpp_dict[name]
            if value is own:
                self.replacements.pop(self.prefix + name, None)
                return
            if self.attr == "_buffers" and name in _C.own_state_names(self.cpp_module):
                return  # run state (a membrane, spikes): every call starts from rest, given or not
            if self.attr == "_parameters" and isinstance(value, torch.Tensor):
                if value.shape != own.shape:
                    raise ValueError(f"'{self.prefix}{name}': a tensor in place of a parameter must have its "
                                     f"shape {tuple(own.shape)}, got {tuple(value.shape)}")
                self.replacements[self.prefix + name] = value
                return
            raise TypeError(f"'{self.prefix}{name}': the connectivity (buffers) of a brain module cannot be "
                            "replaced for a call; pass only parameters to torch.func.functional_call")
        raise TypeError(
            f"'{name}': a brain module's tensors cannot be set or replaced from Python (torch.func.functional_call, "
            "torch.nn.utils.stateless, register_parameter/register_buffer, assigning a Parameter): the module "
            "computes with its C++ tensors. Change their values in place (with torch.no_grad(): p.copy_(v)) or "
            "with load_state_dict, or differentiate with respect to the parameters by torch.autograd.grad; "
            "torch.func transforms apply to the torch.ops.brain operators called on your own tensors, and to "
            "SpikingNet's parameters through torch.func.functional_call")

    def __delitem__(self, name):
        raise TypeError(f"'{self.prefix}{name}': a brain module's tensors cannot be removed")


class CppModule(ModuleWrapper):
    """A C++ module as a torch.nn.Module whose to()/cuda()/cpu()/float()/double()/half() go
    through the C++ Module::to (so states allocated later follow the move) and return self,
    as torch.nn.Module's do: `net = SpikingNet(...).to("cuda")`. state_dict() and
    load_state_dict() hold the parameters and the buffers that are not states (connectivity):
    `torch.save(snn.state_dict(), path)`, then `snn.load_state_dict(torch.load(path))` on a
    model built with the same arguments. SpikingNet and Readout can be pickled and deep-copied
    (they are rebuilt from their arguments); the C++ modules cannot be cloned, so for the
    others (networks, whose copy would also need where a run has got to: Runner's checkpoints)
    build another and load the state_dict. torch.func.functional_call runs a SpikingNet with
    given parameters; the other modules refuse it (they compute with their C++ tensors)."""

    _MOVES = ("to", "cuda", "cpu", "float", "double", "half")

    def __init__(self, cpp_module, _replacements=None, _prefix=""):
        super().__init__(cpp_module)
        # ModuleWrapper copies the C++ methods onto the instance; these must be the class's.
        for name in self._MOVES:
            self.__dict__.pop(name, None)
        self.__dict__["_modules"] = _WrappedChildren(cpp_module, _replacements, _prefix)
        self.__dict__["_non_persistent_buffers_set"] = _StateNames(cpp_module)
        self.__dict__["_parameters"] = _CppTensors(cpp_module, "_parameters", _replacements, _prefix)
        self.__dict__["_buffers"] = _CppTensors(cpp_module, "_buffers", _replacements, _prefix)
        for name in ("named_parameters", "named_buffers"):
            self.__dict__.pop(name, None)

    # torch.nn.Module's signatures (torch.func.functional_call passes remove_duplicate), with the
    # C++ module's own order and result.
    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        named = self.cpp_module.named_parameters(recurse)
        return named if not prefix else [(f"{prefix}.{name}", t) for name, t in named.items()]

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        named = self.cpp_module.named_buffers(recurse)
        return named if not prefix else [(f"{prefix}.{name}", t) for name, t in named.items()]

    def __reduce_ex__(self, protocol):
        raise TypeError(f"{type(self).__name__} wraps a C++ module ({self.cpp_module!r}), which cannot be pickled "
                        "or copied: build another with the same arguments and load_state_dict(this.state_dict())")

    def to(self, *args, **kwargs):
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device is not None and dtype is not None:
            self.cpp_module.to(device, dtype, non_blocking)
        elif device is not None:
            self.cpp_module.to(device, non_blocking)
        elif dtype is not None:
            self.cpp_module.to(dtype, non_blocking)
        return self

    def cuda(self, device=None):
        return self.to(torch.device("cuda", device) if isinstance(device, int) else (device or "cuda"))

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(torch.float32)

    def double(self):
        return self.to(torch.float64)

    def half(self):
        return self.to(torch.float16)


class DynamicalSystem(CppModule):
    """A libbrain dynamical system (network, population...) as a torch.nn.Module."""

    def state(self, path):
        """The state tensor at `path` (e.g. "E.V", "E.spike")."""
        return self.cpp_module.find_state(path)

    def reset_state(self, batch_size=0):
        self.cpp_module.reset_state(batch_size)


class Network(DynamicalSystem):
    """A group of systems updated in the order they are added (brain::DynSysGroup)::

        net = Network()
        E = net.add("E", LIF(3200, tau_ref=5.0))
        net.add("E2E", AlignPostProj(E, CsrComm(*fixed_prob(3200, 3200, 0.02, False, 1), torch.tensor(0.6),
                                                3200, 3200), Expon(3200, 5.0), COBA(0.0), E))
        net.reset_state()
    """

    def __init__(self, name="Network"):
        super().__init__(_C.DynSysGroup(name))

    def add(self, name, child):
        """Adds `child` (a building block or another Network) under `name`; returns it."""
        self.cpp_module.add(name, _cpp(child))
        return child


_EI_FIELDS = ("n_exc", "n_inh", "p", "w_exc", "w_inh", "tau_exc", "tau_inh", "E_exc", "E_inh", "delay_ms",
              "delay_per_synapse", "delay_ms_low", "delay_ms_high",
              "V_init", "V_init_a", "V_init_b", "input_current", "dtype", "event", "connectivity", "method")


def ei_network(output="coba", seed=42, device="cpu", dt=0.1, **spec):
    """The Vogels-Abbott E/I network ("coba" or "cuba"), as `brain run` builds it.

    Keyword arguments set the fields of brain::EINetSpec (n_exc, n_inh, p, w_exc, w_inh,
    tau_exc, tau_inh, E_exc, E_inh, delay_ms, V_init, V_init_a, V_init_b, input_current,
    dtype, event, connectivity ("csr" or "jit"), method; delay_per_synapse=True with
    delay_ms_low and delay_ms_high: every synapse's delay drawn uniformly in that range, as the
    JSON "delay_ms": {"dist": "uniform", "low": ..., "high": ...}). The populations are "E" and "I";
    the constant drive `input_current` is applied by the Runner's inputs (see Runner).
    """
    s = _C.EINetSpec()
    s.output = output
    for key, value in spec.items():
        if key not in _EI_FIELDS:
            raise TypeError(f"ei_network: unknown field '{key}'; expected one of {', '.join(_EI_FIELDS)}")
        setattr(s, key, value)
    net = DynamicalSystem(_C.build_ei_network(s, int(seed), str(torch.device(device)), float(dt)))
    net.reset_state()
    net.spec = s
    return net


def _spec(spec_cls, name, fields):
    s = spec_cls()
    for key, value in fields.items():
        if not hasattr(s, key) or key.startswith("_"):
            known = ", ".join(k for k in dir(s) if not k.startswith("_"))
            raise TypeError(f"{name}: unknown field '{key}'; expected one of {known}")
        setattr(s, key, value)
    return s


def coba_hh_network(seed=42, device="cpu", dt=0.1, **spec):
    """The COBA-HH network (Brette et al. 2007 benchmark 3): 3200 + 800 Hodgkin-Huxley neurons
    with Traub-Miles channels, p = 0.02, exponential conductance synapses, self-sustained from
    random initial potentials and conductances. Keyword arguments set brain::CobaHHSpec's
    fields (n_exc, n_inh, p, w_exc, w_inh, ..., connectivity "csr" or "jit", dtype).
    Populations "E" and "I"; no external input."""
    s = _spec(_C.CobaHHSpec, "coba_hh_network", spec)
    net = DynamicalSystem(_C.build_coba_hh_network(s, int(seed), str(torch.device(device)), float(dt)))
    net.reset_state()
    net.spec = s
    return net


def decision_network(coherence=25.6, seed=42, device="cpu", dt=0.1, **spec):
    """Wang (2002)'s decision-making network (brain::DecisionNetSpec). `coherence` (percent) is a
    number or a list: one trial per value, simulated together as a batch. The state
    "rates.rate" holds the pools' rates [trials, 4] (A, B, non-selective, I) at every step;
    pool A is favoured for coherence > 0. Keyword arguments set the spec's other fields
    (scale, f, w_plus, mu0, stim_sigma, stim_interval, stim_on, stim_off, background_hz, ...)."""
    trials = [float(c) for c in coherence] if isinstance(coherence, (list, tuple)) else [float(coherence)]
    s = _spec(_C.DecisionNetSpec, "decision_network", dict(spec, coherence=trials))
    net = DynamicalSystem(_C.build_decision_network(s, int(seed), str(torch.device(device)), float(dt)))
    net.reset_state(len(trials) if isinstance(coherence, (list, tuple)) else 0)
    net.spec = s
    return net


def cann_network(seed=42, device="cpu", **spec):
    """A ring attractor (CANN1D) under a stimulus protocol (brain::CannSpec): an input bump at
    z0 + speed (t - stim_on) between stim_on and stim_off ms. Children "stimulus" (states
    "position" and "active"), "cann" (state "u") and "bump" (states "position", "error", "height": the
    decoded bump, its distance to the stimulus and its peak rate). Keyword arguments set the
    spec's fields (size, tau, k, a, A, J0, z0, speed, stim_on, stim_off, init_noise, method,
    dtype)."""
    s = _spec(_C.CannSpec, "cann_network", spec)
    net = DynamicalSystem(_C.build_cann_network(s, int(seed), str(torch.device(device))))
    net.reset_state()
    net.spec = s
    return net


def esn_lorenz(seed=7, device="cpu", record_units=0, **spec):
    """The echo-state network's Lorenz prediction task (brain::EsnSpec, models/esn.json): a
    reservoir driven by the normalised Lorenz state, a ridge readout predicting it `horizon`
    samples ahead. Returns a dict with target and prediction [test_steps, 3], states [samples,
    record_units], train_nrmse, test_nrmse, persistence_nrmse (predicting no change) and
    timings. Keyword arguments set the spec's fields (size, spectral_radius, leak,
    input_scale, density, connectivity, washout, train_steps, test_steps, horizon, ...)."""
    s = _spec(_C.EsnSpec, "esn_lorenz", spec)
    return _C.run_esn_lorenz(s, int(seed), str(torch.device(device)), int(record_units))


def _monitor(m):
    if isinstance(m, str):
        return _C.Monitor(m, dtype=torch.bool if m.endswith(".spike") else None)
    if isinstance(m, tuple):
        path, indices = m[0], m[1]
        return _C.Monitor(path, torch.as_tensor(indices, dtype=torch.long) if indices is not None else None,
                          *m[2:])
    if isinstance(m, dict):
        d = dict(m)
        if d.get("indices") is not None:
            d["indices"] = torch.as_tensor(d["indices"], dtype=torch.long)
        return _C.Monitor(**d)
    raise TypeError(f"a monitor is a state path, (path, indices[, every]) or a dict, got {m!r}")


class Runner:
    """Simulates a system with monitors, inputs and a progress bar (the C++ brain::Runner).

    monitors: state paths ("E.spike" is recorded as bool), (path, indices[, every]) tuples or
    dicts with path/indices/every/name/dtype. inputs: {path: value} added to the state every
    step, or a list of dicts with path, value, per_step (value [T, ...] gives one row per step,
    counted from the runner's first run; after the last row, the last row holds) and add
    (False: set the state). progress: None (when stderr is a terminal), True or False.
    engine: "auto" (the fast fused engine when the network allows it and no gradient is being
    recorded, else the module engine), "fast" or "modules"; both give the same results, bit
    for bit (with per-synapse delays: to rounding, summed in another order)
    (`fast_engine_reason()` says why a network cannot run fast). Each run also returns
    "spike_counts", the spikes of every neuron population, monitored or not.

    graphs: "auto" records the module engine's steps in CUDA graphs and replays them when the
    system is on a GPU and every system in it is replayable (no gradient recorded); "off" never;
    "emulate" takes the same replay path on any device, re-running each replay with the host
    clock shifted (how replayability is tested without a GPU). graph_steps: steps per graph (0:
    the least multiple of every monitor's period that is >= 16). Each run returns "graphs"
    ("cuda", "emulated", or why steps were not replayed) and "replayed_steps".

    Reliability: with `checkpoint` (a path) and `checkpoint_every` (steps), the run in progress
    is written atomically every so many steps; `resume(path)` finishes a run that was killed,
    with monitors identical to a run that never stopped. `identity` (e.g. a hash of how the
    system was built) must match for a checkpoint to load. `save_checkpoint`/`load_checkpoint`
    save and restore the state between runs. With `check_finite` (default), a state that becomes
    NaN or Inf raises NonFiniteError naming it and the step; bad checkpoints raise
    CheckpointError.
    """

    def __init__(self, system, dt=0.1, monitors=(), inputs=None, progress=None, chunk_steps=1000, device=None,
                 engine="auto", checkpoint=None, checkpoint_every=0, identity="", check_finite=True,
                 graphs="auto", graph_steps=0):
        self.system = system
        cpp = _cpp(system)
        o = _C.RunnerOptions()
        o.dt = float(dt)
        o.monitors = [_monitor(m) for m in monitors]
        run_inputs = []
        if isinstance(inputs, dict):
            inputs = [{"path": k, "value": v} for k, v in inputs.items()]
        for i in inputs or []:
            # Floating values keep their dtype (the runner converts them to the state's): a
            # float64 network's float64 drive is not rounded to float32 on the way.
            value = torch.as_tensor(i["value"])
            if not value.is_floating_point():
                value = value.to(torch.float32)
            run_inputs.append(_C.RunInput(i["path"], value, bool(i.get("per_step", False)), bool(i.get("add", True))))
        o.inputs = run_inputs
        o.progress = -1 if progress is None else int(bool(progress))
        o.chunk_steps = int(chunk_steps)
        o.engine = str(engine)
        o.graphs = str(graphs)
        o.graph_steps = int(graph_steps)
        if checkpoint_every and not checkpoint:
            raise ValueError("checkpoint_every needs checkpoint=PATH")
        o.checkpoint_path = str(checkpoint) if checkpoint else ""
        o.checkpoint_every = int(checkpoint_every) if checkpoint else 0
        if checkpoint and o.checkpoint_every <= 0:
            raise ValueError(f"checkpoint_every must be a positive number of steps, got {checkpoint_every!r}")
        o.identity = str(identity)
        o.check_finite = bool(check_finite)
        if device is not None:
            o.set_device(str(torch.device(device)))
        self._options = o
        self._impl = _C.Runner(cpp, o)

    def fast_engine_reason(self):
        """Why the fast engine cannot run this system with these monitors and inputs ("" if it can)."""
        return _C.fast_engine_unsupported(_cpp(self.system), self._options)

    def _result(self, r):
        out = {key: r.values[key] for key in r.order}
        out["t"] = {key: r.times[key] for key in r.order}
        out["steps"], out["dt"], out["wall_seconds"] = r.steps, r.dt, r.wall_seconds
        out["engine"], out["spike_counts"] = r.engine, dict(r.spike_counts)
        out["graphs"], out["replayed_steps"] = r.graphs, r.replayed_steps
        self.last = r
        return out

    def run(self, duration_ms):
        """Runs for `duration_ms`; returns each monitor's recording [samples, ...] and their times."""
        return self._result(self._impl.run(float(duration_ms)))

    def run_steps(self, steps):
        return self._result(self._impl.run_steps(int(steps)))

    def resume(self, path):
        """Finishes the run saved in checkpoint `path`; returns the whole run's recordings."""
        return self._result(self._impl.resume(str(path)))

    def save_checkpoint(self, path):
        """Saves the system's state, its generators and the clock (between runs), atomically."""
        self._impl.save_checkpoint(str(path))

    def load_checkpoint(self, path):
        """Restores what save_checkpoint saved into this (identically built) system."""
        self._impl.load_checkpoint(str(path))

    def save(self, directory):
        """Writes the last run's monitors.npz (numpy.load reads it) and summary.json."""
        self.last.save(str(directory))


class SpikingNet(CppModule):
    """Recurrent spiking network for BPTT (brain::train::SpikingNet): inputs [T, B, n_in] ->
    Linear -> LIF layer (surrogate-gradient spikes, optional recurrence) -> Linear readout of
    the spikes at every step, [T, B, n_out]. Every call starts from the rest state (a new
    sequence).

    recurrence: "dense" (Linear), "csr" (event CSR over a fixed-probability structure with
    recurrent_prob, one trainable weight per synapse) or "jit" (event JIT connectivity, never
    stored; trainable mean and std of the normal weights); recurrent_delay: steps from a spike
    to its recurrent input. fused: the LIF layer runs as brain::lif_sequence (one saved tensor
    per step for the backward), and with recurrence the whole window as one op and one autograd
    node (brain::lif_dense_recurrent_sequence, brain::lif_recurrent_sequence,
    brain::lif_jit_recurrent_sequence), instead of op by op; the spikes are the same.

    torch.func.functional_call(net, params, (inputs,)) runs it with the given parameters
    (named as named_parameters() names them), so torch.func's transforms reach them:
    vmap(grad(...)) gives per-sample gradients of the parameters."""

    def __init__(self, n_in, n_hidden, n_out, recurrent=False, dt=1.0, tau=10.0, V_th=1.0, seed=0,
                 recurrence="dense", recurrent_prob=0.1, recurrent_delay=1, fused=True):
        o = _C.SpikingNetOptions()
        o.n_in, o.n_hidden, o.n_out = int(n_in), int(n_hidden), int(n_out)
        o.recurrent, o.dt, o.tau, o.V_th, o.seed = bool(recurrent), float(dt), float(tau), float(V_th), int(seed)
        o.recurrence, o.recurrent_prob, o.recurrent_delay = str(recurrence), float(recurrent_prob), int(recurrent_delay)
        o.fused = bool(fused)
        # torch.func.functional_call's parameters for the call, by full name (_CppTensors).
        replacements = {}
        super().__init__(_C.SpikingNet(o), _replacements=replacements)
        self.__dict__["_replacements"] = replacements
        # ModuleWrapper copies the C++ methods onto the instance; this class's forward must win.
        self.__dict__.pop("forward", None)
        # What pickling and copy.deepcopy rebuild it from (with its state_dict).
        self._init_args = dict(n_in=n_in, n_hidden=n_hidden, n_out=n_out, recurrent=recurrent, dt=dt, tau=tau,
                               V_th=V_th, seed=seed, recurrence=recurrence, recurrent_prob=recurrent_prob,
                               recurrent_delay=recurrent_delay, fused=fused)

    def __reduce_ex__(self, protocol):
        return _reduce_rebuilt(self)

    def forward(self, inputs):
        if inputs.dim() != 3:
            raise ValueError(f"SpikingNet expects inputs [T, B, n_in], got {tuple(inputs.shape)}")
        self.cpp_module.reset(inputs.shape[1])
        if self._replacements:
            return self.cpp_module.forward_with(inputs, dict(self._replacements))
        return self.cpp_module.forward(inputs)


def _reduce_rebuilt(module):
    """torch.save(module), pickle and copy.deepcopy (a best-model snapshot) of a module built
    from its arguments (module._init_args): the same construction, then this module's
    parameters, device, dtype, mode and frozen parameters."""
    first = next(iter(module.parameters()))
    frozen = [name for name, p in module.named_parameters() if not p.requires_grad]
    return (_rebuild, (type(module), module._init_args, module.state_dict(), first.device, first.dtype,
                       module.training, frozen))


def _rebuild(cls, init_args, state_dict, device, dtype, training, frozen):
    module = cls(**init_args).to(device, dtype)
    module.load_state_dict(state_dict)
    module.train(training)
    for name, p in module.named_parameters():
        p.requires_grad_(name not in frozen)
    return module


def evidence_accumulation(n_samples, seed=0, **options):
    """The evidence-accumulation task (brain::data::evidence_accumulation): left and right cues,
    a delay, then a recall period in which the side with more cues must be reported. Options:
    cues (odd), cue_steps, gap_steps, delay_steps, recall_steps, channels_per_group, cue_rate,
    noise_rate, majority_prob. Returns a dict: inputs [N, T, 4 * channels_per_group] spikes
    (groups: left, right, recall, noise), labels [N] (0 left, 1 right), left_cues [N] and
    recall_start (the first recall step)."""
    o = _C.EvidenceOptions()
    for key, value in options.items():
        if not hasattr(o, key):
            raise TypeError(f"evidence_accumulation: unknown option {key!r}")
        setattr(o, key, value)
    inputs, labels, left_cues, recall_start = _C.evidence_accumulation(int(n_samples), int(seed), o)
    return {"inputs": inputs, "labels": labels, "left_cues": left_cues, "recall_start": recall_start}


def backward_recomputing(model, inputs, loss_fn, chunk):
    """Memory-bounded BPTT for a SpikingNet (brain::train::backward_recomputing): runs inputs
    [T, B, n_in] from the rest state, then back-propagates loss_fn(outputs) re-running chunks
    of `chunk` steps, so memory grows with T / chunk instead of T. The parameters' .grad
    accumulate what loss.backward() would give (up to summation order); use any torch.optim
    optimizer afterwards. Returns (loss, outputs [T, B, n_out]), both without graph."""
    if inputs.dim() != 3:
        raise ValueError(f"backward_recomputing expects inputs [T, B, n_in], got {tuple(inputs.shape)}")
    cpp = _cpp(model)
    cpp.reset(inputs.shape[1])
    return _C.backward_recomputing(cpp, inputs, loss_fn, int(chunk))


# ---- trainers -----------------------------------------------------------------------------------

def ridge(X, Y, alpha=1e-6, fit_bias=True):
    """Ridge regression (brain::train::ridge): returns (weight [F, O], bias [O]) minimising
    |X W + b - Y|^2 + alpha |W|^2 over samples flattened from the leading dimensions."""
    return _C.ridge(X, Y, float(alpha), bool(fit_bias))


class Readout(CppModule):
    """A linear readout y = r W + b (brain::train::Readout), fit offline with fit_ridge(),
    online with RLS (FORCE) or LMS, or by gradient descent (weight and bias are parameters)."""

    def __init__(self, n_features, n_out, dtype="float64", device="cpu"):
        super().__init__(_C.Readout(int(n_features), int(n_out), dtype, str(torch.device(device))))
        self.__dict__.pop("forward", None)
        self._init_args = dict(n_features=n_features, n_out=n_out, dtype=dtype, device=device)

    def __reduce_ex__(self, protocol):
        return _reduce_rebuilt(self)

    def forward(self, r):
        return self.cpp_module.forward(r)


def RLS(readout, alpha=1.0, forgetting=1.0):
    """FORCE learning's recursive least squares on a Readout: .update(r, y) returns the error
    before the update (exact block updates for batches)."""
    return _C.RLS(_cpp(readout), float(alpha), float(forgetting))


def LMS(readout, lr=1e-3):
    """Least-mean-squares updates of a Readout: .update(r, y) returns the error before it."""
    return _C.LMS(_cpp(readout), float(lr))


def bptt_fit(model, inputs, targets, optimizer="adam", lr=1e-3, loss="ce_mean", epochs=10, batch_size=32,
             shuffle=True, seed=0, truncation=0, grad_clip_norm=0.0, progress=True, checkpoint_dir="",
             eval_inputs=None, eval_targets=None, resume_from="", recompute_chunk=0, decision_last_steps=None,
             distributed=None, dist_timeout=60.0):
    """The C++ BPTT loop (brain::train::BPTT) on a SpikingNet: inputs [N, T, n_in] (sample
    first), targets [N] class indices (loss "ce_mean" or "ce_last") or [N, T, n_out] ("mse").
    Returns one dict per epoch (loss, accuracy, eval_loss, eval_accuracy, seconds).
    checkpoint_dir: after every epoch, model_<epoch>.pt, optimizer_<epoch>.pt and training.ckpt
    (the whole training state, checksummed) are written atomically; resume_from=<that
    training.ckpt> continues after its epoch, as if training had never stopped.
    recompute_chunk > 0: memory-bounded BPTT (see backward_recomputing). loss "ce_last_<k>":
    cross entropy of the outputs averaged over the last k steps; decision_last_steps=k makes
    the reported accuracy use the same period (default: the mean over all steps).
    distributed: data-parallel training over the processes torchrun started (the C++
    counterpart of DistributedDataParallel, on Gloo): every process passes the same data, each
    batch is split over them and the gradients are summed, so each step is the whole batch's;
    the returned statistics cover all the data; rank 0 prints and writes checkpoints. None:
    when torchrun started more than one process (WORLD_SIZE > 1). dist_timeout bounds every
    collective in seconds: a process that dies makes the others fail with an error naming it."""
    o = _C.BPTTOptions()
    o.epochs, o.batch_size, o.shuffle, o.seed = int(epochs), int(batch_size), bool(shuffle), int(seed)
    o.truncation, o.grad_clip_norm, o.progress = int(truncation), float(grad_clip_norm), bool(progress)
    o.checkpoint_dir = str(checkpoint_dir)
    o.resume_from = str(resume_from)
    o.recompute_chunk = int(recompute_chunk)
    if decision_last_steps is not None:
        o.decision_last_steps = int(decision_last_steps)
    if distributed is None:
        distributed = int(os.environ.get("WORLD_SIZE", "1") or "1") > 1
    if distributed:
        o.connect_from_env(float(dist_timeout))
    stats = _C.bptt_fit(_cpp(model), optimizer, float(lr), loss, o, inputs, targets, eval_inputs, eval_targets)
    return [{"epoch": s.epoch, "loss": s.loss, "accuracy": s.accuracy, "eval_loss": s.eval_loss,
             "eval_accuracy": s.eval_accuracy, "seconds": s.seconds} for s in stats]

