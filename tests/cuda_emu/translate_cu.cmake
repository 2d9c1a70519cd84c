# Rewrites a .cu file for the CUDA emulator (see emu/cuda_emu.h): each launch
#   kernel<template args><<<grid, block[, shared[, stream]]>>>(args...)
# becomes
#   ::cuda_emu::Launch("kernel<template args>", grid, block[, shared[, stream]]).run(kernel<...>, args...)
# Usage: cmake -DINPUT=file.cu -DOUTPUT=file.cpp -P translate_cu.cmake
file(READ "${INPUT}" source)
# The kernel: a name, optionally qualified, with optional template arguments that hold no
# parentheses or angle brackets; the configuration runs to the last >>>( of its line.
set(kernel "([A-Za-z_][A-Za-z0-9_:]*(<[^;{}()<>]*>)?)")
string(REGEX REPLACE "${kernel}<<<([^\n]*)>>>\\(" "::cuda_emu::Launch(\"\\1\", \\3).run(\\1, " translated "${source}")
if(translated MATCHES "<<<")
  string(REGEX MATCH "[^\n]*<<<[^\n]*" line "${translated}")
  message(FATAL_ERROR "${INPUT}: a kernel launch the emulator's translation does not recognise:\n${line}")
endif()
file(WRITE "${OUTPUT}.tmp" "#line 1 \"${INPUT}\"\n${translated}")
# Only a changed translation touches the output, so ninja does not recompile what did not change.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
