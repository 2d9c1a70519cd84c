"""FitzHugh-Nagumo phase plane (eLife 2023, BrainPy's dynamics-analysis figure): vector field,
nullclines, the fixed point with its stability, and two trajectories onto the limit cycle.

    python3 examples/fhn_phase_plane.py [OUT.png]
"""

import os
import sys

from brain import analysis as ba


def fhn(v, w, I, a=0.7, b=0.8, tau=12.5):
    return v - v ** 3 / 3 - w + I, (v + a - b * w) / tau


def main(out):
    pp = ba.PhasePlane2D(fhn, variables={"v": (-3, 3), "w": (-1.5, 3)}, params={"I": 0.8}, resolution=200)
    for p in pp.fixed_points():
        print(f"fixed point v={p['v']:.4f} w={p['w']:.4f}: {p['stability']}, eigenvalues {p['eigenvalues']}")
    for start in ({"v": -2.0, "w": 0.5}, {"v": 1.0, "w": 2.5}):
        pp.trajectory(start, duration=200, dt=0.05)
    (cycle,) = pp.limit_cycles({"v": -2.0, "w": 0.5}, duration=400, dt=0.05)
    if cycle["found"]:
        print(f"limit cycle: period {cycle['period']:.2f}, v in [{cycle['v']['min']:.3f}, {cycle['v']['max']:.3f}]")
    pp.plot(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "figures", "fhn_phase_plane.png"))
