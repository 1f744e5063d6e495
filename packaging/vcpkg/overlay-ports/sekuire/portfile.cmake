# OVERLAY PORT for a checkout of sekuire-cpp: it builds the checkout it sits in
# (<checkout>/packaging/vcpkg/overlay-ports/sekuire/) and downloads nothing of sekuire.
#
#   vcpkg install sekuire --overlay-ports=<checkout>/packaging/vcpkg/overlay-ports
#
# It is not the port for a registry: that one downloads the release archive and is written
# by scripts/release-port from packaging/vcpkg/registry-port/ (docs/packaging.md, "vcpkg").
# vcpkg keys its binary cache on this directory's files, not on the checkout: after the
# checkout changes, run `vcpkg remove sekuire` before installing again.
set(VCPKG_BUILD_TYPE release) # header-only: one configuration is enough

get_filename_component(SEKUIRE_CHECKOUT "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)
if(NOT EXISTS "${SEKUIRE_CHECKOUT}/include/sekuire/version.hpp" OR NOT EXISTS "${SEKUIRE_CHECKOUT}/CMakeLists.txt")
    message(FATAL_ERROR "The sekuire overlay port builds the checkout it sits in, and "
                        "${SEKUIRE_CHECKOUT} is not a sekuire-cpp checkout. Outside a checkout, "
                        "use the registry port that scripts/release-port writes.")
endif()
set(SOURCE_PATH "${SEKUIRE_CHECKOUT}")

# cpp-httplib comes from vcpkg's own CMake package (httplib::httplib with its
# CPPHTTPLIB_OPENSSL_SUPPORT definition); sekuire's CMake finds it first.
vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DSEKUIRE_BUILD_TESTS=OFF
        -DSEKUIRE_BUILD_EXAMPLES=OFF
        -DSEKUIRE_BUILD_TOOLS=OFF
        -DSEKUIRE_BUILD_BENCHMARKS=OFF
        -DSEKUIRE_BUILD_FUZZERS=OFF
        -DSEKUIRE_INSTALL=ON
)
vcpkg_cmake_install()

# The package's CMake files install to share/cmake/sekuire; vcpkg wants them in share/sekuire.
vcpkg_cmake_config_fixup(PACKAGE_NAME sekuire CONFIG_PATH share/cmake/sekuire)
# sekuire.pc is installed only when cpp-httplib came through pkg-config, never with vcpkg's.
if(EXISTS "${CURRENT_PACKAGES_DIR}/share/pkgconfig")
    vcpkg_fixup_pkgconfig()
endif()

# Nothing is compiled: no lib/ and no debug tree. The license goes to share/sekuire/copyright.
file(REMOVE_RECURSE
    "${CURRENT_PACKAGES_DIR}/debug"
    "${CURRENT_PACKAGES_DIR}/lib"
    "${CURRENT_PACKAGES_DIR}/share/doc"
)

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
