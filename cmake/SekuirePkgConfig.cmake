# Install rule for the pkg-config module sekuire.pc (included from the top-level
# CMakeLists.txt when SEKUIRE_INSTALL is on; docs/packaging.md, "pkg-config").
#
# The module says what sekuire::sekuire says, in pkg-config's words:
#   Requires  the pkg-config module through which cpp-httplib was found (Debian's
#             cpp-httplib.pc, whose Cflags carry the CPPHTTPLIB_*_SUPPORT definitions the
#             library was built with: they are never written here), and openssl;
#   Cflags    the include directory, Boost's include directory when it is not the
#             compiler's own, -pthread;
#   Libs      Boost.JSON (which has no pkg-config module), -pthread.
# It is written only when cpp-httplib was found through pkg-config: a cpp-httplib found as a
# CMake package (vcpkg, Conan, an upstream install) has no module to name, and a module of
# another copy would carry another copy's definitions. Conan users get a sekuire.pc from
# Conan's PkgConfigDeps instead (the recipe sets pkg_config_name).
#
# The prefix is the one given at install time (cmake --install --prefix, CPack's /usr):
# unlike the CMake package, the .pc file is not relocatable.

set(SEKUIRE_PKGCONFIG_WRITTEN OFF)

if(NOT TARGET PkgConfig::SEKUIRE_CPPHTTPLIB)
  message(STATUS "sekuire: no sekuire.pc will be installed: cpp-httplib was found as a CMake "
                 "package (${httplib_DIR}), not through pkg-config")
  return()
endif()

# The include directories of a target that are not the compiler's own, as -I flags.
function(_sekuire_pc_include_flags out_var target)
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  set(implicit "")
  foreach(dir IN LISTS CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES)
    get_filename_component(dir "${dir}" REALPATH)
    list(APPEND implicit "${dir}")
  endforeach()
  set(flags "")
  foreach(dir IN LISTS dirs)
    if(dir MATCHES "^\\$<")
      continue() # a generator expression of a build tree: none in an imported target
    endif()
    get_filename_component(real "${dir}" REALPATH)
    if(NOT real IN_LIST implicit)
      string(APPEND flags " -I${dir}")
    endif()
  endforeach()
  set(${out_var} "${flags}" PARENT_SCOPE)
endfunction()

# The file of an imported library target, for the first of its configurations.
function(_sekuire_pc_imported_location out_var target)
  set(location "")
  get_target_property(configs ${target} IMPORTED_CONFIGURATIONS)
  if(configs)
    foreach(config IN ITEMS RELEASE ${configs})
      get_target_property(location ${target} IMPORTED_LOCATION_${config})
      if(location)
        break()
      endif()
    endforeach()
  endif()
  if(NOT location)
    get_target_property(location ${target} IMPORTED_LOCATION)
  endif()
  if(NOT location)
    set(location "")
  endif()
  set(${out_var} "${location}" PARENT_SCOPE)
endfunction()

# -L<dir> -l<name> for a library file; -L only when <dir> is not the linker's own.
function(_sekuire_pc_link_flags out_var file)
  get_filename_component(dir "${file}" DIRECTORY)
  get_filename_component(name "${file}" NAME)
  if(NOT name MATCHES "^lib(.+)\\.(so|a|dylib)(\\.[0-9.]+)?$")
    set(${out_var} "" PARENT_SCOPE)
    return()
  endif()
  set(lib "${CMAKE_MATCH_1}")
  set(implicit "")
  foreach(d IN LISTS CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES)
    get_filename_component(d "${d}" REALPATH)
    list(APPEND implicit "${d}")
  endforeach()
  get_filename_component(real "${dir}" REALPATH)
  set(flags "")
  if(NOT real IN_LIST implicit)
    set(flags "-L${dir} ")
  endif()
  set(${out_var} "${flags}-l${lib}" PARENT_SCOPE)
endfunction()

# Boost.JSON: compiled, no pkg-config module. A static Boost.JSON also needs the compiled
# Boost libraries it links (Boost.Container); a shared one brings them itself.
_sekuire_pc_imported_location(_sekuire_boost_json Boost::json)
_sekuire_pc_link_flags(_sekuire_pc_boost_libs "${_sekuire_boost_json}")
if(NOT _sekuire_pc_boost_libs)
  message(STATUS "sekuire: no sekuire.pc will be installed: the Boost::json target names no "
                 "library file (${_sekuire_boost_json})")
  return()
endif()
get_target_property(_sekuire_boost_json_type Boost::json TYPE)
if(_sekuire_boost_json_type STREQUAL "STATIC_LIBRARY")
  get_target_property(_sekuire_boost_deps Boost::json INTERFACE_LINK_LIBRARIES)
  foreach(_sekuire_dep IN LISTS _sekuire_boost_deps)
    if(TARGET "${_sekuire_dep}")
      _sekuire_pc_imported_location(_sekuire_dep_file "${_sekuire_dep}")
      if(_sekuire_dep_file)
        _sekuire_pc_link_flags(_sekuire_dep_flags "${_sekuire_dep_file}")
        string(APPEND _sekuire_pc_boost_libs " ${_sekuire_dep_flags}")
      endif()
    endif()
  endforeach()
endif()
_sekuire_pc_include_flags(_sekuire_pc_boost_cflags Boost::json)

# OpenSSL: through its module when that module is the OpenSSL find_package found;
# otherwise by its files.
find_package(PkgConfig QUIET)
pkg_check_modules(SEKUIRE_PC_OPENSSL QUIET openssl)
# The module SekuireFindHttplib.cmake found.
set(SEKUIRE_PC_REQUIRES "cpp-httplib >= 0.11")
set(_sekuire_pc_openssl_cflags "")
set(_sekuire_pc_openssl_libs "")
if(SEKUIRE_PC_OPENSSL_FOUND AND SEKUIRE_PC_OPENSSL_VERSION STREQUAL OPENSSL_VERSION)
  string(APPEND SEKUIRE_PC_REQUIRES ", openssl >= 1.1.1")
else()
  _sekuire_pc_include_flags(_sekuire_pc_openssl_cflags OpenSSL::SSL)
  _sekuire_pc_link_flags(_sekuire_ssl "${OPENSSL_SSL_LIBRARY}")
  _sekuire_pc_link_flags(_sekuire_crypto "${OPENSSL_CRYPTO_LIBRARY}")
  set(_sekuire_pc_openssl_libs " ${_sekuire_ssl} ${_sekuire_crypto}")
endif()

set(SEKUIRE_PC_CFLAGS "${_sekuire_pc_boost_cflags}${_sekuire_pc_openssl_cflags} -pthread")
set(SEKUIRE_PC_LIBS "${_sekuire_pc_boost_libs}${_sekuire_pc_openssl_libs} -pthread")
# Two stages: everything now, the prefix at install time (SEKUIRE_PC_PREFIX stays a
# placeholder in the first stage).
set(SEKUIRE_PC_PREFIX "@SEKUIRE_PC_PREFIX@")
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(SEKUIRE_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(SEKUIRE_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file("${CMAKE_CURRENT_LIST_DIR}/sekuire.pc.in" "${PROJECT_BINARY_DIR}/sekuire.pc.stage1" @ONLY)

if(IS_ABSOLUTE "${CMAKE_INSTALL_DATADIR}")
  set(_sekuire_pc_destination "${CMAKE_INSTALL_DATADIR}/pkgconfig")
else()
  set(_sekuire_pc_destination "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DATADIR}/pkgconfig")
endif()
install(CODE "
  set(SEKUIRE_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${PROJECT_BINARY_DIR}/sekuire.pc.stage1\" \"${PROJECT_BINARY_DIR}/pkgconfig/sekuire.pc\" @ONLY)
  file(INSTALL DESTINATION \"${_sekuire_pc_destination}\" TYPE FILE FILES \"${PROJECT_BINARY_DIR}/pkgconfig/sekuire.pc\")
")
set(SEKUIRE_PKGCONFIG_WRITTEN ON)
