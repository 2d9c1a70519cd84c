"""Builds the Python package `brain` by driving the project's CMake build.

    python3 -m pip install .

The whole CMake install (libbrain.so, the `brain` tool, headers, brainConfig.cmake) is placed
inside the package, so `brain.cmake_prefix_path` also serves C++ consumers.

Environment knobs:
    BRAIN_WITH_CUDA   AUTO (default), ON or OFF
    BRAIN_CMAKE_ARGS  extra arguments for the CMake configure step
    BRAIN_BUILD_DIR   CMake build directory (default: build/python)
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        match = re.search(r"project\(brain VERSION ([0-9]+\.[0-9]+\.[0-9]+)", f.read())
    if not match:
        raise RuntimeError("cannot read the version from CMakeLists.txt's project() call")
    return match.group(1)


def find_torch():
    """Returns (torch package dir, torch version) of the torch libbrain will link against.

    Under pip's build isolation `import torch` fails: the isolated environment hides the
    user's site-packages. The interpreter is still the user's, so ask it again without the
    isolation variables; that finds the torch the package will run with.
    """
    probe = "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__)"
    try:
        import torch  # noqa: F401

        return os.path.dirname(torch.__file__), torch.__version__
    except ImportError:
        pass
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            "libbrain is a LibTorch plugin and needs torch installed before it is built.\n"
            "Install it first (python3 -m pip install -r requirements.txt, or ./scripts/setup.sh),\n"
            f"then run pip install again. ({result.stderr.strip().splitlines()[-1:]})"
        )
    root, version = result.stdout.split()
    return root, version


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        for tool in ("cmake",):
            if shutil.which(tool) is None:
                raise RuntimeError(f"building libbrain needs '{tool}' on PATH (./scripts/setup.sh installs it)")
        torch_root, _ = find_torch()
        build_dir = os.environ.get("BRAIN_BUILD_DIR", os.path.join(ROOT, "build", "python"))
        stage = os.path.join(build_dir, "stage")
        configure = [
            "cmake", "-S", ROOT, "-B", build_dir,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DBRAIN_TORCH_ROOT={torch_root}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DBRAIN_WITH_CUDA={os.environ.get('BRAIN_WITH_CUDA', 'AUTO')}",
            "-DBRAIN_BUILD_TESTS=OFF",
            "-DBRAIN_VERSIONED_SONAME=OFF",
            # The package layout is prefix/lib + prefix/bin, whatever the distro's libdir is.
            "-DCMAKE_INSTALL_LIBDIR=lib",
        ]
        if shutil.which("ninja") and not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("BRAIN_CMAKE_ARGS", ""))
        subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "--build", build_dir, "--parallel", jobs], check=True)
        shutil.rmtree(stage, ignore_errors=True)
        subprocess.run(["cmake", "--install", build_dir, "--prefix", stage], check=True)

        package_dir = os.path.join(ROOT, "python", "brain") if self.inplace else \
            os.path.join(self.build_lib, "brain")
        for sub in ("lib", "bin", "include", "share"):
            src = os.path.join(stage, sub)
            dst = os.path.join(package_dir, sub)
            shutil.rmtree(dst, ignore_errors=True)
            if os.path.isdir(src):
                shutil.copytree(src, dst, symlinks=False)


_, torch_version = find_torch()
# libbrain's C++ ABI is tied to the exact torch it was compiled against.
torch_requirement = "torch==" + torch_version.split("+")[0]

setup(
    name="brain",
    version=project_version(),
    description="libbrain: a differentiable brain simulator as a LibTorch plugin",
    packages=["brain"],
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("brain._libbrain")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=[torch_requirement],
    python_requires=">=3.10",
    entry_points={"console_scripts": ["brain = brain._cli:main"]},
    zip_safe=False,
)
