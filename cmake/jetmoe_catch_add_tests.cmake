# Test discovery for catch_discover_tests(), run with cmake -P after each test binary is built.
# It replaces the script that ships with Debian's Catch2 2.13 (CatchAddTests.cmake), which
# treats a ';' in a test case name as a CMake list separator: the name is cut in two, and each
# half becomes a CTest test whose filter matches nothing. Here names are read line by line and
# never pass through an unquoted list, so "a; b" stays one test.
#
# Inputs (set with -D by catch_discover_tests): TEST_EXECUTABLE, TEST_EXECUTOR,
# TEST_WORKING_DIR, TEST_SPEC, TEST_EXTRA_ARGS, TEST_PROPERTIES, TEST_PREFIX, TEST_SUFFIX,
# TEST_LIST, CTEST_FILE. Reporter and output-dir options are not supported (jetmoe uses neither).

if(NOT EXISTS "${TEST_EXECUTABLE}")
  message(FATAL_ERROR "jetmoe test discovery: '${TEST_EXECUTABLE}' does not exist")
endif()

execute_process(
  COMMAND ${TEST_EXECUTOR} "${TEST_EXECUTABLE}" ${TEST_SPEC} --list-test-names-only
  OUTPUT_VARIABLE listing
  RESULT_VARIABLE status
  WORKING_DIRECTORY "${TEST_WORKING_DIR}")
# Catch2 v2 exits with the number of tests listed (mod 256), so only a crash is an error.
if(NOT status MATCHES "^[0-9]+$")
  message(FATAL_ERROR "jetmoe test discovery: running '${TEST_EXECUTABLE}' failed: ${status}\n${listing}")
endif()

# Quotes an argument for the generated script: a bracket argument keeps ';', spaces and quotes.
function(jetmoe_quote out value)
  set(${out} "[==[${value}]==]" PARENT_SCOPE)
endfunction()

set(script "")
set(names "")
string(LENGTH "${listing}" remaining)
while(remaining GREATER 0)
  string(FIND "${listing}" "\n" eol)
  if(eol EQUAL -1)
    set(line "${listing}")
    set(listing "")
  else()
    string(SUBSTRING "${listing}" 0 ${eol} line)
    math(EXPR next "${eol} + 1")
    string(SUBSTRING "${listing}" ${next} -1 listing)
  endif()
  string(LENGTH "${listing}" remaining)
  string(REGEX REPLACE "[\r]+$" "" line "${line}")
  if(line STREQUAL "")
    continue()
  endif()

  # Catch2's test-spec parser reads ',' as "or", '[' ']' as tags and '\' as an escape.
  set(filter "${line}")
  foreach(special "\\" "," "[" "]")
    string(REPLACE "${special}" "\\${special}" filter "${filter}")
  endforeach()

  jetmoe_quote(name_q "${TEST_PREFIX}${line}${TEST_SUFFIX}")
  jetmoe_quote(exe_q "${TEST_EXECUTABLE}")
  jetmoe_quote(filter_q "${filter}")
  jetmoe_quote(dir_q "${TEST_WORKING_DIR}")
  set(extra "")
  foreach(arg IN LISTS TEST_EXTRA_ARGS)
    jetmoe_quote(arg_q "${arg}")
    string(APPEND extra " ${arg_q}")
  endforeach()
  set(props "")
  foreach(prop IN LISTS TEST_PROPERTIES)
    jetmoe_quote(prop_q "${prop}")
    string(APPEND props " ${prop_q}")
  endforeach()
  set(executor "")
  foreach(arg IN LISTS TEST_EXECUTOR)
    jetmoe_quote(arg_q "${arg}")
    string(APPEND executor " ${arg_q}")
  endforeach()

  string(APPEND script "add_test(${name_q}${executor} ${exe_q} ${filter_q}${extra})\n")
  string(APPEND script "set_tests_properties(${name_q} PROPERTIES WORKING_DIRECTORY ${dir_q}${props})\n")
  string(APPEND names " ${name_q}")
endwhile()

if(TEST_LIST)
  string(APPEND script "set(${TEST_LIST}${names})\n")
endif()
file(WRITE "${CTEST_FILE}" "${script}")
