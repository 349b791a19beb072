# Installs jetmoe into a scratch prefix, then configures, builds and runs a tiny consumer
# project that uses find_package(jetmoe CONFIG). Run by CTest with cmake -P.
set(prefix "${BINARY_DIR}/prefix")
file(REMOVE_RECURSE "${BINARY_DIR}")

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()

run_step("configure jetmoe" ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${BINARY_DIR}/lib" -G "${GENERATOR}"
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DJETMOE_BUILD_TESTS=OFF -DJETMOE_BUILD_EXAMPLES=OFF
  -DJETMOE_BUILD_BENCHMARKS=OFF -DJETMOE_ENABLE_CUDA=OFF -DCMAKE_INSTALL_PREFIX=${prefix})
run_step("install jetmoe" ${CMAKE_COMMAND} --install "${BINARY_DIR}/lib")
run_step("configure consumer" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/consumer" -B "${BINARY_DIR}/consumer"
  -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run_step("build consumer" ${CMAKE_COMMAND} --build "${BINARY_DIR}/consumer")
run_step("run consumer" "${BINARY_DIR}/consumer/consumer")
message(STATUS "consumer built and ran against ${prefix}")
