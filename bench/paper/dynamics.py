"""The eLife paper's dynamics-analysis figures through brain.analysis: the FitzHugh-Nagumo
phase plane (nullclines, fixed point, trajectories onto the limit cycle), the phase plane of the
reduced Wong & Wang (2006) decision-making model (two choice attractors and the saddle between
them) and its bifurcation diagram against the stimulus strength mu0 (saddle-node points where
the decision states appear and vanish).

    python3 bench/paper/dynamics.py [--quick]
"""

import torch

from brain import analysis as ba
from common import Experiment, parser, pyplot

STABLE = dict(marker="o", color="black", markersize=7, linestyle="none")
UNSTABLE = dict(marker="o", markerfacecolor="white", markeredgecolor="black", markersize=7, linestyle="none")


def fhn(v, w, I, a=0.7, b=0.8, tau=12.5):
    return v - v ** 3 / 3 - w + I, (v + a - b * w) / tau


def draw_plane(ax, pp, trajectories):
    nx, ny = pp.var_names
    field = pp.vector_field()
    X, Y = torch.meshgrid(field["axes"][nx], field["axes"][ny], indexing="ij")
    U, V = field["derivatives"][nx], field["derivatives"][ny]
    ax.streamplot(X.T.numpy(), Y.T.numpy(), U.T.numpy(), V.T.numpy(), color="lightgrey", density=1.0)
    for (name, pts), colour in zip(pp.nullclines().items(), ("tab:blue", "tab:red")):
        if len(pts):
            ax.plot(pts[:, 0], pts[:, 1], ".", ms=1.2, color=colour, label=f"{name} nullcline")
    for tr in trajectories:
        ax.plot(tr[nx], tr[ny], color="tab:green", lw=1)
    fps = pp.fixed_points()
    for p in fps:
        ax.plot([p[nx]], [p[ny]], **(STABLE if p["stability"].startswith("stable") else UNSTABLE))
        ax.annotate(p["stability"], (p[nx], p[ny]), textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set(xlabel=nx, ylabel=ny, xlim=pp.variables[nx], ylim=pp.variables[ny])
    ax.legend(loc="upper right", fontsize=7)
    return fps


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    exp = Experiment("dynamics", args)
    res = 100 if args.quick else 250
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))

    pp = ba.PhasePlane2D(fhn, variables={"v": (-3, 3), "w": (-1.5, 3)}, params={"I": 0.8}, resolution=res)
    trajs = [pp.trajectory(s, duration=200, dt=0.05) for s in ({"v": -2.0, "w": 0.5}, {"v": 1.0, "w": 2.5})]
    fhn_fps = draw_plane(axes[0], pp, trajs)
    (cycle,) = pp.limit_cycles({"v": -2.0, "w": 0.5}, duration=400, dt=0.05)
    axes[0].set_title("FitzHugh-Nagumo, I = 0.8: unstable fixed point, limit cycle")

    dm = ba.PhasePlane2D("decision_making", variables={"s1": (0, 1), "s2": (0, 1)},
                         params={"mu0": 20.0, "coherence": 0.0}, resolution=res)
    starts = [{"s1": a, "s2": b} for a, b in ((0.05, 0.1), (0.1, 0.05), (0.7, 0.75), (0.75, 0.7))]
    dm_trajs = [dm.trajectory(s, duration=1500, dt=1.0) for s in starts]
    dm_fps = draw_plane(axes[1], dm, dm_trajs)
    axes[1].set_title("decision model, mu0 = 20 Hz, c = 0: two choices")

    bif = ba.Bifurcation1D("decision_making", variables={"s1": (0, 1), "s2": (0, 1)},
                           params={"mu0": (0, 80), "coherence": 0.0},
                           resolution={"mu0": 150 if args.quick else 400, "s1": 40 if args.quick else 60,
                                       "s2": 40 if args.quick else 60})
    table = bif.compute()
    for stable, style in ((True, dict(color="black", s=4, label="stable")),
                          (False, dict(color="tab:red", s=4, label="unstable"))):
        mask = table["stable"] == stable
        axes[2].scatter(table["mu0"][mask], table["s1"][mask], **style)
    for e in table["events"]:
        axes[2].axvline(e["mu0"], color="tab:purple", lw=0.8, ls="--")
        axes[2].annotate(f"{e['kind']}\nmu0 = {e['mu0']:.1f}", (e["mu0"], e["s1"]), textcoords="offset points",
                         xytext=(4, 4), fontsize=7)
    axes[2].set(xlabel="mu0 (Hz)", ylabel="s1", title="decision model: fixed points against mu0 (c = 0)")
    axes[2].legend(fontsize=7)

    kinds = [e["kind"] for e in table["events"]]
    data = {"fhn_fixed_points": [{k: (v if not isinstance(v, complex) else str(v)) for k, v in p.items()
                                  if k in ("v", "w", "stability")} for p in fhn_fps],
            "fhn_limit_cycle": {"found": cycle["found"], "period": cycle.get("period")},
            "decision_fixed_points_mu0_20": [{k: p[k] for k in ("s1", "s2", "stability")} for p in dm_fps],
            "bifurcation_events": [{k: e[k] for k in ("kind", "mu0", "s1", "s2")} for e in table["events"]],
            "resolution": res}
    stable_dm = [p for p in dm_fps if p["stability"].startswith("stable")]
    claims = {"FitzHugh-Nagumo at I = 0.8 has one unstable fixed point and a limit cycle":
                  len(fhn_fps) == 1 and not fhn_fps[0]["stability"].startswith("stable") and cycle["found"],
              "the decision model has two stable choice states at mu0 = 20 Hz (s1 > s2 and s2 > s1)":
                  any(p["s1"] > p["s2"] + 0.3 for p in stable_dm) and any(p["s2"] > p["s1"] + 0.3 for p in stable_dm),
              "saddle-node bifurcations bound the decision regime": kinds.count("saddle-node") >= 2}
    return exp.save(fig, data, claims, "Dynamics analysis: phase planes and a bifurcation diagram")


if __name__ == "__main__":
    main()
