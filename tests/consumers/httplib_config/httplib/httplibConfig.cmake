# A stand-in for the CMake package that upstream cpp-httplib, vcpkg and Conan install
# (httplibConfig.cmake): found with find_package(httplib CONFIG), it defines the imported
# target httplib::httplib and the variable HTTPLIB_IS_USING_OPENSSL.
#
# It wraps Debian's pkg-config package (libcpp-httplib-dev), so that sekuire's CONFIG branch
# can be tested on a machine that has no cpp-httplib CMake package. The CPPHTTPLIB_*_SUPPORT
# definitions come from the pkg-config Cflags, as a real package's target carries those it
# was built with; they are never written here. See httplibConfigVersion.cmake for the
# version it reports.
include(CMakeFindDependencyMacro)
find_dependency(PkgConfig)
pkg_check_modules(httplib_stub_pc QUIET IMPORTED_TARGET cpp-httplib)
if(NOT TARGET PkgConfig::httplib_stub_pc)
  set(httplib_FOUND FALSE)
  set(httplib_NOT_FOUND_MESSAGE "the test stub of httplibConfig.cmake wraps pkg-config's cpp-httplib, which was not found")
  return()
endif()

if(NOT TARGET httplib::httplib)
  add_library(httplib::httplib INTERFACE IMPORTED)
  set_target_properties(httplib::httplib PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::httplib_stub_pc)
endif()

# Upstream's config reports how the library was built; derive it from the same Cflags.
set(_httplib_stub_cflags "${httplib_stub_pc_CFLAGS_OTHER}")
if(_httplib_stub_cflags MATCHES "(^|;)-DCPPHTTPLIB_OPENSSL_SUPPORT(;|$)")
  set(HTTPLIB_IS_USING_OPENSSL TRUE)
else()
  set(HTTPLIB_IS_USING_OPENSSL FALSE)
endif()
if(_httplib_stub_cflags MATCHES "(^|;)-DCPPHTTPLIB_ZLIB_SUPPORT(;|$)")
  set(HTTPLIB_IS_USING_ZLIB TRUE)
else()
  set(HTTPLIB_IS_USING_ZLIB FALSE)
endif()
if(_httplib_stub_cflags MATCHES "(^|;)-DCPPHTTPLIB_BROTLI_SUPPORT(;|$)")
  set(HTTPLIB_IS_USING_BROTLI TRUE)
else()
  set(HTTPLIB_IS_USING_BROTLI FALSE)
endif()
unset(_httplib_stub_cflags)

# The version the version file reported (find_package set httplib_VERSION from it).
set(HTTPLIB_VERSION "${httplib_VERSION}")
set(httplib_FOUND TRUE)
