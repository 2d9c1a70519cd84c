"""libbrain: a differentiable brain simulator on LibTorch.

Importing this package loads libbrain's operators into torch, as `torch.ops.brain.*`.
"""

from . import _loader

library_path = _loader.load_library()
build_info = _loader.read_build_info()
__version__ = build_info["version"]

from . import ops  # noqa: E402  (needs the library loaded above)
from . import _vmap  # noqa: E402

_vmap.register()

# The C++ classes (analysis tools, models, runner) need the brain._C extension; without it the
# operators still work and these modules raise the ImportError that says why when imported.
try:
    from . import analysis, models  # noqa: E402
except ImportError as _error:  # pragma: no cover - only without Python headers at build time
    _extension_error = _error

# For C++ consumers of the pip-installed package:
#   cmake -DCMAKE_PREFIX_PATH="$(python3 -c 'import brain; print(brain.cmake_prefix_path)')"
cmake_prefix_path = _loader.CMAKE_PREFIX_PATH

__all__ = ["__version__", "analysis", "build_info", "cmake_prefix_path", "library_path", "models", "ops"]
