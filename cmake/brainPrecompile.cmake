# Precompiled headers for the translation units that include all of torch's C++ API.
#
# Parsing <torch/torch.h> costs about 25 s of the 40 s that such a file takes to compile, and
# about half of libbrain's sources and most of its tests include it: precompiling it once per
# target cuts a clean build by about a third on two cores. Files that include only narrow ATen
# headers (the op kernels and their glue) compile faster without the 700 MB header image, so
# they skip it; which files use it is read from their own #include lines, so it cannot drift.
#
#   brain_precompile_headers(<target> MARKER <header> HEADERS <header>...)   (names without <>)
#
# Every C++ source of <target> with the line `#include <MARKER>` (MARKER is a regex) gets HEADERS
# force-included from a precompiled image; the others are compiled as they are. Nothing is
# precompiled when fewer than two sources would use it (building the image would cost more than
# it saves) or when BRAIN_PRECOMPILE_HEADERS is OFF.
option(BRAIN_PRECOMPILE_HEADERS "Precompile <torch/torch.h> (and gtest / pybind11) for the sources that include it" ON)

function(brain_precompile_headers target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "MARKER" "HEADERS")
  if(NOT BRAIN_PRECOMPILE_HEADERS)
    return()
  endif()
  get_target_property(_sources ${target} SOURCES)
  get_target_property(_source_dir ${target} SOURCE_DIR)
  set(_users)
  set(_others)
  foreach(_src IN LISTS _sources)
    if(_src MATCHES "^\\$<")
      continue()
    endif()
    if(NOT IS_ABSOLUTE "${_src}")
      set(_src "${_source_dir}/${_src}")
    endif()
    set(_hit)
    if(_src MATCHES "\\.cpp$")
      file(STRINGS "${_src}" _hit REGEX "^#include <${arg_MARKER}>" LIMIT_COUNT 1)
    endif()
    if(_hit)
      list(APPEND _users "${_src}")
    else()
      list(APPEND _others "${_src}")
    endif()
  endforeach()
  list(LENGTH _users _count)
  if(_count LESS 2)
    return()
  endif()
  if(_others)
    set_source_files_properties(${_others} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
  endif()
  # Quoted names, not <...>: a '>' would end the generator expression. C++ only: the .cu
  # kernels are torch-free.
  set(_headers)
  foreach(_header IN LISTS arg_HEADERS)
    list(APPEND _headers "$<$<COMPILE_LANGUAGE:CXX>:\"${_header}\">")
  endforeach()
  target_precompile_headers(${target} PRIVATE ${_headers})
  message(STATUS "libbrain: ${target}: ${_count} sources use precompiled ${arg_HEADERS}")
endfunction()
