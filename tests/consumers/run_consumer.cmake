# Runs one packaging test of tests/consumers/CMakeLists.txt:
#
#   cmake -DSETTINGS=<build>/tests/consumers/consumer_settings.cmake -DMODE=<mode>
#         [-DCONFIG=<configuration>] -P run_consumer.cmake
#
# MODE is one of the modes at the end of this file (tests/consumers/CMakeLists.txt lists
# them). SETTINGS holds the main build's generator, compiler, flags and paths. Every step's
# output is kept in <work>/<step>.log and shown when the step fails. A mode that cannot run
# on this machine prints a line starting with "sekuire-skip: " and passes as skipped.
cmake_minimum_required(VERSION 3.20)

if(NOT SETTINGS OR NOT MODE)
  message(FATAL_ERROR "usage: cmake -DSETTINGS=<file> -DMODE=<mode> [-DCONFIG=<cfg>] -P run_consumer.cmake")
endif()
include("${SETTINGS}")
# Every program tools/ can build, and those this build has (TOOLS, from SETTINGS).
set(ALL_TOOLS sekuire-mock sekuire-run sekuire sekuire-fleet)

set(work "${WORK_ROOT}/${MODE}")
file(REMOVE_RECURSE "${work}")
file(MAKE_DIRECTORY "${work}")

function(fail text)
  message(FATAL_ERROR "${MODE}: ${text}")
endfunction()

# run_step(<name> <output-variable> <command>...): runs the command, keeps its output (both
# streams) in <work>/<name>.log and in the variable, and fails with it when it fails.
function(run_step name out_var)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  file(WRITE "${work}/${name}.log" "${out}")
  if(NOT rc STREQUAL "0")
    string(JOIN " " cmd ${ARGN})
    fail("step '${name}' failed (${rc}):\n  ${cmd}\n--- output ---\n${out}--- end of output ---\n${STEP_HINT}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# run_failing_step(<name> <output-variable> <command>...): the command must fail (a refusal
# under test); fails when it succeeds.
function(run_failing_step name out_var)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  file(WRITE "${work}/${name}.log" "${out}")
  if(rc STREQUAL "0")
    string(JOIN " " cmd ${ARGN})
    fail("step '${name}' succeeded but must fail:\n  ${cmd}\n--- output ---\n${out}--- end of output ---")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

function(skip text)
  message("sekuire-skip: ${MODE}: ${text}")
endfunction()

function(expect_contains text needle what)
  string(FIND "${text}" "${needle}" at)
  if(at EQUAL -1)
    fail("${what}: expected to find\n  ${needle}\n--- in ---\n${text}")
  endif()
endfunction()

function(expect_matches text regex what)
  if(NOT text MATCHES "${regex}")
    fail("${what}: expected a match for\n  ${regex}\n--- in ---\n${text}")
  endif()
endfunction()

set(config_args "")
set(ctest_config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
  set(ctest_config_args -C "${CONFIG}")
endif()

# ---- install ----------------------------------------------------------------------------

# Installs the main build into <work>/staging, checks it there, and moves it to
# <work>/prefix (the CMake package must not depend on where it was installed). With
# IN_PLACE, installs into <work>/prefix and leaves it there (the .pc file names its prefix).
function(install_sekuire prefix_var)
  set(prefix "${work}/prefix")
  if("IN_PLACE" IN_LIST ARGN)
    set(staging "${prefix}")
  else()
    set(staging "${work}/staging")
  endif()
  set(STEP_HINT "cmake --install installs everything the build defines (the programs under tools/ too): build the main project first.")
  run_step(install out "${CMAKE_COMMAND}" --install "${SEKUIRE_BINARY_DIR}" --prefix "${staging}" ${config_args})
  unset(STEP_HINT)
  check_installed_tree("${staging}")
  if(NOT staging STREQUAL prefix)
    file(RENAME "${staging}" "${prefix}")
  endif()
  set(${prefix_var} "${prefix}" PARENT_SCOPE)
endfunction()

# Runs a package version file the way find_package(sekuire <request>) does, from a consumer
# whose pointer size is <sizeof_void_p>; sets <out_var> to COMPATIBLE, INCOMPATIBLE or
# UNSUITABLE. (A function: the file's variables stay in its scope.)
function(run_version_file out_var file request sizeof_void_p)
  set(CMAKE_SIZEOF_VOID_P "${sizeof_void_p}")
  set(PACKAGE_FIND_NAME sekuire)
  set(PACKAGE_FIND_VERSION "${request}")
  string(REPLACE "." ";" parts "${request}.0.0.0")
  list(GET parts 0 PACKAGE_FIND_VERSION_MAJOR)
  list(GET parts 1 PACKAGE_FIND_VERSION_MINOR)
  list(GET parts 2 PACKAGE_FIND_VERSION_PATCH)
  set(PACKAGE_FIND_VERSION_TWEAK 0)
  string(REGEX MATCHALL "\\." dots "${request}")
  list(LENGTH dots count)
  math(EXPR PACKAGE_FIND_VERSION_COUNT "${count} + 1")
  unset(PACKAGE_VERSION_COMPATIBLE)
  unset(PACKAGE_VERSION_UNSUITABLE)
  include("${file}")
  if(PACKAGE_VERSION_UNSUITABLE)
    set(result UNSUITABLE)
  elseif(PACKAGE_VERSION_COMPATIBLE)
    set(result COMPATIBLE)
  else()
    set(result INCOMPATIBLE)
  endif()
  set(${out_var} "${result}" PARENT_SCOPE)
endfunction()

function(check_version_file file)
  string(REGEX MATCH "^[0-9]+\\.[0-9]+" same_minor "${SEKUIRE_PROJECT_VERSION}")
  foreach(sizeof_void_p IN ITEMS 4 8 16)
    run_version_file(result "${file}" "${same_minor}" ${sizeof_void_p})
    if(NOT result STREQUAL "COMPATIBLE")
      fail("sekuireConfigVersion.cmake: find_package(sekuire ${same_minor}) from a consumer with CMAKE_SIZEOF_VOID_P ${sizeof_void_p} is ${result}: write the file with ARCH_INDEPENDENT")
    endif()
  endforeach()
  # It still checks versions (SameMinorVersion): a newer minor or major is refused.
  string(REPLACE "." ";" parts "${SEKUIRE_PROJECT_VERSION}")
  list(GET parts 0 major)
  list(GET parts 1 minor)
  math(EXPR next_major "${major} + 1")
  math(EXPR next_minor "${minor} + 1")
  foreach(request IN ITEMS "${next_major}.0" "${major}.${next_minor}")
    run_version_file(result "${file}" "${request}" 8)
    if(result STREQUAL "COMPATIBLE")
      fail("sekuireConfigVersion.cmake accepts a request for version ${request}")
    endif()
  endforeach()
endfunction()

function(check_installed_tree prefix)
  set(inc "${prefix}/include/sekuire")
  foreach(dir IN ITEMS "${inc}" "${inc}/detail" "${inc}/testing")
    if(NOT IS_DIRECTORY "${dir}")
      fail("the install has no directory ${dir}")
    endif()
  endforeach()
  # Every public header of the source tree is installed, under the same name.
  file(GLOB_RECURSE source_headers RELATIVE "${SEKUIRE_SOURCE_DIR}/include" "${SEKUIRE_SOURCE_DIR}/include/*.hpp")
  file(GLOB_RECURSE installed_headers RELATIVE "${prefix}/include" "${prefix}/include/*.hpp")
  list(SORT source_headers)
  list(SORT installed_headers)
  if(NOT source_headers STREQUAL installed_headers)
    fail("installed headers differ from include/:\n  source:    ${source_headers}\n  installed: ${installed_headers}")
  endif()
  foreach(header IN ITEMS beacon.hpp worker.hpp testing/fake_clock.hpp testing/fake_transport.hpp testing/fixed_probe.hpp)
    if(NOT EXISTS "${inc}/${header}")
      fail("the install has no ${inc}/${header}")
    endif()
  endforeach()

  set(cmake_dir "${prefix}/share/cmake/sekuire")
  foreach(file IN ITEMS sekuireConfig.cmake sekuireConfigVersion.cmake sekuireTargets.cmake SekuireFindHttplib.cmake SekuireCompiled.cmake)
    if(NOT EXISTS "${cmake_dir}/${file}")
      fail("the install has no ${cmake_dir}/${file}")
    endif()
  endforeach()

  # A header-only package is architecture-independent: its version file must not compare
  # the pointer size of the consumer with that of the build. CMake's ARCH_INDEPENDENT
  # files still contain the CMAKE_SIZEOF_VOID_P code, behind an early return(), so the
  # file is run as find_package runs it, from a consumer of the other pointer size.
  check_version_file("${cmake_dir}/sekuireConfigVersion.cmake")

  # The export set is relocatable and carries no hand-written httplib definitions.
  file(READ "${cmake_dir}/sekuireTargets.cmake" targets_file)
  foreach(path IN ITEMS "${SEKUIRE_SOURCE_DIR}" "${SEKUIRE_BINARY_DIR}" "${prefix}")
    string(FIND "${targets_file}" "${path}" at)
    if(NOT at EQUAL -1)
      fail("sekuireTargets.cmake holds the absolute path ${path}")
    endif()
  endforeach()
  # httplib::httplib must be exported under that name: the consumer may find httplib another
  # way than the build did (an ALIAS would be exported under the name of its target).
  string(FIND "${targets_file}" "PkgConfig::" at)
  if(NOT at EQUAL -1)
    fail("sekuireTargets.cmake names a PkgConfig:: target instead of httplib::httplib (make httplib::httplib an INTERFACE IMPORTED target that links the pkg-config target, not an ALIAS of it)")
  endif()
  expect_contains("${targets_file}" "httplib::httplib" "sekuireTargets.cmake")
  string(FIND "${targets_file}" "CPPHTTPLIB_" at)
  if(NOT at EQUAL -1)
    fail("sekuireTargets.cmake names a CPPHTTPLIB_ macro: those must come from httplib::httplib")
  endif()
  expect_contains("${targets_file}" "sekuire::sekuire" "sekuireTargets.cmake")

  # The programs, when the build has them (docs/mock-backend.md, docs/sekuire-run.md).
  foreach(tool IN LISTS ALL_TOOLS)
    if(tool IN_LIST TOOLS AND NOT EXISTS "${prefix}/bin/${tool}")
      fail("the build has ${tool}, but cmake --install did not install ${prefix}/bin/${tool}")
    elseif(NOT tool IN_LIST TOOLS AND EXISTS "${prefix}/bin/${tool}")
      fail("the build has no ${tool}, yet ${prefix}/bin/${tool} was installed")
    endif()
  endforeach()
  if(NOT EXISTS "${prefix}/share/doc/sekuire/LICENSE")
    fail("the install has no share/doc/sekuire/LICENSE")
  endif()

  # The pkg-config module names the prefix it was installed to and takes cpp-httplib's
  # definitions from cpp-httplib's own module.
  set(pc "${prefix}/share/pkgconfig/sekuire.pc")
  if(HTTPLIB_VIA_PKGCONFIG)
    if(NOT EXISTS "${pc}")
      fail("the install has no ${pc} (cpp-httplib came through pkg-config)")
    endif()
    file(READ "${pc}" pc_text)
    expect_contains("${pc_text}" "prefix=${prefix}\n" "sekuire.pc (the install prefix)")
    expect_contains("${pc_text}" "Version: ${SEKUIRE_PROJECT_VERSION}\n" "sekuire.pc")
    expect_matches("${pc_text}" "\nRequires: cpp-httplib >= 0\\.11, openssl" "sekuire.pc (Requires)")
    expect_matches("${pc_text}" "\nLibs:[^\n]*-lboost_json" "sekuire.pc (Boost.JSON)")
    string(FIND "${pc_text}" "CPPHTTPLIB_" at)
    if(NOT at EQUAL -1)
      fail("sekuire.pc names a CPPHTTPLIB_ macro: those must come from cpp-httplib.pc")
    endif()
  elseif(EXISTS "${pc}")
    fail("${pc} was installed although cpp-httplib came as a CMake package")
  endif()
endfunction()

# ---- a consumer project -------------------------------------------------------------------

# build_consumer(<source dir> <prefix path list> <configure-output-var> <test-output-var>
#                [<extra cache line>...]): configures, builds and runs (ctest) one consumer
# with the main build's generator, compiler and flags.
function(build_consumer source prefix_path configure_var test_var)
  if(NOT step_prefix)
    set(step_prefix "")
  endif()
  set(build "${work}/${step_prefix}build")
  set(init "")
  macro(cache name type value)
    string(APPEND init "set(${name} [==[${value}]==] CACHE ${type} \"\")\n")
  endmacro()
  cache(CMAKE_CXX_COMPILER FILEPATH "${CXX_COMPILER}")
  cache(CMAKE_CXX_FLAGS STRING "${CXX_FLAGS}")
  cache(CMAKE_EXE_LINKER_FLAGS STRING "${EXE_LINKER_FLAGS}")
  if(BUILD_TYPE)
    cache(CMAKE_BUILD_TYPE STRING "${BUILD_TYPE}")
  endif()
  if(CXX_STANDARD)
    cache(CMAKE_CXX_STANDARD STRING "${CXX_STANDARD}")
  endif()
  if(MAKE_PROGRAM)
    cache(CMAKE_MAKE_PROGRAM FILEPATH "${MAKE_PROGRAM}")
  endif()
  cache(CMAKE_PREFIX_PATH STRING "${prefix_path}")
  # Only what the prefix path names: no package registry.
  cache(CMAKE_FIND_USE_PACKAGE_REGISTRY BOOL OFF)
  cache(SEKUIRE_CONSUMER_WARNINGS STRING "${CONSUMER_WARNINGS}")
  foreach(line IN LISTS ARGN)
    string(APPEND init "${line}\n")
  endforeach()
  file(WRITE "${work}/${step_prefix}init-cache.cmake" "${init}")

  set(generator_args -G "${GENERATOR}")
  if(GENERATOR_PLATFORM)
    list(APPEND generator_args -A "${GENERATOR_PLATFORM}")
  endif()
  if(GENERATOR_TOOLSET)
    list(APPEND generator_args -T "${GENERATOR_TOOLSET}")
  endif()
  run_step(${step_prefix}configure configure_out "${CMAKE_COMMAND}" -C "${work}/${step_prefix}init-cache.cmake"
           ${generator_args} -S "${source}" -B "${build}")
  run_step(${step_prefix}build build_out "${CMAKE_COMMAND}" --build "${build}" ${config_args})
  run_step(${step_prefix}test test_out "${CTEST_COMMAND}" --test-dir "${build}" ${ctest_config_args} --output-on-failure -V)
  # The consumer registers exactly one test (sekuire's own tests stay off) and says what it
  # checked.
  expect_matches("${test_out}" "100% tests passed, 0 tests failed out of [12]\n" "the consumer's ctest")
  expect_matches("${test_out}" "sekuire [0-9.]+ consumer: built sekuire::beacon \\(not started\\) and https transports \\(httplib, beast\\)[^\n]*connected" "the consumer's output")
  set(${configure_var} "${configure_out}" PARENT_SCOPE)
  set(${test_var} "${test_out}" PARENT_SCOPE)
endfunction()

function(report_consumer configure_out test_out)
  if(test_out MATCHES "(sekuire [0-9.]+ consumer: [^\n]*)")
    message(STATUS "${CMAKE_MATCH_1}")
  endif()
  if(configure_out MATCHES "sekuire-consumer: httplib_DIR=([^\n]*)")
    message(STATUS "cpp-httplib found through: ${CMAKE_MATCH_1}")
  endif()
endfunction()

# build_pkgconfig_consumer(<PKG_CONFIG_PATH> <expected include flag or "">): builds
# install/main.cpp with the main build's compiler and flags plus nothing but
# `pkg-config --cflags --libs sekuire`, and runs it.
function(build_pkgconfig_consumer pc_path include_flag)
  if(NOT PKG_CONFIG)
    fail("no pkg-config program (scripts/setup-deps installs pkg-config)")
  endif()
  if(pc_path)
    set(ENV{PKG_CONFIG_PATH} "${pc_path}")
  endif()
  run_step(pkg-config flags "${PKG_CONFIG}" --cflags --libs sekuire)
  string(STRIP "${flags}" flags)
  # cpp-httplib's definitions arrive through its own module (sekuire.pc names none: checked
  # above), whatever they are: each -D of `pkg-config --cflags cpp-httplib` is in the flags.
  run_step(pkg-config-httplib httplib_flags "${PKG_CONFIG}" --cflags cpp-httplib)
  separate_arguments(httplib_flags UNIX_COMMAND "${httplib_flags}")
  set(httplib_defines "")
  foreach(flag IN LISTS httplib_flags)
    if(flag MATCHES "^-D")
      list(APPEND httplib_defines "${flag}")
      expect_contains("${flags}" "${flag}" "pkg-config --cflags --libs sekuire (from cpp-httplib.pc)")
    endif()
  endforeach()
  if(NOT httplib_defines)
    fail("cpp-httplib.pc defines nothing (Debian's defines its TLS, zlib and brotli support): this check would prove nothing")
  endif()
  expect_contains("${flags}" "-lboost_json" "pkg-config --cflags --libs sekuire")
  if(include_flag)
    expect_contains("${flags}" "${include_flag}" "pkg-config --cflags --libs sekuire")
  endif()
  separate_arguments(pc_flags UNIX_COMMAND "${flags}")
  separate_arguments(cxx_flags UNIX_COMMAND "${CXX_FLAGS}")
  separate_arguments(ld_flags UNIX_COMMAND "${EXE_LINKER_FLAGS}")
  set(standard 17)
  if(CXX_STANDARD)
    set(standard "${CXX_STANDARD}")
  endif()
  set(program "${work}/pkgconfig-consumer")
  run_step(pkgconfig-build out "${CXX_COMPILER}" ${cxx_flags} -std=c++${standard} ${CONSUMER_WARNINGS}
           "${CONSUMERS_DIR}/install/main.cpp" -o "${program}" ${pc_flags} ${ld_flags})
  run_step(pkgconfig-run out "${program}")
  expect_matches("${out}" "sekuire [0-9.]+ consumer: built sekuire::beacon \\(not started\\) and https transports \\(httplib, beast\\)[^\n]*connected" "the pkg-config consumer's output")
  message(STATUS "pkg-config consumer: ${flags}")
endfunction()

# make_source_archive(<out-var>): the source archive of HEAD, laid out as GitHub serves a
# tag's (sekuire-cpp-<version>/...). Without git (or outside a checkout), the same layout
# from the source tree's files.
function(make_source_archive out_var)
  set(name "sekuire-cpp-${SEKUIRE_PROJECT_VERSION}")
  set(archive "${work}/${name}.tar.gz")
  set(rc 1)
  if(GIT)
    execute_process(COMMAND "${GIT}" -C "${SEKUIRE_SOURCE_DIR}" archive --format=tar.gz --prefix=${name}/
                            -o "${archive}" HEAD
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    file(WRITE "${work}/git-archive.log" "${out}")
  endif()
  if(NOT rc STREQUAL "0")
    message(STATUS "git archive HEAD is not available: archiving the source tree's files")
    file(MAKE_DIRECTORY "${work}/tree/${name}")
    foreach(item IN ITEMS CMakeLists.txt LICENSE cmake include)
      file(COPY "${SEKUIRE_SOURCE_DIR}/${item}" DESTINATION "${work}/tree/${name}")
    endforeach()
    execute_process(COMMAND "${CMAKE_COMMAND}" -E tar czf "${archive}" "${name}"
                    WORKING_DIRECTORY "${work}/tree" RESULT_VARIABLE rc)
    if(NOT rc STREQUAL "0")
      fail("could not archive the source tree")
    endif()
  endif()
  set(${out_var} "${archive}" PARENT_SCOPE)
endfunction()

# A digest of the files under <dir>, to prove a refused run wrote nothing.
function(tree_digest out_var dir)
  file(GLOB_RECURSE files RELATIVE "${dir}" "${dir}/*")
  list(SORT files)
  set(all "")
  foreach(f IN LISTS files)
    file(SHA256 "${dir}/${f}" h)
    string(APPEND all "${f} ${h}\n")
  endforeach()
  string(SHA256 digest "${all}")
  set(${out_var} "${digest}" PARENT_SCOPE)
endfunction()

# ---- the modes ----------------------------------------------------------------------------

if(MODE STREQUAL "install")
  install_sekuire(prefix)
  set(prefix_path "${prefix}" ${PREFIX_PATH})
  build_consumer("${CONSUMERS_DIR}/install" "${prefix_path}" configure_out test_out
                 "set(SEKUIRE_CONSUMER_SEPARATE ON CACHE BOOL \"\")")
  expect_contains("${test_out}" "100% tests passed, 0 tests failed out of 2"
                  "the consumer built with sekuire::sekuire_compiled must run too")
  expect_contains("${configure_out}"
                  "sekuire-consumer: sekuire ${SEKUIRE_PROJECT_VERSION} from ${prefix}/share/cmake/sekuire"
                  "find_package(sekuire) must use the fresh install")
  report_consumer("${configure_out}" "${test_out}")

elseif(MODE STREQUAL "httplib_config")
  install_sekuire(prefix)
  set(stub "${CONSUMERS_DIR}/httplib_config")
  set(prefix_path "${stub}" "${prefix}" ${PREFIX_PATH})
  # Twice: the stub with the version of the library it wraps, then reporting a newer minor
  # version, as vcpkg ships (the version file of upstream cpp-httplib accepts the same minor
  # version only).
  foreach(stub_version IN ITEMS "" "0.99.0")
    if(stub_version)
      set(step_prefix "newer-")
    else()
      set(step_prefix "")
    endif()
    build_consumer("${CONSUMERS_DIR}/install" "${prefix_path}" configure_out test_out
                   "set(SEKUIRE_TEST_HTTPLIB_STUB_VERSION [==[${stub_version}]==] CACHE STRING \"\")")
    expect_contains("${configure_out}"
                    "sekuire-consumer: sekuire ${SEKUIRE_PROJECT_VERSION} from ${prefix}/share/cmake/sekuire"
                    "find_package(sekuire) must use the fresh install")
    # SekuireFindHttplib took its CONFIG branch: httplib::httplib is the stub package's.
    expect_contains("${configure_out}" "sekuire-consumer: httplib_DIR=${stub}/httplib"
                    "httplib ${stub_version} must be found through its CMake package (the stub in ${stub})")
    report_consumer("${configure_out}" "${test_out}")
  endforeach()

elseif(MODE STREQUAL "subdirectory")
  build_consumer("${CONSUMERS_DIR}/subdirectory" "${PREFIX_PATH}" configure_out test_out
                 "set(SEKUIRE_SOURCE_TREE [==[${SEKUIRE_SOURCE_DIR}]==] CACHE PATH \"\")")
  expect_contains("${configure_out}" "sekuire-consumer: sekuire from ${SEKUIRE_SOURCE_DIR}"
                  "add_subdirectory must use this source tree")
  report_consumer("${configure_out}" "${test_out}")

elseif(MODE STREQUAL "pkgconfig")
  if(NOT HTTPLIB_VIA_PKGCONFIG)
    skip("cpp-httplib came as a CMake package: no sekuire.pc is installed (docs/packaging.md)")
    return()
  endif()
  install_sekuire(prefix IN_PLACE)
  build_pkgconfig_consumer("${prefix}/share/pkgconfig" "-I${prefix}/include")

elseif(MODE STREQUAL "deb")
  # Installs the Debian package into this system, uses it, and removes it again.
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  find_program(DPKG dpkg)
  find_program(DPKG_DEB dpkg-deb)
  find_program(DPKG_QUERY dpkg-query)
  if(NOT uid STREQUAL "0")
    skip("dpkg -i needs root (CI runs it as root on a throwaway machine): not run")
    return()
  endif()
  if(NOT DPKG OR NOT DPKG_DEB OR NOT DPKG_QUERY)
    skip("not a Debian system (no dpkg): not run")
    return()
  endif()
  if(NOT HTTPLIB_VIA_PKGCONFIG)
    skip("cpp-httplib came as a CMake package, not Debian's: not run")
    return()
  endif()
  set(package libsekuire-dev)
  execute_process(COMMAND "${DPKG_QUERY}" -W "-f=\${Status}" ${package}
                  OUTPUT_VARIABLE status ERROR_QUIET)
  if(status MATCHES "installed|unpacked|half|config-files")
    skip("${package} is already on this system (${status}): the test leaves it alone")
    return()
  endif()
  foreach(path IN ITEMS /usr/include/sekuire /usr/share/cmake/sekuire /usr/share/pkgconfig/sekuire.pc
                        /usr/bin/sekuire-mock /usr/bin/sekuire-run /usr/bin/sekuire /usr/bin/sekuire-fleet)
    if(EXISTS "${path}")
      skip("${path} exists outside any package: installing ${package} would replace it, and removing it would delete it")
      return()
    endif()
  endforeach()

  set(STEP_HINT "CPack installs everything the build defines: build the main project first.")
  run_step(cpack out "${CPACK_COMMAND}" -G DEB --config "${SEKUIRE_BINARY_DIR}/CPackConfig.cmake"
           -B "${work}/cpack" ${ctest_config_args})
  unset(STEP_HINT)
  file(GLOB debs "${work}/cpack/${package}_${SEKUIRE_PROJECT_VERSION}_*.deb")
  list(LENGTH debs count)
  if(NOT count EQUAL 1)
    fail("expected one ${package}_${SEKUIRE_PROJECT_VERSION}_<arch>.deb in ${work}/cpack, found '${debs}'")
  endif()
  set(deb "${debs}")

  # The control fields.
  run_step(deb-fields fields "${DPKG_DEB}" -f "${deb}" Package Version Architecture Maintainer Depends Suggests Section)
  expect_contains("${fields}" "Package: ${package}\n" "the package's control fields")
  expect_contains("${fields}" "Version: ${SEKUIRE_PROJECT_VERSION}\n" "the package's control fields")
  expect_matches("${fields}" "Maintainer: [^\n]+" "the package's control fields")
  expect_contains("${fields}" "Suggests: libspdlog-dev\n" "the package's control fields (the optional spdlog adapter)")
  expect_matches("${fields}" "Depends: libboost-json1\\.[0-9]+-dev, libcpp-httplib-dev \\(>= 0\\.11\\), libssl-dev[^\n]*, pkg-config\n"
                 "the package's Depends")
  execute_process(COMMAND "${DPKG}" --print-architecture OUTPUT_VARIABLE arch OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(TOOLS)
    expect_contains("${fields}" "Architecture: ${arch}\n" "a package with programs is for this architecture")
  else()
    expect_contains("${fields}" "Architecture: all\n" "a package of headers alone is for all architectures")
  endif()
  # The files: all under /usr, with headers, CMake package, .pc and the programs.
  run_step(deb-contents contents "${DPKG_DEB}" -c "${deb}")
  string(REGEX MATCHALL "[^ \n]+\n" paths "${contents}")
  foreach(path IN LISTS paths)
    string(STRIP "${path}" path)
    if(NOT path MATCHES "^\\./usr/")
      fail("the package installs ${path}, outside /usr")
    endif()
  endforeach()
  set(expected ./usr/include/sekuire/beacon.hpp ./usr/include/sekuire/testing/mock_backend.hpp
               ./usr/share/cmake/sekuire/sekuireConfig.cmake ./usr/share/cmake/sekuire/sekuireTargets.cmake
               ./usr/share/pkgconfig/sekuire.pc)
  foreach(tool IN LISTS TOOLS)
    list(APPEND expected ./usr/bin/${tool})
  endforeach()
  foreach(path IN LISTS expected)
    expect_contains("${contents}" " ${path}\n" "the package's files")
  endforeach()

  # Install, use (in a child process, so that a failure there still reaches the removal),
  # remove: the system is left as it was found.
  execute_process(COMMAND "${DPKG}" -i "${deb}" RESULT_VARIABLE install_rc OUTPUT_VARIABLE install_out ERROR_VARIABLE install_out)
  file(WRITE "${work}/dpkg-install.log" "${install_out}")
  set(use_rc "not run")
  set(use_out "")
  if(install_rc STREQUAL "0")
    execute_process(COMMAND "${CMAKE_COMMAND}" "-DSETTINGS=${SETTINGS}" -DMODE=deb_use "-DCONFIG=${CONFIG}"
                            -P "${CMAKE_CURRENT_LIST_FILE}"
                    TIMEOUT 420 RESULT_VARIABLE use_rc OUTPUT_VARIABLE use_out ERROR_VARIABLE use_out)
    file(WRITE "${work}/use.log" "${use_out}")
  endif()
  execute_process(COMMAND "${DPKG}" -r ${package} RESULT_VARIABLE remove_rc OUTPUT_VARIABLE remove_out ERROR_VARIABLE remove_out)
  file(WRITE "${work}/dpkg-remove.log" "${remove_out}")
  execute_process(COMMAND "${DPKG_QUERY}" -W "-f=\${Status}" ${package} OUTPUT_VARIABLE status ERROR_QUIET)
  if(NOT install_rc STREQUAL "0")
    fail("dpkg -i ${deb} failed (${install_rc}):\n${install_out}\ndpkg -r: ${remove_out}")
  endif()
  if(NOT use_rc STREQUAL "0")
    fail("using the installed package failed (${use_rc}):\n${use_out}\ndpkg -r: ${remove_out}")
  endif()
  if(NOT remove_rc STREQUAL "0" OR status MATCHES "installed|unpacked|half")
    fail("dpkg -r ${package} failed (${remove_rc}, status '${status}'):\n${remove_out}")
  endif()
  foreach(path IN ITEMS /usr/include/sekuire /usr/share/cmake/sekuire /usr/share/pkgconfig/sekuire.pc
                        /usr/bin/sekuire-mock /usr/bin/sekuire-run /usr/bin/sekuire /usr/bin/sekuire-fleet)
    if(EXISTS "${path}")
      fail("${path} is left after dpkg -r ${package}")
    endif()
  endforeach()
  string(REGEX MATCHALL "-- (sekuire [0-9.]+ consumer|pkg-config consumer|installed program)[^\n]*" lines "${use_out}")
  foreach(line IN LISTS lines)
    string(REGEX REPLACE "^-- " "" line "${line}")
    message(STATUS "${line}")
  endforeach()
  message(STATUS "${deb}: installed with dpkg -i, used by both consumers, removed with dpkg -r")

elseif(MODE STREQUAL "deb_use")
  # Child of MODE deb, with libsekuire-dev installed: find_package and pkg-config find it in
  # /usr, and the programs run.
  build_consumer("${CONSUMERS_DIR}/install" "${PREFIX_PATH}" configure_out test_out)
  expect_contains("${configure_out}" "sekuire-consumer: sekuire ${SEKUIRE_PROJECT_VERSION} from /usr/share/cmake/sekuire"
                  "find_package(sekuire) must find the Debian package")
  report_consumer("${configure_out}" "${test_out}")
  build_pkgconfig_consumer("" "")
  foreach(tool IN LISTS TOOLS)
    run_step(${tool}-help out "/usr/bin/${tool}" --help)
    string(TOLOWER "${out}" lower)
    expect_contains("${lower}" "usage: ${tool}" "/usr/bin/${tool} --help")
  endforeach()
  if(TOOLS)
    string(JOIN ", " names ${TOOLS})
    message(STATUS "installed programs: ${names} in /usr/bin answer --help")
  endif()

elseif(MODE STREQUAL "vcpkg_manifest")
  if(NOT PYTHON3)
    fail("no python3")
  endif()
  run_step(check out "${PYTHON3}" "${CONSUMERS_DIR}/check_packaging.py" vcpkg-overlay
           "${SEKUIRE_SOURCE_DIR}" "${SEKUIRE_PROJECT_VERSION}")
  message(STATUS "${out}")

elseif(MODE STREQUAL "conan_syntax")
  if(NOT PYTHON3)
    fail("no python3")
  endif()
  set(conan "${SEKUIRE_SOURCE_DIR}/packaging/conan/all")
  # Byte code goes to the work directory, not next to the sources.
  set(ENV{PYTHONPYCACHEPREFIX} "${work}/pycache")
  run_step(py_compile out "${PYTHON3}" -m py_compile "${conan}/conanfile.py" "${conan}/test_package/conanfile.py")
  run_step(check out "${PYTHON3}" "${CONSUMERS_DIR}/check_packaging.py" conan-recipe "${conan}")
  message(STATUS "${out}")
  if(EXISTS "${conan}/conandata.yml" OR EXISTS "${SEKUIRE_SOURCE_DIR}/packaging/conan/config.yml")
    fail("packaging/conan holds a conandata.yml or config.yml: scripts/release-port writes them at release")
  endif()
  # The version a release takes from its tag must agree with the headers and project().
  file(READ "${SEKUIRE_SOURCE_DIR}/include/sekuire/version.hpp" version_hpp)
  expect_contains("${version_hpp}" "#define SEKUIRE_VERSION_STRING \"${SEKUIRE_PROJECT_VERSION}\""
                  "include/sekuire/version.hpp must agree with project(sekuire VERSION)")

elseif(MODE STREQUAL "release_port")
  if(NOT PYTHON3)
    fail("no python3")
  endif()
  set(ENV{PYTHONPYCACHEPREFIX} "${work}/pycache")
  set(script "${SEKUIRE_SOURCE_DIR}/scripts/release-port")
  set(check "${CONSUMERS_DIR}/check_packaging.py")
  set(version "${SEKUIRE_PROJECT_VERSION}")
  set(tag "v${version}")
  make_source_archive(archive)
  set(out "${work}/out")
  run_step(release out_text "${PYTHON3}" "${script}" --tag ${tag} --archive "${archive}" --out "${out}")
  run_step(check-vcpkg vcpkg_summary "${PYTHON3}" "${check}" vcpkg-registry "${SEKUIRE_SOURCE_DIR}" "${out}" ${version} "${archive}")
  run_step(check-conan conan_summary "${PYTHON3}" "${check}" conan-release "${out}" ${version} "${archive}"
           "https://github.com/sekuire/sekuire-cpp/archive/${tag}.tar.gz")
  message(STATUS "${vcpkg_summary}")
  message(STATUS "${conan_summary}")

  # Run again with the same archive: the same files.
  tree_digest(before "${out}")
  run_step(release-again out_text "${PYTHON3}" "${script}" --tag ${tag} --archive "${archive}" --out "${out}")
  tree_digest(after "${out}")
  if(NOT before STREQUAL after)
    fail("a second run with the same archive changed ${out}")
  endif()

  # The checker refuses a placeholder hash (the old port's SHA512 0).
  file(COPY "${out}/vcpkg" DESTINATION "${work}/placeholder")
  file(READ "${work}/placeholder/vcpkg/ports/sekuire/portfile.cmake" portfile)
  string(REGEX REPLACE "SHA512 [0-9a-f]+" "SHA512 0" portfile "${portfile}")
  file(WRITE "${work}/placeholder/vcpkg/ports/sekuire/portfile.cmake" "${portfile}")
  run_failing_step(check-placeholder text "${PYTHON3}" "${check}" vcpkg-registry "${SEKUIRE_SOURCE_DIR}" "${work}/placeholder" ${version} "${archive}")
  expect_contains("${text}" "is a placeholder, not a SHA-512" "the check of a port with SHA512 0")

  # A port fix is a new port-version, added beside the first entry; Conan's files stay.
  file(COPY "${out}/" DESTINATION "${work}/merged")
  run_step(release-port-version out_text "${PYTHON3}" "${script}" --tag ${tag} --archive "${archive}"
           --out "${work}/merged" --port-version 1)
  file(READ "${work}/merged/vcpkg/versions/s-/sekuire.json" versions)
  string(JSON first GET "${versions}" versions 0 port-version)
  string(JSON second GET "${versions}" versions 1 port-version)
  string(JSON count LENGTH "${versions}" versions)
  file(READ "${work}/merged/vcpkg/versions/baseline.json" baseline)
  string(JSON baseline_pv GET "${baseline}" default sekuire port-version)
  file(READ "${work}/merged/vcpkg/ports/sekuire/vcpkg.json" manifest)
  string(JSON manifest_pv GET "${manifest}" port-version)
  if(NOT count EQUAL 2 OR NOT first EQUAL 1 OR NOT second EQUAL 0 OR NOT baseline_pv EQUAL 1 OR NOT manifest_pv EQUAL 1)
    fail("--port-version 1: versions ${versions}, baseline port-version ${baseline_pv}, manifest port-version ${manifest_pv}")
  endif()

  # Conan from a local archive: the file:// URL goes to conandata.yml.
  set(url "file://${archive}")
  run_step(release-local out_text "${PYTHON3}" "${script}" --tag ${tag} --archive "${archive}" --out "${work}/local" --url "${url}")
  run_step(check-local text "${PYTHON3}" "${check}" conan-release "${work}/local" ${version} "${archive}" "${url}")

  # Bad input: a clear error, exit code 1, and nothing written.
  file(WRITE "${work}/not-an-archive.tar.gz" "this is not a tar archive\n")
  file(COPY "${out}/" DESTINATION "${work}/conflict")
  file(READ "${work}/conflict/conan/recipes/sekuire/all/conandata.yml" conandata)
  string(REGEX REPLACE "sha256: \"[0-9a-f]+\"" "sha256: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"" conandata "${conandata}")
  file(WRITE "${work}/conflict/conan/recipes/sekuire/all/conandata.yml" "${conandata}")
  file(COPY "${out}/" DESTINATION "${work}/tree-conflict")
  file(READ "${work}/tree-conflict/vcpkg/versions/s-/sekuire.json" versions)
  string(REGEX REPLACE "\"git-tree\": \"[0-9a-f]+\"" "\"git-tree\": \"0123456789012345678901234567890123456789\"" versions "${versions}")
  file(WRITE "${work}/tree-conflict/vcpkg/versions/s-/sekuire.json" "${versions}")
  set(cases
    "no-v|${version}|${archive}|out|is not of the form v<major>.<minor>.<patch>"
    "other-version|v9.8.7|${archive}|out|holds version ${version} \\(include/sekuire/version.hpp\\), not 9.8.7"
    "not-archive|${tag}|${work}/not-an-archive.tar.gz|out|is not a gzip-compressed tar archive"
    "missing|${tag}|${work}/missing.tar.gz|out|cannot read the archive"
    "conan-conflict|${tag}|${archive}|conflict|already has ${version} with sha256 .* a released archive never changes"
    "vcpkg-conflict|${tag}|${archive}|tree-conflict|already has ${version}#0 with git-tree 0123456789012345678901234567890123456789")
  foreach(case IN LISTS cases)
    string(REPLACE "|" ";" fields "${case}")
    list(GET fields 0 name)
    list(GET fields 1 case_tag)
    list(GET fields 2 case_archive)
    list(GET fields 3 case_out)
    list(GET fields 4 expected)
    tree_digest(before "${work}/${case_out}")
    run_failing_step(refuse-${name} text "${PYTHON3}" "${script}" --tag "${case_tag}" --archive "${case_archive}"
                     --out "${work}/${case_out}")
    expect_matches("${text}" "release-port: error: [^\n]*${expected}" "release-port's refusal (${name})")
    tree_digest(after "${work}/${case_out}")
    if(NOT before STREQUAL after)
      fail("release-port (${name}) refused but changed ${work}/${case_out}")
    endif()
  endforeach()
  message(STATUS "release-port: idempotent, port-version merge, file:// URL for Conan, 6 refusals leave the output untouched")

elseif(MODE STREQUAL "windows_refused")
  # A toolchain that tells CMake the target is Windows, with this build's compiler (nothing
  # is compiled: configuring must stop first).
  file(WRITE "${work}/windows.cmake" "set(CMAKE_SYSTEM_NAME Windows)\nset(CMAKE_CXX_COMPILER [==[${CXX_COMPILER}]==])\nset(CMAKE_CXX_COMPILER_WORKS TRUE)\n")
  set(generator_args -G "${GENERATOR}")
  if(MAKE_PROGRAM)
    list(APPEND generator_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  set(posix_only "sekuire supports POSIX systems only")
  run_failing_step(configure-source out "${CMAKE_COMMAND}" ${generator_args} -S "${SEKUIRE_SOURCE_DIR}" -B "${work}/source-build"
                   "-DCMAKE_TOOLCHAIN_FILE=${work}/windows.cmake")
  expect_matches("${out}" "CMake Error at CMakeLists.txt:[0-9]+ \\(message\\):" "configuring sekuire for Windows")
  string(REGEX REPLACE "[ \n]+" " " flat "${out}")
  expect_contains("${flat}" "${posix_only} (Linux, tested on Debian 12): its credential file store uses flock()" "configuring sekuire for Windows")
  # An installed package says the same through find_package.
  file(MAKE_DIRECTORY "${work}/package")
  file(COPY "${SEKUIRE_BINARY_DIR}/sekuireConfig.cmake" "${SEKUIRE_BINARY_DIR}/sekuireConfigVersion.cmake"
       DESTINATION "${work}/package")
  run_failing_step(configure-consumer out "${CMAKE_COMMAND}" ${generator_args} -S "${CONSUMERS_DIR}/windows" -B "${work}/consumer-build"
                   "-DCMAKE_TOOLCHAIN_FILE=${work}/windows.cmake" "-Dsekuire_DIR=${work}/package")
  string(REGEX REPLACE "[ \n]+" " " flat "${out}")
  expect_contains("${flat}" "${posix_only}: its credential file store uses flock()" "find_package(sekuire) for Windows")
  message(STATUS "configuring for Windows stops with: ${posix_only} (source tree and installed package)")

else()
  fail("unknown MODE '${MODE}'")
endif()
