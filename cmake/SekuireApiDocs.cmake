# The API reference (docs/Doxyfile), when Doxygen is found:
#   sekuire_api_docs    target: writes <build dir>/api-docs/html/index.html (not part of ALL)
#   docs.api_reference  test (label docs, with the tests): the same run, which fails on any
#                       Doxygen warning, such as a public entity without documentation
# docs/Doxyfile holds every setting, with paths relative to the project's root; the file
# written here includes it and changes only where the output goes.
# Doxygen 1.9 or newer: WARN_AS_ERROR = FAIL_ON_WARNINGS (Debian 12 has 1.9.4).

find_package(Doxygen 1.9 QUIET)
if(NOT DOXYGEN_FOUND)
  message(STATUS "Doxygen 1.9 or newer not found: no sekuire_api_docs target and no "
                 "docs.api_reference test (scripts/setup-deps installs it)")
  return()
endif()

set(SEKUIRE_API_DOCS_DIR "${CMAKE_CURRENT_BINARY_DIR}/api-docs")
set(SEKUIRE_API_DOXYFILE "${SEKUIRE_API_DOCS_DIR}/Doxyfile")
file(MAKE_DIRECTORY "${SEKUIRE_API_DOCS_DIR}")
file(CONFIGURE OUTPUT "${SEKUIRE_API_DOXYFILE}" CONTENT [[
# Written by cmake/SekuireApiDocs.cmake: docs/Doxyfile, with the output in the build directory.
@INCLUDE = @PROJECT_SOURCE_DIR@/docs/Doxyfile
OUTPUT_DIRECTORY = @SEKUIRE_API_DOCS_DIR@
]] @ONLY)

add_custom_target(sekuire_api_docs
  COMMAND Doxygen::doxygen "${SEKUIRE_API_DOXYFILE}"
  COMMAND "${CMAKE_COMMAND}" -E echo "API reference: ${SEKUIRE_API_DOCS_DIR}/html/index.html"
  WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
  COMMENT "Generating the API reference with Doxygen (docs/Doxyfile)"
  VERBATIM)

if(SEKUIRE_BUILD_TESTS AND (NOT SEKUIRE_TEST_FILTER OR "docs" MATCHES "${SEKUIRE_TEST_FILTER}"))
  add_test(NAME docs.api_reference
           COMMAND Doxygen::doxygen "${SEKUIRE_API_DOXYFILE}"
           WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}")
  set_tests_properties(docs.api_reference PROPERTIES LABELS docs TIMEOUT 120)
endif()
