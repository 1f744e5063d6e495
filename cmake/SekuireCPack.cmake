# CPack settings: a Debian package of everything `cmake --install` installs (the headers,
# the CMake package, sekuire.pc, and the programs sekuire-mock, sekuire-run, sekuire and
# sekuire-fleet when they are built).
# Included from the top-level CMakeLists.txt when sekuire is the top-level project.
#
#   cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=Release -DSEKUIRE_BUILD_TESTS=OFF -DSEKUIRE_BUILD_EXAMPLES=OFF
#   cmake --build build-deb
#   cpack --config build-deb/CPackConfig.cmake -G DEB -B build-deb/packages
#
# The dependencies are Debian's names for what the build found (docs/packaging.md).

string(REGEX MATCH "^[0-9]+\\.[0-9]+" _sekuire_boost_minor "${Boost_VERSION}")
set(SEKUIRE_DEB_DEPENDS
    "libboost-json${_sekuire_boost_minor}-dev, libcpp-httplib-dev (>= 0.11), libssl-dev (>= 1.1.1), pkg-config"
    CACHE STRING "The Depends field of the Debian package (cpack -G DEB)")
set(SEKUIRE_DEB_MAINTAINER "The sekuire-cpp authors <https://github.com/sekuire/sekuire-cpp/issues>"
    CACHE STRING "The Maintainer field of the Debian package (cpack -G DEB)")

set(CPACK_PACKAGE_NAME "libsekuire-dev")
set(CPACK_PACKAGE_VENDOR "The sekuire-cpp authors")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://github.com/sekuire/sekuire-cpp")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "header-only C++17 client for Sekuire agent fleets")
set(CPACK_PACKAGE_DESCRIPTION
    "sekuire-cpp makes a C++ process a managed Sekuire agent: beacon (bootstrap, heartbeats, \
leases, token refresh, kill switch), task worker (Server-Sent Events, policy gateway, \
results) and a protocol-complete mock backend. The package holds the headers, the CMake \
package (find_package(sekuire)), the pkg-config module sekuire and, when they were built, \
the programs sekuire-mock, sekuire-run, sekuire and sekuire-fleet.")
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
set(CPACK_PACKAGE_CHECKSUM SHA256)
if(NOT CPACK_GENERATOR)
  set(CPACK_GENERATOR DEB)
endif()

set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${SEKUIRE_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_DEPENDS "${SEKUIRE_DEB_DEPENDS}")
# <sekuire/spdlog.hpp>, the optional logging adapter, needs spdlog.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libspdlog-dev")
set(CPACK_DEBIAN_PACKAGE_SECTION "libdevel")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# The programs are machine code: the package is then for this architecture (CPack asks
# dpkg); headers alone are for all.
if(NOT SEKUIRE_BUILD_TOOLS)
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE "all")
endif()
# Their shared libraries come with the -dev packages above; dpkg-shlibdeps is not needed.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)

include(CPack)
