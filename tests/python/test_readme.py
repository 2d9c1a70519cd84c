"""The README's Python examples run as written.

Users copy these blocks first, so a renamed argument or a missing definition must fail here,
not in their hands. The blocks run in README order in one namespace, as a reader going down the
page would (a later block may use what an earlier one imported), in a scratch directory (they
write figures and monitors). Blocks that need a GPU are skipped without one.
"""
import os
import pathlib
import re

import pytest
import torch

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def python_blocks():
    text = README.read_text()
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        line = text.count("\n", 0, match.start()) + 2  # the block's first line of code
        yield line, match.group(1)


def test_readme_has_python_examples():
    assert len(list(python_blocks())) >= 8


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    ran = 0
    for line, code in python_blocks():
        if 'device="cuda"' in code and not torch.cuda.is_available():
            continue
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as error:  # the block's README line, not only this file's
            pytest.fail(f"the README's Python block at line {line} raised {type(error).__name__}: {error}")
        ran += 1
    assert ran >= 7
    # What the blocks claim to leave behind.
    assert os.path.exists("out/coba/monitors.npz") and os.path.exists("out/coba/summary.json")
    assert os.path.exists("fhn.png")
    assert namespace["weights"].grad.shape == (3,)
    assert namespace["w"].grad.shape == (2,) and torch.isfinite(namespace["w"].grad).all()
