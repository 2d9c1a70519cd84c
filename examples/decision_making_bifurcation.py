"""Bifurcation diagram of the reduced Wong & Wang (2006) decision-making model against the
stimulus strength mu0 at zero coherence (eLife 2023, BrainPy's dynamics-analysis figure):
stable and unstable branches of s1, with the saddle-node points located and named.

    python3 examples/decision_making_bifurcation.py [OUT.png]
"""

import os
import sys

from brain import analysis as ba


def main(out):
    bif = ba.Bifurcation1D("decision_making", variables={"s1": (0, 1), "s2": (0, 1)},
                           params={"mu0": (0, 80), "coherence": 0.0}, resolution={"mu0": 400, "s1": 60, "s2": 60})
    table = bif.compute()
    print(f"{len(table['stability'])} fixed points over {400} values of mu0")
    for e in table["events"]:
        print(f"  {e['kind']} at mu0 = {e['mu0']:.4f} Hz (s1 = {e['s1']:.4f}, s2 = {e['s2']:.4f})")
    bif.plot(out, variable="s1")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(os.path.dirname(__file__), "figures", "decision_making_bifurcation.png"))
