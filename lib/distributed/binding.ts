// The typed surface of handgrad_distributed.node (native/torch/distributed, built by CMakeLists.txt
// next to the LibTorch reference addon), loaded lazily by explicit path like that one. Every
// argument is checked in ./group.ts first; the addon checks again.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { once, packageRoot } from '../binding';
import { HandgradError } from '../errors';

/** The arrays a collective runs on, in place: all of one dtype. */
export type CollectiveArray = Float32Array | Float64Array | Int32Array | BigInt64Array;

export interface DistributedBinding {
  /** Joins the process's group: resolves when every rank has (or rejects with code ERR_DISTRIBUTED). */
  join(rank: number, worldSize: number, masterAddr: string, masterPort: number, timeoutMs: number, check: string, verifyCalls: boolean): Promise<void>;
  joinSync(rank: number, worldSize: number, masterAddr: string, masterPort: number, timeoutMs: number, check: string, verifyCalls: boolean): void;
  destroy(): void;
  info(): {
    rank: number; worldSize: number; failure: string; allHandgrad: boolean; verifiesCalls: boolean; masterAddr: string; masterPort: number; timeoutMs: number;
  } | null;
  /** op: 0 sum, 1 avg, 2 max. The Promise form copies the arrays now and writes them back when it resolves. */
  allReduce(arrays: readonly CollectiveArray[], op: number, bucketBytes: number): Promise<void>;
  allReduceSync(arrays: readonly CollectiveArray[], op: number, bucketBytes: number): void;
  broadcast(arrays: readonly CollectiveArray[], root: number, bucketBytes: number): Promise<void>;
  broadcastSync(arrays: readonly CollectiveArray[], root: number, bucketBytes: number): void;
  /** [input, output]: every rank's input into output (worldSize × its length, rank-major); the Promise form writes output when it resolves. */
  allGather(inputOutput: readonly [CollectiveArray, CollectiveArray]): Promise<void>;
  allGatherSync(inputOutput: readonly [CollectiveArray, CollectiveArray]): void;
  barrier(): Promise<void>;
  barrierSync(): void;
}

const BUILD_HINT =
  'Build it with `npx handgrad build-torch` (needs cmake, LibTorch and Gloo\'s headers: `apt-get install -y cmake libtorch-dev libgloo-dev`).';

/** Where the addon is looked for: $HANDGRAD_DISTRIBUTED_ADDON if set, else build-torch/Release/handgrad_distributed.node. */
export function distributedAddonPath(): string {
  return process.env.HANDGRAD_DISTRIBUTED_ADDON || join(packageRoot, 'build-torch', 'Release', 'handgrad_distributed.node');
}

/** The addon, loaded on first use. @throws {HandgradError} ERR_TORCH_UNAVAILABLE, with the command that builds it */
export const distributedBinding: () => DistributedBinding = once(() => {
  const path = distributedAddonPath();
  if (!existsSync(path)) throw new HandgradError('ERR_TORCH_UNAVAILABLE', `The distributed addon is not built: ${path} does not exist. ${BUILD_HINT}`);
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(path) as DistributedBinding;
  } catch (cause) {
    const why = `could not be loaded (${(cause as Error).message.split('\n')[0]})`;
    throw new HandgradError('ERR_TORCH_UNAVAILABLE', `The distributed addon at ${path} ${why}. ${BUILD_HINT}`, { cause });
  }
});
