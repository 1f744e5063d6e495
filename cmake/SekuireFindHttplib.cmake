# Finds cpp-httplib and provides the target httplib::httplib.
#
# 1. A CMake package config (upstream install, vcpkg, Conan): its target carries the
#    CPPHTTPLIB_*_SUPPORT definitions that the library was built with.
# 2. Otherwise Debian's pkg-config file (libcpp-httplib-dev), whose Cflags carry the same
#    definitions. They change class layouts, so they must reach every translation unit and
#    must never be written by hand.
#
# The same file is installed next to sekuireConfig.cmake, so that consumers find httplib
# exactly the way the build did.
if(TARGET httplib::httplib)
  return()
endif()

find_package(httplib 0.11 CONFIG QUIET)
if(httplib_FOUND)
  if(DEFINED HTTPLIB_IS_USING_OPENSSL AND NOT HTTPLIB_IS_USING_OPENSSL)
    message(WARNING "sekuire: the cpp-httplib package found at ${httplib_DIR} was built without "
                    "OpenSSL; https base URLs will be refused at run time.")
  endif()
  return()
endif()

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(SEKUIRE_CPPHTTPLIB QUIET IMPORTED_TARGET GLOBAL cpp-httplib>=0.11)
endif()
if(TARGET PkgConfig::SEKUIRE_CPPHTTPLIB)
  add_library(httplib::httplib ALIAS PkgConfig::SEKUIRE_CPPHTTPLIB)
  return()
endif()

set(_sekuire_httplib_msg "sekuire needs cpp-httplib >= 0.11: install its CMake package \
(vcpkg: cpp-httplib[openssl]; Conan: cpp-httplib with with_openssl=True) or Debian's \
libcpp-httplib-dev together with pkg-config.")
if(CMAKE_FIND_PACKAGE_NAME STREQUAL "sekuire")
  # Called from sekuireConfig.cmake: report through find_package instead of stopping CMake.
  set(sekuire_FOUND FALSE)
  set(sekuire_NOT_FOUND_MESSAGE "${_sekuire_httplib_msg}")
else()
  message(FATAL_ERROR "${_sekuire_httplib_msg}")
endif()
