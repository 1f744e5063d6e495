# Runs one packaging test of tests/consumers/CMakeLists.txt:
#
#   cmake -DSETTINGS=<build>/tests/consumers/consumer_settings.cmake -DMODE=<mode>
#         [-DCONFIG=<configuration>] -P run_consumer.cmake
#
# MODE is install, subdirectory, httplib_config, vcpkg_manifest or conan_syntax. SETTINGS
# holds the main build's generator, compiler, flags and paths. Every step's output is kept
# in <work>/<step>.log and shown when the step fails.
cmake_minimum_required(VERSION 3.20)

if(NOT SETTINGS OR NOT MODE)
  message(FATAL_ERROR "usage: cmake -DSETTINGS=<file> -DMODE=<mode> [-DCONFIG=<cfg>] -P run_consumer.cmake")
endif()
include("${SETTINGS}")

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

function(expect_contains text needle what)
  string(FIND "${text}" "${needle}" at)
  if(at EQUAL -1)
    fail("${what}: expected to find\n  ${needle}\n--- in ---\n${text}")
  endif()
endfunction()

function(expect_matches text regex what)
  if(NOT text MATCHES "${regex}")
    fail("${what}: expected a match for\n  ${regex}")
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
# <work>/prefix (the package must not depend on where it was installed).
function(install_sekuire prefix_var)
  set(staging "${work}/staging")
  set(STEP_HINT "cmake --install installs everything the build defines (the programs under tools/ too): build the main project first.")
  run_step(install out "${CMAKE_COMMAND}" --install "${SEKUIRE_BINARY_DIR}" --prefix "${staging}" ${config_args})
  unset(STEP_HINT)
  check_installed_tree("${staging}")
  set(prefix "${work}/prefix")
  file(RENAME "${staging}" "${prefix}")
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
  foreach(file IN ITEMS sekuireConfig.cmake sekuireConfigVersion.cmake sekuireTargets.cmake SekuireFindHttplib.cmake)
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
  expect_contains("${test_out}" "100% tests passed, 0 tests failed out of 1" "the consumer's ctest")
  expect_matches("${test_out}" "sekuire [0-9.]+ consumer: built sekuire::beacon[^\n]*connected" "the consumer's output")
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

# ---- JSON helpers -------------------------------------------------------------------------

function(json_get out_var json)
  string(JSON value ERROR_VARIABLE err GET "${json}" ${ARGN})
  if(err)
    string(JOIN "." path ${ARGN})
    fail("vcpkg.json: ${path}: ${err}")
  endif()
  set(${out_var} "${value}" PARENT_SCOPE)
endfunction()

function(json_type out_var json)
  string(JSON value ERROR_VARIABLE err TYPE "${json}" ${ARGN})
  if(err)
    set(value "MISSING")
  endif()
  set(${out_var} "${value}" PARENT_SCOPE)
endfunction()

function(json_expect json expected)
  json_get(value "${json}" ${ARGN})
  if(NOT value STREQUAL expected)
    string(JOIN "." path ${ARGN})
    fail("vcpkg.json: ${path} is '${value}', expected '${expected}'")
  endif()
endfunction()

# ---- the modes ----------------------------------------------------------------------------

if(MODE STREQUAL "install")
  install_sekuire(prefix)
  set(prefix_path "${prefix}" ${PREFIX_PATH})
  build_consumer("${CONSUMERS_DIR}/install" "${prefix_path}" configure_out test_out)
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

elseif(MODE STREQUAL "vcpkg_manifest")
  set(port "${SEKUIRE_SOURCE_DIR}/packaging/vcpkg/ports/sekuire")
  file(READ "${port}/vcpkg.json" manifest)
  json_expect("${manifest}" "sekuire" name)
  json_expect("${manifest}" "${SEKUIRE_PROJECT_VERSION}" version-semver)
  json_expect("${manifest}" "MIT" license)
  json_expect("${manifest}" "https://github.com/sekuire/sekuire-cpp" homepage)
  json_get(description "${manifest}" description)
  if(description STREQUAL "")
    fail("vcpkg.json: empty description")
  endif()
  foreach(key IN ITEMS version version-string version-date)
    json_type(type "${manifest}" ${key})
    if(NOT type STREQUAL "MISSING")
      fail("vcpkg.json: '${key}' besides 'version-semver' (a manifest has one version field)")
    endif()
  endforeach()

  # dependencies: the names, and the details of the object entries.
  string(JSON count ERROR_VARIABLE err LENGTH "${manifest}" dependencies)
  if(err)
    fail("vcpkg.json: dependencies: ${err}")
  endif()
  if(count EQUAL 0)
    fail("vcpkg.json: no dependencies")
  endif()
  set(found "")
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    json_type(type "${manifest}" dependencies ${i})
    if(type STREQUAL "STRING")
      json_get(dep "${manifest}" dependencies ${i})
      list(APPEND found "${dep}")
      continue()
    endif()
    json_get(dep "${manifest}" dependencies ${i} name)
    list(APPEND found "${dep}")
    if(dep STREQUAL "cpp-httplib")
      json_type(type "${manifest}" dependencies ${i} default-features)
      json_get(value "${manifest}" dependencies ${i} default-features)
      if(NOT type STREQUAL "BOOLEAN" OR value)
        fail("vcpkg.json: cpp-httplib needs \"default-features\": false")
      endif()
      json_expect("${manifest}" "openssl" dependencies ${i} features 0)
    elseif(dep MATCHES "^vcpkg-cmake(-config)?$")
      json_type(type "${manifest}" dependencies ${i} host)
      json_get(value "${manifest}" dependencies ${i} host)
      if(NOT type STREQUAL "BOOLEAN" OR NOT value)
        fail("vcpkg.json: ${dep} must be a host dependency")
      endif()
    endif()
  endforeach()
  list(SORT found)
  set(expected boost-json cpp-httplib openssl vcpkg-cmake vcpkg-cmake-config)
  if(NOT found STREQUAL expected)
    fail("vcpkg.json: dependencies are '${found}', expected '${expected}'")
  endif()

  file(READ "${port}/portfile.cmake" portfile)
  expect_matches("${portfile}" "set\\(VCPKG_BUILD_TYPE release\\)" "portfile.cmake (header-only)")
  expect_matches("${portfile}" "REF \"?v\\\${VERSION}\"?" "portfile.cmake (the release tag)")
  foreach(option IN ITEMS -DSEKUIRE_BUILD_TESTS=OFF -DSEKUIRE_BUILD_EXAMPLES=OFF -DSEKUIRE_BUILD_TOOLS=OFF
                          -DSEKUIRE_INSTALL=ON)
    expect_contains("${portfile}" "${option}" "portfile.cmake")
  endforeach()
  # The fixup must name the directory the install rules use (share/cmake/sekuire).
  expect_matches("${portfile}" "vcpkg_cmake_config_fixup\\([ \t\r\n]*PACKAGE_NAME[ \t\r\n]+sekuire[ \t\r\n]+CONFIG_PATH[ \t\r\n]+\"?share/cmake/sekuire\"?"
                 "portfile.cmake (vcpkg_cmake_config_fixup)")
  expect_contains("${portfile}" "vcpkg_install_copyright" "portfile.cmake")
  # As an overlay port from this checkout, the port builds the checkout it sits in.
  if(NOT portfile MATCHES "get_filename_component\\(SEKUIRE_CHECKOUT \"\\\${CMAKE_CURRENT_LIST_DIR}([^\"]*)\" ABSOLUTE\\)")
    fail("portfile.cmake: no checkout lookup (get_filename_component(SEKUIRE_CHECKOUT ...))")
  endif()
  get_filename_component(checkout "${port}${CMAKE_MATCH_1}" REALPATH)
  get_filename_component(source_dir "${SEKUIRE_SOURCE_DIR}" REALPATH)
  if(NOT checkout STREQUAL source_dir)
    fail("portfile.cmake: the checkout lookup finds '${checkout}', not '${source_dir}'")
  endif()
  foreach(f IN ITEMS include/sekuire/version.hpp CMakeLists.txt LICENSE)
    if(NOT EXISTS "${checkout}/${f}")
      fail("portfile.cmake: the checkout has no ${f}")
    endif()
  endforeach()
  expect_matches("${portfile}" "set\\(SOURCE_PATH \"\\\${SEKUIRE_CHECKOUT}\"\\)" "portfile.cmake (the overlay builds the checkout)")
  file(READ "${port}/usage" usage)
  expect_contains("${usage}" "find_package(sekuire CONFIG REQUIRED)" "usage")
  expect_matches("${usage}" "target_link_libraries\\([^)]*PRIVATE sekuire::sekuire\\)" "usage")
  message(STATUS "vcpkg port: manifest, portfile and usage agree with sekuire ${SEKUIRE_PROJECT_VERSION}")

elseif(MODE STREQUAL "conan_syntax")
  if(NOT PYTHON3)
    fail("no python3")
  endif()
  set(conan "${SEKUIRE_SOURCE_DIR}/packaging/conan")
  # Byte code goes to the work directory, not next to the sources.
  set(ENV{PYTHONPYCACHEPREFIX} "${work}/pycache")
  run_step(py_compile out "${PYTHON3}" -m py_compile "${conan}/conanfile.py" "${conan}/test_package/conanfile.py")

  file(READ "${conan}/conanfile.py" recipe)
  foreach(needle IN ITEMS
          "package_type = \"header-library\""
          "\"cpp-httplib/*:with_openssl\": True"
          "check_min_cppstd(self, 17)"
          "self.info.clear()"
          "\"cmake_file_name\", \"sekuire\""
          "\"cmake_target_name\", \"sekuire::sekuire\""
          "\"boost::json\"" "\"openssl::ssl\"" "\"openssl::crypto\"" "\"cpp-httplib::cpp-httplib\""
          "\"pthread\"")
    expect_contains("${recipe}" "${needle}" "packaging/conan/conanfile.py")
  endforeach()
  file(READ "${conan}/test_package/CMakeLists.txt" test_cmake)
  expect_contains("${test_cmake}" "find_package(sekuire REQUIRED CONFIG)" "packaging/conan/test_package/CMakeLists.txt")
  expect_contains("${test_cmake}" "sekuire::sekuire" "packaging/conan/test_package/CMakeLists.txt")
  # The recipe takes its version from version.hpp: it must agree with project().
  file(READ "${SEKUIRE_SOURCE_DIR}/include/sekuire/version.hpp" version_hpp)
  expect_contains("${version_hpp}" "#define SEKUIRE_VERSION_STRING \"${SEKUIRE_PROJECT_VERSION}\""
                  "include/sekuire/version.hpp must agree with project(sekuire VERSION)")
  message(STATUS "conan recipe and test_package compile; recipe fields present")

else()
  fail("unknown MODE '${MODE}'")
endif()
