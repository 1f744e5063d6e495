# Finds CLI11 (the command line parser of sekuire's programs) and provides the target
# CLI11::CLI11. Only the programs under tools/ use it; the library does not.
#
# 1. A CMake package config: Debian's libcli11-dev (2.1.2), vcpkg, Conan, upstream installs.
# 2. Otherwise CLI11's pkg-config file (Debian ships one too).
#
# Included once by tools/CMakeLists.txt; every program there links CLI11::CLI11.
if(TARGET CLI11::CLI11)
  return()
endif()

find_package(CLI11 2.1 CONFIG QUIET)
if(TARGET CLI11::CLI11)
  return()
endif()

find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(SEKUIRE_CLI11 QUIET IMPORTED_TARGET GLOBAL CLI11>=2.1)
endif()
if(TARGET PkgConfig::SEKUIRE_CLI11)
  add_library(CLI11::CLI11 INTERFACE IMPORTED GLOBAL)
  target_link_libraries(CLI11::CLI11 INTERFACE PkgConfig::SEKUIRE_CLI11)
  return()
endif()

message(FATAL_ERROR "sekuire's programs (SEKUIRE_BUILD_TOOLS) need CLI11 >= 2.1: install Debian's "
                    "libcli11-dev (scripts/setup-deps does), vcpkg's or Conan's cli11, or configure "
                    "with -DSEKUIRE_BUILD_TOOLS=OFF.")
