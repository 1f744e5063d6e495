# vcpkg port of sekuire-cpp, a header-only library (also usable as an overlay port:
# vcpkg install sekuire --overlay-ports=<checkout>/packaging/vcpkg/ports).
set(VCPKG_BUILD_TYPE release) # header-only: one configuration is enough

# Used as an overlay port from a checkout of sekuire-cpp (this file sits at
# packaging/vcpkg/ports/sekuire/ inside it), the port builds that checkout: nothing is
# downloaded. Copied into a registry, it downloads the release tag instead.
get_filename_component(SEKUIRE_CHECKOUT "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)
if(EXISTS "${SEKUIRE_CHECKOUT}/include/sekuire/version.hpp" AND EXISTS "${SEKUIRE_CHECKOUT}/CMakeLists.txt")
    set(SOURCE_PATH "${SEKUIRE_CHECKOUT}")
else()
    vcpkg_from_github(
        OUT_SOURCE_PATH SOURCE_PATH
        REPO sekuire/sekuire-cpp
        REF "v${VERSION}"
        # TO FILL AT RELEASE: the SHA512 of the v${VERSION} source archive. vcpkg prints the
        # right value when this one fails to match; it must be set when the port is copied
        # into a registry (the overlay use above needs none).
        SHA512 0
        HEAD_REF main
    )
endif()

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

# Nothing is compiled: no lib/ and no debug tree.
file(REMOVE_RECURSE
    "${CURRENT_PACKAGES_DIR}/debug"
    "${CURRENT_PACKAGES_DIR}/lib"
)

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
