"""Loads libbrain into the process once, after checking it can work with the torch here.

Every failure raises ImportError with the reason (missing file, torch version or CUDA
mismatch, or the dynamic loader's own message) and what to do about it.
"""

import glob
import importlib.util
import json
import os
import sys
import threading

import torch

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
LIBRARY_PATH = os.path.join(PACKAGE_DIR, "lib", "libbrain.so")
BUILD_INFO_PATH = os.path.join(PACKAGE_DIR, "share", "brain", "brain_build_info.json")
CMAKE_PREFIX_PATH = os.path.join(PACKAGE_DIR, "lib", "cmake")

_REINSTALL = "reinstall libbrain against the torch you use: python3 -m pip install . (from the libbrain checkout)"

_lock = threading.Lock()
_loaded_path = None


def read_build_info(path=BUILD_INFO_PATH):
    """How the installed libbrain was built (version, torch, CUDA), as a dict."""
    if not os.path.isfile(path):
        raise ImportError(
            f"libbrain's build information is missing ({path}): the package was not built. "
            f"Install it with pip, not by putting python/ on sys.path; {_REINSTALL}."
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _major(version):
    return version.split(".")[0] if version else ""


def check_compatibility(info, torch_version, torch_cuda_version):
    """Raises ImportError when a libbrain built as `info` cannot run on this torch.

    `torch_version` is torch.__version__ (local suffixes such as '+cu130' are ignored) and
    `torch_cuda_version` is torch.version.cuda (None for CPU-only torch).
    """
    running = torch_version.split("+")[0]
    built = info["torch_version"]
    if running != built:
        raise ImportError(
            f"libbrain {info['version']} was built against torch {built}, but torch {running} is "
            f"imported; its C++ ABI differs between versions. Install torch=={built}, or {_REINSTALL}."
        )
    if info.get("with_cuda"):
        if not torch_cuda_version:
            raise ImportError(
                f"libbrain {info['version']} was built with CUDA {info.get('nvcc_version')}, but the "
                f"imported torch {torch_version} is a CPU-only build. Install the CUDA build of torch "
                f"{built}, or {_REINSTALL} (it then builds without CUDA)."
            )
        if _major(torch_cuda_version) != _major(info.get("nvcc_version", "")):
            raise ImportError(
                f"libbrain {info['version']} was built with CUDA {info.get('nvcc_version')}, but torch "
                f"{torch_version} uses CUDA {torch_cuda_version}; the CUDA major versions must match. "
                f"{_REINSTALL[0].upper()}{_REINSTALL[1:]}."
            )


def load_library(path=LIBRARY_PATH, build_info_path=BUILD_INFO_PATH):
    """Checks compatibility, then loads libbrain (once per process). Returns the library path."""
    global _loaded_path
    with _lock:
        if _loaded_path is not None:
            return _loaded_path
        info = read_build_info(build_info_path)
        check_compatibility(info, torch.__version__, torch.version.cuda)
        if not os.path.isfile(path):
            raise ImportError(f"libbrain's shared library is missing: {path}. {_REINSTALL[0].upper()}{_REINSTALL[1:]}.")
        try:
            torch.ops.load_library(path)
        except OSError as e:
            raise ImportError(f"loading {path} failed: {e}. {_REINSTALL[0].upper()}{_REINSTALL[1:]}.") from e
        _loaded_path = path
        return path


def load_extension():
    """Imports brain._C, the Python extension of libbrain's C++ classes (analysis, models),
    from lib/ (once per process; call load_library() first, the extension links against it)."""
    name = "brain._C"
    with _lock:
        if name in sys.modules:
            return sys.modules[name]
        found = sorted(glob.glob(os.path.join(PACKAGE_DIR, "lib", "_C*.so")))
        if not found:
            raise ImportError(
                "brain.analysis and brain.models need libbrain's Python extension (lib/_C*.so), which this build "
                "does not have: it is built when the Python development headers are installed. "
                f"{_REINSTALL[0].upper()}{_REINSTALL[1:]}.")
        spec = importlib.util.spec_from_file_location(name, found[0])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
        return module

