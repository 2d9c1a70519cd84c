# Locates LibTorch (the one inside the PyPI `torch` wheel, or any LibTorch tree) and defines
#   brain::torch_cpu   headers + libtorch, libtorch_cpu, libc10
#   brain::torch_cuda  brain::torch_cpu + libtorch_cuda, libc10_cuda, the CUDA runtime
#
# Why not find_package(Torch)? TorchConfig.cmake fails outright when torch is a CUDA build but
# no CUDA toolkit is installed (the usual laptop with a pip-installed torch), and when it does
# find one it appends -gencode flags for eleven architectures to CMAKE_CUDA_FLAGS, which
# multiplies nvcc time. We need neither behaviour, only the headers and libraries.
#
# Inputs (cache or normal variables, all optional):
#   BRAIN_TORCH_ROOT  the torch package directory (holds include/ and lib/)
#   Python3_EXECUTABLE / PYTHON_EXECUTABLE  the interpreter to ask when no root is given
# Outputs:
#   BRAIN_TORCH_ROOT, BRAIN_TORCH_VERSION (e.g. 2.11.0), BRAIN_TORCH_HAS_CUDA (ON/OFF),
#   BRAIN_TORCH_CUDA_VERSION (e.g. 13.0, empty for CPU builds)

include_guard(GLOBAL)

function(_brain_torch_fail)
  string(JOIN "" why ${ARGV})
  message(FATAL_ERROR
    "libbrain needs LibTorch (the PyPI 'torch' package) and could not use it: ${why}\n"
    "Install it with ./scripts/setup.sh (or: python3 -m pip install -r requirements.txt), "
    "or point -DBRAIN_TORCH_ROOT=<dir containing include/ and lib/> at a LibTorch tree.")
endfunction()

if(NOT BRAIN_TORCH_ROOT AND DEFINED ENV{BRAIN_TORCH_ROOT})
  set(BRAIN_TORCH_ROOT "$ENV{BRAIN_TORCH_ROOT}")
endif()

if(NOT BRAIN_TORCH_ROOT)
  set(_brain_py "")
  foreach(_cand IN ITEMS "${Python3_EXECUTABLE}" "${PYTHON_EXECUTABLE}")
    if(_cand)
      set(_brain_py "${_cand}")
      break()
    endif()
  endforeach()
  if(NOT _brain_py)
    find_program(BRAIN_PYTHON_EXECUTABLE NAMES python3 python)
    set(_brain_py "${BRAIN_PYTHON_EXECUTABLE}")
  endif()
  if(NOT _brain_py)
    _brain_torch_fail("no python3 interpreter was found to ask where torch is installed.")
  endif()
  execute_process(
    COMMAND "${_brain_py}" -c "import os, torch; print(os.path.dirname(torch.__file__))"
    OUTPUT_VARIABLE _brain_root OUTPUT_STRIP_TRAILING_WHITESPACE
    ERROR_VARIABLE _brain_err RESULT_VARIABLE _brain_rc)
  if(NOT _brain_rc EQUAL 0)
    string(REGEX REPLACE ".*\n([^\n]+)\n?$" "\\1" _brain_last "${_brain_err}")
    _brain_torch_fail("'${_brain_py} -c \"import torch\"' failed (${_brain_last}).")
  endif()
  set(BRAIN_TORCH_ROOT "${_brain_root}")
endif()
set(BRAIN_TORCH_ROOT "${BRAIN_TORCH_ROOT}" CACHE PATH "LibTorch root (holds include/ and lib/)" FORCE)

if(NOT EXISTS "${BRAIN_TORCH_ROOT}/include/ATen/ATen.h" OR NOT EXISTS "${BRAIN_TORCH_ROOT}/lib")
  _brain_torch_fail("'${BRAIN_TORCH_ROOT}' has no include/ATen/ATen.h or lib/: it is not a "
                    "torch installation with C++ headers.")
endif()

# The version macros moved to torch/headeronly/version.h in 2.9; older trees keep them in
# torch/csrc/api/include/torch/version.h.
set(_brain_version_text "")
foreach(_hdr IN ITEMS "include/torch/headeronly/version.h"
                      "include/torch/csrc/api/include/torch/version.h")
  if(EXISTS "${BRAIN_TORCH_ROOT}/${_hdr}")
    file(READ "${BRAIN_TORCH_ROOT}/${_hdr}" _brain_text)
    string(APPEND _brain_version_text "${_brain_text}")
  endif()
endforeach()
foreach(_part MAJOR MINOR PATCH)
  string(REGEX MATCH "#define TORCH_VERSION_${_part} ([0-9]+)" _m "${_brain_version_text}")
  if(NOT _m)
    _brain_torch_fail("cannot read TORCH_VERSION_${_part} from the headers in ${BRAIN_TORCH_ROOT}.")
  endif()
  set(_brain_v_${_part} "${CMAKE_MATCH_1}")
endforeach()
set(BRAIN_TORCH_VERSION "${_brain_v_MAJOR}.${_brain_v_MINOR}.${_brain_v_PATCH}")

if(BRAIN_TORCH_MIN_VERSION AND BRAIN_TORCH_VERSION VERSION_LESS BRAIN_TORCH_MIN_VERSION)
  _brain_torch_fail("found torch ${BRAIN_TORCH_VERSION} in ${BRAIN_TORCH_ROOT}, "
                    "libbrain needs ${BRAIN_TORCH_MIN_VERSION} or newer.")
endif()

set(_brain_lib "${BRAIN_TORCH_ROOT}/lib")
foreach(_name IN ITEMS torch torch_cpu c10)
  if(NOT EXISTS "${_brain_lib}/lib${_name}.so")
    _brain_torch_fail("${_brain_lib}/lib${_name}.so is missing.")
  endif()
endforeach()

set(BRAIN_TORCH_HAS_CUDA OFF)
set(BRAIN_TORCH_CUDA_VERSION "")
if(EXISTS "${_brain_lib}/libtorch_cuda.so" AND EXISTS "${_brain_lib}/libc10_cuda.so")
  set(BRAIN_TORCH_HAS_CUDA ON)
  if(EXISTS "${BRAIN_TORCH_ROOT}/version.py")
    file(STRINGS "${BRAIN_TORCH_ROOT}/version.py" _brain_cuda_line REGEX "^cuda")
    string(REGEX MATCH "'([0-9.]+)'" _m "${_brain_cuda_line}")
    set(BRAIN_TORCH_CUDA_VERSION "${CMAKE_MATCH_1}")
  endif()
endif()

if(NOT TARGET brain::torch_cpu)
  add_library(brain::torch_cpu INTERFACE IMPORTED)
  set_target_properties(brain::torch_cpu PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES
      "${BRAIN_TORCH_ROOT}/include;${BRAIN_TORCH_ROOT}/include/torch/csrc/api/include"
    # Same definitions TorchConfig exports, so c10d headers see the same configuration.
    INTERFACE_COMPILE_DEFINITIONS "USE_DISTRIBUTED;USE_C10D_GLOO"
    # --no-as-needed: operator registrations live in static initialisers of libtorch_cpu;
    # the library must stay loaded even when no symbol of it is referenced directly.
    INTERFACE_LINK_LIBRARIES
      "-Wl,--no-as-needed;${_brain_lib}/libtorch_cpu.so;${_brain_lib}/libtorch.so;${_brain_lib}/libc10.so;-Wl,--as-needed")
endif()

if(BRAIN_TORCH_HAS_CUDA AND NOT TARGET brain::torch_cuda)
  add_library(brain::torch_cuda INTERFACE IMPORTED)
  set_target_properties(brain::torch_cuda PROPERTIES
    INTERFACE_COMPILE_DEFINITIONS "USE_C10D_NCCL"
    INTERFACE_LINK_LIBRARIES
      "brain::torch_cpu;-Wl,--no-as-needed;${_brain_lib}/libtorch_cuda.so;${_brain_lib}/libc10_cuda.so;-Wl,--as-needed")
endif()

set(BRAIN_TORCH_LIBRARY_DIR "${_brain_lib}")
