# Fails when an instruction-set variant's object defines a global or weak symbol outside its
# own namespace (kernels/isa.h): the linker would keep one copy of such a name for the whole
# library, so portable code could end up running the variant's instructions, or the variant
# the portable code.
#   cmake -DNM=<nm> -DISA=avx2 -DOBJECTS="a.o|b.o" -P check_isa_symbols.cmake
string(REPLACE "|" ";" objects "${OBJECTS}")
if(NOT objects)
  message(FATAL_ERROR "no ${ISA} objects given: the test would check nothing")
endif()
set(checked 0)
set(bad "")
foreach(object IN LISTS objects)
  execute_process(COMMAND "${NM}" -C --defined-only "${object}" OUTPUT_VARIABLE listing
                  RESULT_VARIABLE status ERROR_VARIABLE errors)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "${NM} failed on ${object}: ${errors}")
  endif()
  string(REPLACE "\n" ";" lines "${listing}")
  foreach(line IN LISTS lines)
    # "<address> <type> <name>"; upper-case types and u are visible to the linker.
    if(line MATCHES "^[0-9a-fA-F]+ ([A-Zu]) (.*)$")
      math(EXPR checked "${checked} + 1")
      if(NOT CMAKE_MATCH_2 MATCHES "::${ISA}::")
        string(APPEND bad "\n  ${object}: ${CMAKE_MATCH_1} ${CMAKE_MATCH_2}")
      endif()
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "symbols of the ${ISA} variant outside namespace ${ISA} (see kernels/isa.h):${bad}")
endif()
if(checked EQUAL 0)
  message(FATAL_ERROR "no global symbols in the ${ISA} objects: nothing was checked")
endif()
message(STATUS "${checked} global symbols of the ${ISA} variant, all in its namespace")
