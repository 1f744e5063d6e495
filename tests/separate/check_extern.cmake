# SPDX-License-Identifier: MIT
# The object file of a user of sekuire::sekuire_compiled refers to the default typedefs'
# members (U in nm), the options-only constructor included, and defines none of the ones it
# calls (they are compiled once, in the library).   cmake -DNM=<nm> -DOBJECTS=<object files> -P check_extern.cmake
if(NOT NM OR NOT OBJECTS)
  message(FATAL_ERROR "usage: cmake -DNM=<nm> -DOBJECTS=<object files> -P check_extern.cmake")
endif()
foreach(member IN ITEMS "basic_beacon<sekuire::httplib_transport, sekuire::system_clock, sekuire::credential_store, sekuire::auto_probe>::stop()"
                        "basic_beacon<sekuire::httplib_transport, sekuire::system_clock, sekuire::credential_store, sekuire::auto_probe>::get_status() const"
                        "basic_sdk<sekuire::httplib_transport, sekuire::system_clock, sekuire::credential_store, sekuire::auto_probe, sekuire::thread_pool_executor>::shutdown()"
                        "basic_sdk<sekuire::httplib_transport, sekuire::system_clock, sekuire::credential_store, sekuire::auto_probe, sekuire::thread_pool_executor>::basic_sdk<sekuire::sdk_options, void>(sekuire::sdk_options)")
  set(defined "")
  set(undefined "")
  foreach(object IN LISTS OBJECTS)
    execute_process(COMMAND "${NM}" -C --defined-only "${object}" OUTPUT_VARIABLE out RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${NM} failed on ${object}")
    endif()
    string(APPEND defined "${out}")
    execute_process(COMMAND "${NM}" -C --undefined-only "${object}" OUTPUT_VARIABLE out)
    string(APPEND undefined "${out}")
  endforeach()
  string(FIND "${defined}" "sekuire::${member}" d)
  string(FIND "${undefined}" "sekuire::${member}" u)
  if(NOT d EQUAL -1)
    message(FATAL_ERROR "the user's object file defines sekuire::${member}: it should only refer to it")
  endif()
  if(u EQUAL -1)
    message(FATAL_ERROR "the user's object file does not refer to sekuire::${member}")
  endif()
  message(STATUS "refers to, does not define: sekuire::${member}")
endforeach()

# Nor is what those members use compiled here: the credential file's code and the
# transport's construction live in the library only.
set(defined "")
foreach(object IN LISTS OBJECTS)
  execute_process(COMMAND "${NM}" -C --defined-only "${object}" OUTPUT_VARIABLE out)
  string(APPEND defined "${out}")
endforeach()
# The options' special members and the default policy gateway are compiled there too, so
# that a file building options does not instantiate every member's copy and destructor.
foreach(part IN ITEMS "sekuire::detail::cred_file::" "sekuire::httplib_transport::httplib_transport("
                      "sekuire::worker_core::" "sekuire::beacon_core::" "sekuire::beacon_options::beacon_options("
                      "sekuire::worker_options::worker_options(" "sekuire::sdk_options::sdk_options("
                      "sekuire::default_policy_gateway::" "sekuire::policy_gateway::model<")
  string(FIND "${defined}" "${part}" d)
  if(NOT d EQUAL -1)
    message(FATAL_ERROR "the user's object file defines ${part}...: it belongs to the compiled library")
  endif()
  message(STATUS "defines nothing of: ${part}")
endforeach()
