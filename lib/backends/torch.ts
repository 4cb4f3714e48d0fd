// The typed surface of the LibTorch addon (native/torch, built by CMakeLists.txt with cmake-js), the
// reference behind backend 'torch' (lib/engine/torch.ts), the verifier and the optimizer checks. It
// is optional — LibTorch is large — so it is loaded lazily, by explicit path (node-gyp-build finds
// one addon per folder, and that one is the core's), and its absence is a HandgradError that says
// how to build it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { available, type CoreBinding, once, packageRoot } from '../binding';
import { HandgradError } from '../errors';
import type { FloatArray } from '../types';
import * as v from '../validate';

/** The typed surface of handgrad_torch.node: torch::optim and the layer-stack reference. */
export type TorchBinding = Pick<CoreBinding, 'getNumThreads' | 'setNumThreads'> & {
  /**
   * torch::optim's SGD ('sgd': momentum 0; 'momentum': μ and dampening; 'nesterov': μ, dampening
   * 0), Adam (L2 weight_decay) or AdamW (decoupled weight_decay), with amsgrad for those two, fresh
   * for this call: one step() per entry of grads, each set as W's .grad. W is updated in place;
   * grads have W's dtype and length. dampening and amsgrad default to LibTorch's 0 and false.
   */
  optimizerRun(
    name: 'sgd' | 'momentum' | 'nesterov' | 'adam' | 'adamw', W: FloatArray, grads: readonly FloatArray[], lr: number,
    momentum: number, beta1: number, beta2: number, epsilon: number, weightDecay: number, dampening?: number, amsgrad?: boolean,
  ): void;
  /**
   * Autograd over a layer stack (the reference of the hand-derived Sequential) on a fresh graph:
   * loss = cross_entropy(stack(X), y) on the raw output, then backward. The description is the
   * core's stackPrepare(kinds, widths); X [B, widths[0]] sets the dtype of every float tensor; y
   * holds B class ids; params [W1, b1, …] (W_k [in, out] row-major, Z = A·W + b) are read in place;
   * grads (their shapes) and dX (or null) receive the gradients, added into with accumulate (.grad);
   * ws (optional, sequentialLayout's length) receives every layer's output and softmax(logits).
   * Outputs may not overlap inputs or each other. Returns the loss, or NaN with sequentialStatus()
   * set as the core's stackStatus (nothing is written unless the loss is finite).
   */
  sequentialForwardBackward(
    X: FloatArray, y: Int32Array | null, B: number, kinds: Int32Array, widths: Int32Array,
    params: readonly FloatArray[], grads: readonly FloatArray[], dX: FloatArray | null,
    reduction: number, accumulate: boolean, ws?: FloatArray | null,
    weight?: FloatArray | null, ignoreIndex?: number, labelSmoothing?: number, targets?: FloatArray | null, gradOutput?: FloatArray | null,
  ): number;
  /** The output [B,C] into logits, without a graph: true, or false with sequentialStatus() set. */
  sequentialForward(
    X: FloatArray, B: number, kinds: Int32Array, widths: Int32Array, params: readonly FloatArray[], logits: FloatArray,
  ): boolean;
  /** Element offsets into ws for B rows of X's dtype: [each layer's output …, probs, ws length] (the core's stackLayout). */
  sequentialLayout(X: FloatArray, B: number, kinds: Int32Array, widths: Int32Array): Float64Array;
  /** [stage, layer] of this thread's last sequential call (the codes of the core's stackStatus). */
  sequentialStatus(): [number, number];
};

// A command that works in a consumer's node_modules too: the CLI's build-torch runs the package's
// own cmake-js (a dependency) on the CMakeLists.txt it ships.
const BUILD_HINT =
  'Build it with `npx handgrad build-torch` (needs cmake and LibTorch: `apt-get install -y cmake libtorch-dev`), ' +
  'or use { backend: \'native\' }.';

/** Where the addon is looked for: $HANDGRAD_TORCH_ADDON if set, else build-torch/Release/handgrad_torch.node. */
export function torchAddonPath(): string {
  return process.env.HANDGRAD_TORCH_ADDON || join(packageRoot, 'build-torch', 'Release', 'handgrad_torch.node');
}

/** Loads the addon at `path`, uncached. @throws {HandgradError} ERR_TORCH_UNAVAILABLE when the file is missing or does not load */
export function loadTorchBinding(path: string): TorchBinding {
  if (!existsSync(path)) {
    throw new HandgradError('ERR_TORCH_UNAVAILABLE', `The LibTorch addon is not built: ${path} does not exist. ${BUILD_HINT}`);
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(path) as TorchBinding;
  } catch (cause) {
    // Typically libtorch*.so missing or of another version than the one it was built against.
    const why = `could not be loaded (${(cause as Error).message.split('\n')[0]})`;
    throw new HandgradError('ERR_TORCH_UNAVAILABLE', `The LibTorch addon at ${path} ${why}. ${BUILD_HINT}`, { cause });
  }
}

/** The LibTorch addon, loaded on first use. @throws {HandgradError} ERR_TORCH_UNAVAILABLE, with the command that builds it */
export const torchBinding: () => TorchBinding = once(() => loadTorchBinding(torchAddonPath()));

/** Whether backend 'torch' can be used here (the addon is built and LibTorch loads). */
export function torchAvailable(): boolean {
  return available(torchBinding);
}

/** LibTorch's intra-op threads for backend 'torch' (1 unless set: OpenBLAS runs below). @throws {HandgradError} ERR_TORCH_UNAVAILABLE */
export function getTorchThreads(): number {
  return torchBinding().getNumThreads();
}

/**
 * Sets LibTorch's intra-op threads for the torch backend. OpenBLAS's own threads (setNumThreads)
 * run underneath, so more than 1 mostly oversubscribes the cores.
 * @throws {TypeError|RangeError} unless n is a positive integer
 * @throws {HandgradError} ERR_TORCH_UNAVAILABLE
 */
export function setTorchThreads(n: number): void {
  const threads = v.dim('threads', n); // a bad count is a RangeError whether or not the addon loads
  torchBinding().setNumThreads(threads);
}
