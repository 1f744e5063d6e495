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

# No version in the request: cpp-httplib's own version file accepts the same minor version
# only (a request for 0.11 would refuse 0.12 and later), so the minimum is checked here.
find_package(httplib CONFIG QUIET)
if(httplib_FOUND AND httplib_VERSION AND httplib_VERSION VERSION_LESS 0.11)
  set(_sekuire_httplib_too_old " The cpp-httplib package at ${httplib_DIR} is version ${httplib_VERSION}.")
elseif(httplib_FOUND)
  if(DEFINED HTTPLIB_IS_USING_OPENSSL AND NOT HTTPLIB_IS_USING_OPENSSL)
    message(WARNING "sekuire: the cpp-httplib package found at ${httplib_DIR} was built without "
                    "OpenSSL; https base URLs will be refused at run time.")
  endif()
  return()
endif()

if(NOT httplib_FOUND)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(SEKUIRE_CPPHTTPLIB QUIET IMPORTED_TARGET GLOBAL cpp-httplib>=0.11)
  endif()
endif()
if(TARGET PkgConfig::SEKUIRE_CPPHTTPLIB)
  # An imported target, not an ALIAS: install(EXPORT) writes an alias's real name, and the
  # export set must name httplib::httplib whichever way the consumer finds httplib.
  add_library(httplib::httplib INTERFACE IMPORTED GLOBAL)
  target_link_libraries(httplib::httplib INTERFACE PkgConfig::SEKUIRE_CPPHTTPLIB)
  return()
endif()

set(_sekuire_httplib_msg "sekuire needs cpp-httplib >= 0.11: install its CMake package \
(vcpkg: cpp-httplib[openssl]; Conan: cpp-httplib with with_openssl=True) or Debian's \
libcpp-httplib-dev together with pkg-config.${_sekuire_httplib_too_old}")
if(CMAKE_FIND_PACKAGE_NAME STREQUAL "sekuire")
  # Called from sekuireConfig.cmake: report through find_package instead of stopping CMake.
  set(sekuire_FOUND FALSE)
  set(sekuire_NOT_FOUND_MESSAGE "${_sekuire_httplib_msg}")
else()
  message(FATAL_ERROR "${_sekuire_httplib_msg}")
endif()
