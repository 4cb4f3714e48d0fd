// The process group of this process (torch.distributed's default group): init, the collectives and
// destroy. One group per process, shared by its threads: init on the main thread, then a training
// worker_thread calls the blocking *Sync collectives where its step runs; the Promise forms run the
// wait on the libuv pool and never block the event loop. Calls are matched across ranks by order,
// as in torch.distributed: every rank makes the same calls, with arrays of the same lengths and dtype.
import { HandgradError } from '../errors';
import * as v from '../validate';
import { type CollectiveArray, distributedBinding } from './binding';
import { type InitOptions, type ResolvedInit, resolveInit } from './options';

export type ReduceOpName = 'sum' | 'avg' | 'max';
const REDUCE_OPS: readonly ReduceOpName[] = ['sum', 'avg', 'max'];

export interface CollectiveOptions {
  /**
   * Several arrays are packed into flat buckets of at most this many bytes, one collective per
   * bucket (an array larger than that is a bucket of its own). Default 25 MiB, DDP's bucket_cap_mb.
   * Must be the same on every rank.
   */
  bucketBytes?: number;
}

/** What init joined. */
export interface GroupInfo extends Omit<ResolvedInit, 'check' | 'verifyCalls'> {
  /** Every rank joined as a handgrad rank (none is a PyTorch Python rank). */
  allHandgrad: boolean;
  /** Each collective is compared across ranks first (verifyCalls, in an all-handgrad group). */
  verifiesCalls: boolean;
}

export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

// The localRank this thread's init resolved (the group itself is process-wide, in the addon).
let joinedLocalRank: number | undefined;

/** A native failure with code ERR_DISTRIBUTED as the package's HandgradError; anything else unchanged. */
function translate(e: unknown): unknown {
  const code = (e as { code?: unknown } | null)?.code;
  if (e instanceof Error && code === 'ERR_DISTRIBUTED' && !(e instanceof HandgradError)) return new HandgradError('ERR_DISTRIBUTED', e.message, { cause: e });
  return e;
}

function sync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw translate(e);
  }
}

async function later<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw translate(e);
  }
}

function info(): GroupInfo {
  const i = distributedBinding().info();
  if (!i) throw new HandgradError('ERR_DISTRIBUTED', 'The process group is not initialised: call distributed.init() first');
  // Joined on another thread: LOCAL_RANK as init would have read it.
  const env = Number(process.env.LOCAL_RANK);
  const localRank = joinedLocalRank ?? (process.env.LOCAL_RANK && Number.isInteger(env) ? env : i.rank);
  const { rank, worldSize, masterAddr, masterPort, timeoutMs, allHandgrad, verifiesCalls } = i;
  return { rank, worldSize, localRank, masterAddr, masterPort, timeoutMs, allHandgrad, verifiesCalls };
}

/**
 * Joins the job's process group, as torch.distributed.init_process_group('gloo',
 * init_method='env://') does, so PyTorch Python ranks can be part of the same job. Resolves once
 * every rank has joined. Mismatched worldSize or check across handgrad ranks, or two processes with
 * one rank, fail every rank at once, naming both values.
 * @throws {TypeError|RangeError} for a bad option (unknown keys get a did-you-mean)
 * @throws {HandgradError} ERR_DISTRIBUTED when joining fails or takes longer than timeoutMs; ERR_TORCH_UNAVAILABLE when the addon is not built
 */
export async function init(opts?: InitOptions): Promise<GroupInfo> {
  const o = resolveInit(opts);
  const b = distributedBinding();
  await later(() => b.join(o.rank, o.worldSize, o.masterAddr, o.masterPort, o.timeoutMs, o.check, o.verifyCalls));
  joinedLocalRank = o.localRank;
  return info();
}

/** init, blocking the calling thread (a worker_thread's, say) until every rank has joined. @throws as init */
export function initSync(opts?: InitOptions): GroupInfo {
  const o = resolveInit(opts);
  const b = distributedBinding();
  sync(() => b.joinSync(o.rank, o.worldSize, o.masterAddr, o.masterPort, o.timeoutMs, o.check, o.verifyCalls));
  joinedLocalRank = o.localRank;
  return info();
}

/** Whether this process has joined a group (false when the addon is not built). */
export function isInitialized(): boolean {
  try {
    return distributedBinding().info() !== null;
  } catch {
    return false;
  }
}

/** This process's group: its rank, world size and settings. @throws {HandgradError} ERR_DISTRIBUTED before init */
export function groupInfo(): GroupInfo {
  return info();
}

/**
 * Leaves the group (torch.distributed.destroy_process_group): later collectives fail until init()
 * is called again, with a new group. Does nothing when none was joined.
 */
export function destroy(): void {
  if (!isInitialized()) return;
  distributedBinding().destroy();
  joinedLocalRank = undefined;
}

/** The arrays of one call, checked: typed arrays of one supported dtype, none empty. */
function arrays(name: string, data: unknown): CollectiveArray[] {
  const list: unknown[] = Array.isArray(data) ? data : [data];
  if (list.length === 0) v.fail(RangeError, 'at least one typed array', name, data);
  const first = list[0];
  const kinds = [Float32Array, Float64Array, Int32Array, BigInt64Array] as const;
  const kind = kinds.find((k) => first instanceof k);
  list.forEach((a, i) => {
    const at = Array.isArray(data) ? `${name}[${i}]` : name;
    if (!kinds.some((k) => a instanceof k)) v.fail(TypeError, 'a Float32Array, Float64Array, Int32Array or BigInt64Array', at, a);
    if (!(a instanceof kind!)) v.fail(TypeError, `a ${kind!.name} (the dtype of ${name}[0]): one dtype per call`, at, a);
    if (v.lengthOf(a as CollectiveArray) === 0) v.fail(RangeError, 'a non-empty array', at, a);
  });
  return list as CollectiveArray[];
}

function bucketBytes(name: string, opts: unknown): number {
  const o = v.options(`${name} options`, opts, ['bucketBytes'] as const);
  const b = o.bucketBytes ?? DEFAULT_BUCKET_BYTES;
  if (typeof b !== 'number') v.fail(TypeError, 'a number of bytes', 'bucketBytes', b);
  if (!Number.isSafeInteger(b) || b < 1) v.fail(RangeError, 'a positive integer number of bytes, at most 2^53 − 1', 'bucketBytes', b);
  return b;
}

function reduceOp(data: CollectiveArray[], op: unknown): number {
  const name = v.oneOf('op', op, REDUCE_OPS, 'sum');
  if (name === 'avg' && (data[0] instanceof Int32Array || data[0] instanceof BigInt64Array)) {
    v.fail(TypeError, "a Float32Array or Float64Array for op 'avg' (an integer average would round)", 'data', data[0]);
  }
  return REDUCE_OPS.indexOf(name);
}

function rootRank(root: unknown): number {
  const { worldSize } = info();
  if (typeof root !== 'number') v.fail(TypeError, 'a rank number', 'root', root);
  if (!Number.isInteger(root) || root < 0 || root >= worldSize) v.fail(RangeError, `a rank in [0, ${worldSize})`, 'root', root);
  return root;
}

/**
 * Reduces `data` (one typed array or a list of them, e.g. every gradient) across all ranks, in
 * place: 'sum', 'avg' (each rank's values scaled by 1/worldSize, then summed: DDP's rule) or
 * 'max'. Float32Array, Float64Array, or Int32Array and BigInt64Array ('sum' and 'max'). The arrays are read when
 * called and written when the Promise resolves: leave them alone meanwhile.
 * @throws {TypeError|RangeError} for bad arguments; RangeError when the result holds NaN or ±Infinity (on every rank)
 * @throws {HandgradError} ERR_DISTRIBUTED when a peer fails, does not answer within timeoutMs, or (verifyCalls) made a different call
 */
export async function allReduce(data: CollectiveArray | readonly CollectiveArray[], op: ReduceOpName = 'sum', opts?: CollectiveOptions): Promise<void> {
  const list = arrays('data', data);
  const code = reduceOp(list, op);
  const bucket = bucketBytes('allReduce', opts);
  const b = distributedBinding();
  await later(() => b.allReduce(list, code, bucket));
}

/** allReduce, blocking the calling thread: for the thread that trains (a worker). @throws as allReduce */
export function allReduceSync(data: CollectiveArray | readonly CollectiveArray[], op: ReduceOpName = 'sum', opts?: CollectiveOptions): void {
  const list = arrays('data', data);
  const code = reduceOp(list, op);
  const bucket = bucketBytes('allReduceSync', opts);
  const b = distributedBinding();
  sync(() => b.allReduceSync(list, code, bucket));
}

/**
 * Copies rank `root`'s `data` into every other rank's, in place (rank 0's initial weights, say).
 * @throws as allReduce
 */
export async function broadcast(data: CollectiveArray | readonly CollectiveArray[], root = 0, opts?: CollectiveOptions): Promise<void> {
  const list = arrays('data', data);
  const r = rootRank(root);
  const bucket = bucketBytes('broadcast', opts);
  const b = distributedBinding();
  await later(() => b.broadcast(list, r, bucket));
}

/** broadcast, blocking the calling thread. @throws as allReduce */
export function broadcastSync(data: CollectiveArray | readonly CollectiveArray[], root = 0, opts?: CollectiveOptions): void {
  const list = arrays('data', data);
  const r = rootRank(root);
  const bucket = bucketBytes('broadcastSync', opts);
  const b = distributedBinding();
  sync(() => b.broadcastSync(list, r, bucket));
}

/** input and output checked: one dtype, output worldSize × input's length. */
function gatherArrays(input: unknown, output: unknown): [CollectiveArray, CollectiveArray] {
  const [i, o] = arrays('[input, output]', [input, output]);
  const { worldSize } = info();
  const n = v.lengthOf(i);
  if (v.lengthOf(o) !== n * worldSize) v.fail(RangeError, `an output of worldSize × ${n} = ${n * worldSize} elements`, 'output', o);
  return [i, o];
}

/**
 * Every rank's `input` into `output`, rank r's at [r·n, (r+1)·n) (torch.distributed.all_gather into
 * one flat array). No finiteness check: nothing is computed. DDP's start-up check of the
 * parameter shapes is an allGather of a BigInt64Array.
 * @throws {TypeError|RangeError} for bad arguments
 * @throws {HandgradError} ERR_DISTRIBUTED as allReduce
 */
export async function allGather(input: CollectiveArray, output: CollectiveArray): Promise<void> {
  const pair = gatherArrays(input, output);
  const b = distributedBinding();
  await later(() => b.allGather(pair));
}

/** allGather, blocking the calling thread. @throws as allGather */
export function allGatherSync(input: CollectiveArray, output: CollectiveArray): void {
  const pair = gatherArrays(input, output);
  sync(() => distributedBinding().allGatherSync(pair));
}

/** Resolves when every rank has reached its barrier. @throws {HandgradError} ERR_DISTRIBUTED */
export async function barrier(): Promise<void> {
  info();
  const b = distributedBinding();
  await later(() => b.barrier());
}

/** barrier, blocking the calling thread. @throws {HandgradError} ERR_DISTRIBUTED */
export function barrierSync(): void {
  info();
  sync(() => distributedBinding().barrierSync());
}
