// The core addon's kernel primitives: the very functions of native/core/{blas,kernels}.h that the
// fused step runs, one export each, for the layer stack (lib/layers through lib/kernels/native.ts).
// Every length is checked against the sizes passed, and every output against every input for
// shared memory, so a wrong call from JS is a TypeError/RangeError, never a read past a buffer.
#pragma once

#include <napi.h>

namespace hg {

// Adds broadcastRows, sumRows, activationForward, activationBackward, softmaxCrossEntropy,
// softmaxCrossEntropyBackward and allFinite to exports.
void addKernelExports(Napi::Env env, Napi::Object exports);

}  // namespace hg
