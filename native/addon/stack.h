// The stack executor's exports (stack.cc): stackPrepare, stackLayout, stackForwardBackward,
// stackForward, stackStatus.
#pragma once

#include <napi.h>

namespace hg {

void addStackExports(Napi::Env env, Napi::Object exports);

}  // namespace hg
