"""What the tests of the `brain` command line share: where the tool is, its exit codes, and
reading and comparing the monitors.npz a run writes."""

import os

import numpy as np

import brain

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# BRAIN_TOOL points the tests at a freshly built tool (e.g. build-cpu/brain) during development.
BRAIN_TOOL = os.environ.get("BRAIN_TOOL", os.path.join(os.path.dirname(brain.__file__), "bin", "brain"))
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def monitors(out):
    with np.load(out / "monitors.npz") as d:
        return {k: d[k] for k in d.files}


def assert_same_monitors(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), k
