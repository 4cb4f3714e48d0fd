// A helper addon for the sanitizer job (not part of handgrad): allocatedBytes() returns the bytes
// that the AddressSanitizer allocator holds right now (every malloc of the process, Node's own
// included), so scripts/sanitize/run.cjs can see memory that a loop of calls keeps reachable —
// which LeakSanitizer, reporting only unreachable blocks at exit, would not.
// Built by scripts/sanitize.mjs with -fsanitize=address beside build-asan/handgrad.node.
#include <node_api.h>

#include <cstddef>

// From <sanitizer/allocator_interface.h> (not shipped with every g++): the ASan runtime defines it.
extern "C" size_t __sanitizer_get_current_allocated_bytes(void);

static napi_value AllocatedBytes(napi_env env, napi_callback_info) {
  napi_value v;
  napi_create_double(env, static_cast<double>(__sanitizer_get_current_allocated_bytes()), &v);
  return v;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "allocatedBytes", NAPI_AUTO_LENGTH, AllocatedBytes, nullptr, &fn);
  napi_set_named_property(env, exports, "allocatedBytes", fn);
  return exports;
}
