# Version file of the test stub httplibConfig.cmake, with the rule of cpp-httplib's own
# (SameMinorVersion: a request for 0.11 accepts 0.11.x only).
#
# The version is that of the pkg-config package the stub wraps, unless the test sets
# SEKUIRE_TEST_HTTPLIB_STUB_VERSION to emulate a newer package, as vcpkg and Conan ship.
if(SEKUIRE_TEST_HTTPLIB_STUB_VERSION)
  set(PACKAGE_VERSION "${SEKUIRE_TEST_HTTPLIB_STUB_VERSION}")
else()
  set(PACKAGE_VERSION "0")
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_EXECUTABLE)
    execute_process(COMMAND "${PKG_CONFIG_EXECUTABLE}" --modversion cpp-httplib
                    OUTPUT_VARIABLE _httplib_stub_version OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _httplib_stub_result ERROR_QUIET)
    if(_httplib_stub_result EQUAL 0 AND _httplib_stub_version MATCHES "^[0-9]+\\.[0-9]+")
      set(PACKAGE_VERSION "${_httplib_stub_version}")
    endif()
  endif()
endif()

if(PACKAGE_VERSION VERSION_EQUAL "0")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
elseif(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
elseif(PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _httplib_stub_have "${PACKAGE_VERSION}")
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" _httplib_stub_want "${PACKAGE_FIND_VERSION}.0")
  if(_httplib_stub_have VERSION_EQUAL _httplib_stub_want)
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  endif()
  if(PACKAGE_VERSION VERSION_EQUAL PACKAGE_FIND_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
