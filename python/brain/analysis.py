"""Dynamics analysis: phase planes, bifurcations, fast-slow analysis and slow points.

The work is done by libbrain's C++ analysis (exact Jacobians by autograd, batched Newton,
bisection on eigenvalue crossings); this module gives it the Python names and data types.

A model is a function ``f`` that takes the variables, then the parameters, as keyword
arguments (tensors of one shape, evaluated element by element) and returns their time
derivatives in the order of ``variables``::

    def fhn(v, w, I, a=0.7, b=0.8, tau=12.5):
        return v - v**3 / 3 - w + I, (v + a - b * w) / tau

    pp = PhasePlane2D(fhn, variables={"v": (-3, 3), "w": (-1.5, 3)}, params={"I": 0.5})
    pp.fixed_points()   # [{'v': ..., 'w': ..., 'stability': 'unstable focus', 'eigenvalues': [...]}]
    bif = Bifurcation1D(fhn, variables={"v": (-3, 3), "w": (-1.5, 3)}, params={"I": (0, 2)}, resolution=...)
    bif.compute()["events"]  # [{'kind': 'hopf', 'I': 0.331...}, {'kind': 'hopf', 'I': 1.418...}]

Variables held constant ("fixed variables") are passed like parameters, by name in
``params``. ``f`` may also be the name of a built-in model (``builtin_models()`` lists them); its
parameters then default to the model's values. Every object has ``plot(path=None)``.
"""


import torch

from . import _loader

__all__ = [
    "PhasePlane1D", "PhasePlane2D", "Bifurcation1D", "Bifurcation2D", "FastSlow1D", "FastSlow2D",
    "SlowPointFinder", "builtin_models", "classify",
]


_C = _loader.load_extension()


def builtin_models():
    """The built-in models: a list of dicts with name, description, variables (name, lo, hi), params."""
    return [{"name": m["name"], "description": m["description"],
             "variables": {a.name: (a.lo, a.hi) for a in m["variables"]}, "params": dict(m["params"])}
            for m in _C.builtin_models()]


def classify(jacobian, eig_tolerance=1e-4):
    """The stability class of a fixed point with this Jacobian ([D, D])."""
    return _C.classify(torch.as_tensor(jacobian, dtype=torch.float64), eig_tolerance)


# ---- argument handling ------------------------------------------------------------------------

def _resolve_model(f, variables, params):
    """(callable, variables, params) with built-in names resolved and their defaults filled in."""
    if not isinstance(f, str):
        if not callable(f):
            raise TypeError(f"f must be a callable or the name of a built-in model, got {type(f).__name__}")
        if not variables:
            raise ValueError("variables are needed: a dict name -> (lo, hi)")
        return f, dict(variables), dict(params or {})
    models = {m["name"]: m for m in _C.builtin_models()}
    if f not in models:
        raise ValueError(f"unknown built-in model '{f}'; known models: {', '.join(models)}")
    model = models[f]
    defaults = {a.name: (a.lo, a.hi) for a in model["variables"]}
    if variables:
        unknown = set(variables) - set(defaults)
        if unknown:
            raise ValueError(f"model '{f}' has no variable {sorted(unknown)}; its variables are {list(defaults)}")
        defaults.update(variables)
    values = dict(model["params"])
    for name, value in (params or {}).items():
        if name not in values:
            raise ValueError(f"model '{f}' has no parameter '{name}'; its parameters are {list(values)}")
        values[name] = value
    field = model["field"]
    var_names, par_names = [a.name for a in model["variables"]], list(dict(model["params"]))
    order = var_names + par_names

    def builtin(**kwargs):
        return field([kwargs[n] for n in order])
    return builtin, defaults, values


def _axes(variables, resolution, what="variables"):
    axes = []
    for name, rng in variables.items():
        try:
            lo, hi = rng
        except (TypeError, ValueError):
            raise ValueError(f"{what}['{name}'] must be a (lo, hi) pair, got {rng!r}") from None
        n = resolution.get(name, 0) if isinstance(resolution, dict) else (resolution or 0)
        axes.append(_C.Axis(name, float(lo), float(hi), int(n)))
    return axes


def _params(params, resolution=None):
    out = []
    for name, value in params.items():
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ValueError(f"params['{name}'] must be a value or a (lo, hi) range, got {value!r}")
            n = resolution.get(name, 0) if isinstance(resolution, dict) else 0
            out.append(_C.Param.range(name, float(value[0]), float(value[1]), int(n)))
        else:
            out.append(_C.Param.fixed(name, float(value)))
    return out


def _check_resolution_names(resolution, known):
    if isinstance(resolution, dict):
        unknown = set(resolution) - set(known)
        if unknown:
            raise ValueError(f"resolution names unknown variables or parameters {sorted(unknown)}; known: {list(known)}")


def _field(f, names, n_out):
    """Wraps f(**kwargs) into the C++ convention: a list of tensors in, a list of tensors out."""
    def call(args):
        result = f(**dict(zip(names, args)))
        if isinstance(result, torch.Tensor):
            result = [result] if n_out == 1 else list(result.unbind(0)) if result.dim() > 0 and result.shape[0] == n_out else [result]
        elif isinstance(result, (tuple, list)):
            result = list(result)
        else:
            result = [result]
        return [r if isinstance(r, torch.Tensor) else torch.as_tensor(r, dtype=args[0].dtype, device=args[0].device)
                for r in result]
    return call


def _options(device, options):
    o = _C.Options()
    o.set_device(str(torch.device(device)))
    for key, value in options.items():
        if not hasattr(o, key):
            raise TypeError(f"unknown option '{key}'")
        setattr(o, key, value)
    return o


def _point_dict(p, var_names, param_names=()):
    d = {n: v for n, v in zip(var_names, p.x)}
    d.update({n: v for n, v in zip(param_names, p.params)})
    d.update(stability=p.stability, eigenvalues=list(p.eigenvalues), jacobian=p.jacobian, residual=p.residual)
    return d


def _initial(initial, names):
    if isinstance(initial, dict):
        missing = [n for n in names if n not in initial]
        if missing:
            raise ValueError(f"initial values are missing for {missing}")
        cols = [torch.as_tensor(initial[n], dtype=torch.float64).reshape(-1) for n in names]
        return torch.stack(torch.broadcast_tensors(*cols), 1)
    x = torch.as_tensor(initial, dtype=torch.float64)
    return x.reshape(1, -1) if x.dim() == 1 else x


def _trajectory_dict(traj, names):
    out = {"t": traj.t}
    for i, n in enumerate(names):
        out[n] = traj.values[:, :, i]
    return out


def _cycle_dict(c, var_names, param_names=()):
    d = {"found": c.found, "period": c.period, "params": dict(zip(param_names, c.params))}
    for i, n in enumerate(var_names):
        if c.found:
            d[n] = {"min": c.min[i], "max": c.max[i], "amplitude": c.amplitude[i]}
    return d


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("plot() needs matplotlib: python3 -m pip install matplotlib") from e
    return plt


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


_MARKERS = {True: dict(marker="o", color="black", markersize=8, linestyle="none"),
            False: dict(marker="o", markerfacecolor="white", markeredgecolor="black", markersize=8, linestyle="none")}


# ---- phase plane ------------------------------------------------------------------------------

class _PhasePlane:
    _dimension = None

    def __init__(self, f, variables=None, params=None, resolution=None, device="cpu", **options):
        f, variables, params = _resolve_model(f, variables, params)
        if len(variables) != self._dimension:
            raise ValueError(f"{type(self).__name__} needs {self._dimension} variable(s), got {list(variables)}")
        swept = [n for n, v in params.items() if isinstance(v, (tuple, list))]
        if swept:
            raise ValueError(f"{type(self).__name__} holds parameters fixed; {swept} are given ranges")
        _check_resolution_names(resolution, variables)
        self.variables, self.params = variables, params
        self.var_names = list(variables)
        self._trajectories = []
        self._impl = _C.PhasePlane(_field(f, self.var_names + list(params), len(variables)),
                                   _axes(variables, resolution), _params(params), _options(device, options))

    def vector_field(self):
        g = self._impl.vector_field()
        return {"axes": dict(zip(self.var_names, g.axes)), "derivatives": dict(zip(self.var_names, g.derivatives)),
                "skipped": g.skipped}

    def nullclines(self):
        """Per variable, the points [K, D] of its nullcline (empty for 1-D: the fixed points are it)."""
        if self._dimension == 1:
            return {n: torch.empty(0, 1, dtype=torch.float64) for n in self.var_names}
        return dict(zip(self.var_names, self._impl.nullclines()))

    def fixed_points(self):
        return [_point_dict(p, self.var_names) for p in self._impl.fixed_points()]

    def trajectory(self, initial, duration, dt=0.01, method="rk4"):
        """Integrates from `initial` (dict name -> value(s), or [B, D]); returns t and each variable [T, B]."""
        out = _trajectory_dict(self._impl.trajectory(_initial(initial, self.var_names), float(duration), float(dt),
                                                     method), self.var_names)
        self._trajectories.append(out)
        return out

    def limit_cycles(self, initial, duration, dt=0.01, transient=None):
        cycles = self._impl.limit_cycles(_initial(initial, self.var_names), float(duration), float(dt), transient)
        return [_cycle_dict(c, self.var_names) for c in cycles]

    def plot(self, path=None):
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 5))
        field = self.vector_field()
        fps = self.fixed_points()
        if self._dimension == 1:
            (name,) = self.var_names
            x, dx = field["axes"][name], field["derivatives"][name]
            ax.plot(x, dx, color="tab:blue", label=f"d{name}/dt")
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_xlabel(name)
            ax.set_ylabel(f"d{name}/dt")
            for p in fps:
                ax.plot([p[name]], [0], **_MARKERS[p["stability"].startswith("stable")])
        else:
            nx, ny = self.var_names
            X, Y = torch.meshgrid(field["axes"][nx], field["axes"][ny], indexing="ij")
            U, V = field["derivatives"][nx], field["derivatives"][ny]
            ax.streamplot(X.T.numpy(), Y.T.numpy(), U.T.numpy(), V.T.numpy(), color="lightgrey", density=1.2)
            for (name, pts), colour in zip(self.nullclines().items(), ("tab:blue", "tab:red")):
                if len(pts):
                    ax.plot(pts[:, 0], pts[:, 1], ".", ms=1.5, color=colour, label=f"{name} nullcline")
            for traj in self._trajectories:
                ax.plot(traj[nx], traj[ny], color="tab:green", lw=1)
            for p in fps:
                ax.plot([p[nx]], [p[ny]], **_MARKERS[p["stability"].startswith("stable")])
                ax.annotate(p["stability"], (p[nx], p[ny]), textcoords="offset points", xytext=(6, 6), fontsize=8)
            ax.set_xlabel(nx)
            ax.set_ylabel(ny)
            ax.set_xlim(*self.variables[nx])
            ax.set_ylim(*self.variables[ny])
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"{type(self).__name__}: " + ", ".join(f"{k}={v:g}" for k, v in self.params.items()))
        return _finish(fig, path)


class PhasePlane1D(_PhasePlane):
    _dimension = 1


class PhasePlane2D(_PhasePlane):
    _dimension = 2


# ---- bifurcation ------------------------------------------------------------------------------

def _table(result, var_names):
    pts = result.points
    table = {}
    for k, n in enumerate(result.param_names):
        table[n] = torch.tensor([p.params[k] for p in pts], dtype=torch.float64)
    for i, n in enumerate(var_names):
        table[n] = torch.tensor([p.x[i] for p in pts], dtype=torch.float64)
    table["stability"] = [p.stability for p in pts]
    table["stable"] = torch.tensor([p.stability.startswith("stable") for p in pts], dtype=torch.bool)
    table["eigenvalues"] = (torch.tensor([list(p.eigenvalues) for p in pts], dtype=torch.complex128)
                            if pts else torch.empty(0, len(var_names), dtype=torch.complex128))
    events = []
    for e in result.events:
        d = {"kind": e.kind}
        d.update(zip(result.param_names, e.params))
        d.update(zip(var_names, e.x))
        events.append(d)
    table["events"] = events
    table["skipped"] = result.skipped
    return table


class _Bifurcation:
    _swept = None

    def __init__(self, f, variables=None, params=None, resolution=None, device="cpu", **options):
        f, variables, params = _resolve_model(f, variables, params)
        swept = [n for n, v in params.items() if isinstance(v, (tuple, list))]
        if len(swept) != self._swept:
            raise ValueError(f"{type(self).__name__} sweeps {self._swept} parameter(s) (give them (lo, hi)); "
                             f"got ranges for {swept}")
        _check_resolution_names(resolution, list(variables) + list(params))
        self.variables, self.params, self.swept = variables, params, swept
        self.var_names = list(variables)
        self._result = None
        self._cycles = None
        self._impl = _C.Bifurcation(_field(f, self.var_names + list(params), len(variables)),
                                    _axes(variables, resolution), _params(params, resolution),
                                    _options(device, options))

    def compute(self):
        """The branch table: per fixed point its parameter value(s), variables, "stability",
        "stable" and "eigenvalues"; plus "events" (each with "kind" and the parameter values)."""
        self._result = self._impl.compute()
        self.table = _table(self._result, self.var_names)
        self.events = self.table["events"]
        return self.table

    def limit_cycles(self, duration, dt=0.01, transient=None):
        """Limit cycles by simulation where the fixed point is an unstable focus (past Hopf points)."""
        if self._result is None:
            self.compute()
        cycles = self._impl.limit_cycles(self._result, float(duration), float(dt), transient)
        self._cycles = [_cycle_dict(c, self.var_names, self.swept) for c in cycles]
        return self._cycles

    def plot(self, path=None, variable=None):
        if self._result is None:
            self.compute()
        plt = _pyplot()
        t = self.table
        var = variable or self.var_names[0]
        if self._swept == 1:
            (p,) = self.swept
            fig, ax = plt.subplots(figsize=(6, 4.5))
            for stable, style in ((True, dict(color="black", s=4, label="stable")),
                                  (False, dict(color="tab:red", s=4, label="unstable"))):
                mask = t["stable"] == stable
                ax.scatter(t[p][mask], t[var][mask], **style)
            for c in self._cycles or []:
                if c["found"]:
                    ax.scatter([c["params"][p]] * 2, [c[var]["min"], c[var]["max"]], color="tab:blue", s=3)
            for e in self.events:
                ax.axvline(e[p], color="tab:green" if e["kind"] == "hopf" else "tab:purple", lw=0.8, ls="--")
                ax.annotate(e["kind"], (e[p], e[var]), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel(p)
            ax.set_ylabel(var)
            ax.legend(fontsize=8)
        else:
            p1, p2 = self.swept
            fig, ax = plt.subplots(figsize=(6, 5))
            for kind, colour in (("saddle-node", "tab:purple"), ("hopf", "tab:green")):
                ev = [e for e in self.events if e["kind"] == kind]
                if ev:
                    ax.scatter([e[p1] for e in ev], [e[p2] for e in ev], s=6, color=colour, label=kind)
            ax.set_xlabel(p1)
            ax.set_ylabel(p2)
            ax.set_xlim(*self.params[p1])
            ax.set_ylim(*self.params[p2])
            ax.legend(fontsize=8)
        ax.set_title(f"{type(self).__name__}")
        return _finish(fig, path)


class Bifurcation1D(_Bifurcation):
    _swept = 1


class Bifurcation2D(_Bifurcation):
    _swept = 2


# ---- fast-slow --------------------------------------------------------------------------------

class _FastSlow:
    _slow = None

    def __init__(self, f, fast_vars, slow_vars, params=None, resolution=None, device="cpu", **options):
        if not callable(f):
            raise TypeError("f must be a callable taking the fast variables, the slow variables, then the parameters")
        if len(slow_vars) != self._slow:
            raise ValueError(f"{type(self).__name__} needs {self._slow} slow variable(s), got {list(slow_vars)}")
        params = dict(params or {})
        _check_resolution_names(resolution, list(fast_vars) + list(slow_vars))
        self.fast_vars, self.slow_vars, self.params = dict(fast_vars), dict(slow_vars), params
        self.fast_names, self.slow_names = list(fast_vars), list(slow_vars)
        names = self.fast_names + self.slow_names
        self._trajectories = []
        self._impl = _C.FastSlow(_field(f, names + list(params), len(names)), _axes(fast_vars, resolution),
                                 _axes(slow_vars, resolution, "slow_vars"), _params(params),
                                 _options(device, options))

    def compute(self):
        """The fast subsystem's branch table and events, with the slow variables as parameters."""
        self.table = _table(self._impl.compute(), self.fast_names)
        self.events = self.table["events"]
        return self.table

    def trajectory(self, initial, duration, dt=0.01, method="rk4"):
        names = self.fast_names + self.slow_names
        out = _trajectory_dict(self._impl.trajectory(_initial(initial, names), float(duration), float(dt), method),
                               names)
        self._trajectories.append(out)
        return out

    def plot(self, path=None, variable=None):
        if not hasattr(self, "table"):
            self.compute()
        plt = _pyplot()
        t = self.table
        var = variable or self.fast_names[0]
        s = self.slow_names[0]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for stable, colour in ((True, "black"), (False, "tab:red")):
            mask = t["stable"] == stable
            ax.scatter(t[s][mask], t[var][mask], s=4, color=colour, label="stable" if stable else "unstable")
        for traj in self._trajectories:
            ax.plot(traj[s][:, 0], traj[var][:, 0], color="tab:blue", lw=1, label="trajectory")
        for e in self.events:
            ax.plot([e[s]], [e[var]], "x", color="tab:purple" if e["kind"] == "saddle-node" else "tab:green")
        ax.set_xlabel(s)
        ax.set_ylabel(var)
        ax.legend(fontsize=8)
        ax.set_title(type(self).__name__)
        return _finish(fig, path)


class FastSlow1D(_FastSlow):
    _slow = 1


class FastSlow2D(_FastSlow):
    _slow = 2


# ---- slow points ------------------------------------------------------------------------------

class SlowPointFinder:
    """Fixed and slow points of a high-dimensional map or flow.

    f maps states [M, D] to [M, D] row by row: the next state (f_type="discrete") or the time
    derivative (f_type="continuous"). find_fps() minimises q = 1/2 |f(x) - x|^2 (or 1/2 |f(x)|^2)
    from every candidate with a torch optimizer ("adam" default, "adamw", "sgd", "rmsprop",
    "adagrad") or "lbfgs", keeps the points with q < tolerance, merges points closer than
    unique_tolerance, drops outliers, and returns the points with their Jacobians and
    eigen-decompositions.
    """

    def __init__(self, f, f_type="discrete", optimizer="adam", lr=0.01, max_steps=10000, tolerance=1e-12,
                 check_every=100, unique_tolerance=0.025, outlier_threshold=1.0, verbose=False):
        if f_type not in ("discrete", "continuous"):
            raise ValueError(f"f_type must be 'discrete' or 'continuous', got {f_type!r}")
        o = _C.SlowPointOptions()
        o.discrete = f_type == "discrete"
        o.optimizer = optimizer
        o.lr = float(lr)
        o.max_steps = int(max_steps)
        o.tolerance = float(tolerance)
        o.check_every = int(check_every)
        o.unique_tolerance = float(unique_tolerance)
        o.outlier_threshold = float(outlier_threshold)
        o.verbose = bool(verbose)
        self._impl = _C.SlowPointFinder(f, o)

    def find_fps(self, candidates):
        r = self._impl.find(torch.as_tensor(candidates))
        self.result = {
            "points": r.points, "losses": r.losses, "jacobians": r.jacobians, "eigenvalues": r.eigenvalues,
            "right_vectors": r.right_vectors, "left_vectors": r.left_vectors, "all_losses": r.all_losses,
            "steps": r.steps, "kept_after_loss": r.kept_after_loss, "kept_after_unique": r.kept_after_unique,
            "kept_after_outliers": r.kept_after_outliers,
        }
        return self.result

    def loss(self, x):
        return self._impl.loss(x)

    def jacobians(self, x):
        return self._impl.jacobians(x)

    def plot(self, path=None):
        """The eigenvalue spectra of the Jacobians at the points found (unit circle for maps)."""
        if not hasattr(self, "result"):
            raise RuntimeError("call find_fps() first")
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5, 5))
        ev = self.result["eigenvalues"].flatten()
        ax.scatter(ev.real, ev.imag, s=8)
        theta = torch.linspace(0, 2 * torch.pi, 200)
        ax.plot(torch.cos(theta), torch.sin(theta), color="grey", lw=0.8)
        ax.set_xlabel("Re")
        ax.set_ylabel("Im")
        ax.set_title(f"{len(self.result['points'])} slow points: Jacobian eigenvalues")
        return _finish(fig, path)
