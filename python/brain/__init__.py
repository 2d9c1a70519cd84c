"""libbrain: a differentiable brain simulator on LibTorch.

Importing this package loads libbrain's operators into torch, as `torch.ops.brain.*`.
"""

from . import _loader

library_path = _loader.load_library()
build_info = _loader.read_build_info()
__version__ = build_info["version"]

from . import ops  # noqa: E402  (needs the library loaded above)

# For C++ consumers of the pip-installed package:
#   cmake -DCMAKE_PREFIX_PATH="$(python3 -c 'import brain; print(brain.cmake_prefix_path)')"
cmake_prefix_path = _loader.CMAKE_PREFIX_PATH

__all__ = ["__version__", "build_info", "cmake_prefix_path", "library_path", "ops"]
