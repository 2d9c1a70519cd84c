"""The Python package: guarded loading, version checks, the console script."""

import json
import os
import re
import subprocess

import pytest
import torch

import brain
from brain import _loader

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cmake_project_version():
    with open(os.path.join(REPO, "CMakeLists.txt"), encoding="utf-8") as f:
        return re.search(r"project\(brain VERSION ([0-9.]+)", f.read()).group(1)


def test_version_is_the_cmake_project_version():
    assert brain.__version__ == cmake_project_version()


def test_library_is_loaded_into_torch():
    assert brain.library_path in torch.ops.loaded_libraries
    assert os.path.isfile(brain.library_path)


def test_built_against_the_running_torch():
    assert brain.build_info["torch_version"] == torch.__version__.split("+")[0]


def test_loading_twice_is_a_no_op():
    assert _loader.load_library() == brain.library_path


def test_cmake_package_is_shipped_for_cpp_consumers():
    assert os.path.isfile(os.path.join(brain.cmake_prefix_path, "brain", "brainConfig.cmake"))
    assert os.path.isfile(os.path.join(os.path.dirname(brain.__file__), "include", "brain", "brain.h"))


def _info(**overrides):
    info = {"version": "9.9.9", "torch_version": "2.11.0", "with_cuda": 1, "nvcc_version": "13.0.88"}
    info.update(overrides)
    return info


def test_compatible_builds_pass():
    _loader.check_compatibility(_info(), "2.11.0+cu130", "13.0")
    _loader.check_compatibility(_info(with_cuda=0), "2.11.0+cpu", None)
    _loader.check_compatibility(_info(with_cuda=0), "2.11.0", "13.0")


def test_torch_version_mismatch_names_both_versions():
    with pytest.raises(ImportError, match=r"built against torch 2\.11\.0, but torch 2\.12\.1 is imported"):
        _loader.check_compatibility(_info(), "2.12.1+cu130", "13.0")


def test_cuda_build_on_cpu_torch_is_refused():
    with pytest.raises(ImportError, match="CPU-only build"):
        _loader.check_compatibility(_info(), "2.11.0+cpu", None)


def test_cuda_major_mismatch_is_refused():
    with pytest.raises(ImportError, match=r"built with CUDA 13\.0\.88, but torch .* uses CUDA 12\.8"):
        _loader.check_compatibility(_info(), "2.11.0+cu128", "12.8")


def test_missing_build_info_says_package_was_not_built(tmp_path):
    with pytest.raises(ImportError, match="build information is missing"):
        _loader.read_build_info(str(tmp_path / "nope.json"))


def _load_fresh(monkeypatch, path):
    monkeypatch.setattr(_loader, "_loaded_path", None)
    return _loader.load_library(path=path)


def test_missing_library_names_the_path(monkeypatch, tmp_path):
    missing = str(tmp_path / "libbrain.so")
    with pytest.raises(ImportError, match=re.escape(f"shared library is missing: {missing}")):
        _load_fresh(monkeypatch, missing)


def test_broken_library_reports_the_loader_error(monkeypatch, tmp_path):
    broken = tmp_path / "libbrain.so"
    broken.write_bytes(b"this is not an ELF file")
    with pytest.raises(ImportError, match=re.escape(f"loading {broken} failed")):
        _load_fresh(monkeypatch, str(broken))


def test_console_script_reports_versions_as_json():
    out = subprocess.run(["brain", "info", "--json"], check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    assert info["version"] == brain.__version__
    assert info["torch_runtime_version"] == torch.__version__.split("+")[0]
    assert info["torch_build_version"] == info["torch_runtime_version"]
    assert info["with_cuda"] == bool(brain.build_info["with_cuda"])
    assert all(op["name"].startswith("brain::") for op in info["ops"])


def test_console_script_bad_usage_exits_2():
    result = subprocess.run(["brain", "no-such-command"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown command 'no-such-command'" in result.stderr
