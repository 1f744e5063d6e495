# SPDX-License-Identifier: MIT
# Every impl/*.ipp file of the library is compiled by <sekuire/src.hpp>: a body the headers
# leave out in SEKUIRE_SEPARATE_COMPILATION mode and src.hpp forgets would be defined
# nowhere.   cmake -DINCLUDE_DIR=<repo>/include -P check_src.cmake
if(NOT INCLUDE_DIR)
  message(FATAL_ERROR "usage: cmake -DINCLUDE_DIR=<include directory> -P check_src.cmake")
endif()
file(READ "${INCLUDE_DIR}/sekuire/src.hpp" src)
file(GLOB_RECURSE ipps RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/sekuire/*.ipp")
list(LENGTH ipps count)
if(count EQUAL 0)
  message(FATAL_ERROR "no .ipp file found under ${INCLUDE_DIR}/sekuire")
endif()
set(missing "")
foreach(ipp IN LISTS ipps)
  string(FIND "${src}" "#include <${ipp}>" at)
  if(at EQUAL -1)
    list(APPEND missing "${ipp}")
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "<sekuire/src.hpp> does not include: ${missing}")
endif()
message(STATUS "src.hpp includes all ${count} .ipp files")
