// Data-parallel training with PyTorch DistributedDataParallel ranks in the job
// ({ distributed: { peers: 'ddp' } }). Gloo matches collectives by call order, so a Node rank must
// make exactly the collectives a DDP rank makes, in DDP's order, with DDP's sizes and dtypes, and
// no others (a size mismatch errors or hangs; an extra call pairs with the wrong one). PyTorch 1.13's
// sequence (torch/nn/parallel/distributed.py, torch/csrc/distributed/c10d/reducer.cpp, comm.cpp),
// checked against a DDP rank here (test/53):
//   construction  1. verify_params_across_processes: an all-gather of int64 [number of parameters],
//                    then a broadcast from rank 0 of int64 [each parameter's sizes, then strides],
//                    in named_parameters order (0.weight [out,in] strides [in,1], 0.bias [out] [1], …);
//                 2. _sync_module_states: _broadcast_coalesced from rank 0 of the parameters
//                    flattened per 250 MiB bucket (nn.Linear has no buffers);
//   backward 1    one all-reduce SUM of one bucket of every parameter in parameter order (the
//                 initial buckets use the limit sys.maxsize when find_unused_parameters=False),
//                 each gradient scaled by 1/W (a float of the dtype) as it is copied in;
//   forward 2     _rebuild_buckets, once: buckets recomputed in the gradients' ready order (the
//                 reverse of parameter order for an nn.Sequential of Linear layers: each layer's
//                 bias, then its weight, last layer first) with the limits [1 MiB, bucket_cap_mb],
//                 then sync_bucket_indices broadcasts from rank 0 int32 [indices…, number of
//                 buckets] and int32 [each bucket's size]; every rank adopts rank 0's;
//   backward ≥ 2  one all-reduce SUM per rebuilt bucket, in bucket order.
// Weights are [in,out] here and [out,in] in torch: a bucket holds torch's layout (transposed).
import { allGatherSync, allReduceSync, broadcastSync, groupInfo } from '../distributed/group';
import { HandgradError } from '../errors';
import type { FloatArray } from '../types';
import type { DataParallel } from './data-parallel';
import type { TrainState } from './state';

/** _sync_module_states' broadcast bucket (DistributedDataParallel.broadcast_bucket_size). */
const BROADCAST_BUCKET_BYTES = 250 * 1024 * 1024;
/** dist._DEFAULT_FIRST_BUCKET_BYTES: the first rebuilt bucket's limit. */
const FIRST_BUCKET_BYTES = 1024 * 1024;

// The reducer's record, shared with a fit's worker thread (the Trainer's DDP lives as long as the
// Trainer, across fits and threads): [BACKWARDS] the backward passes so far (capped at 2: the
// buckets are rebuilt before the second), [BUCKETS] the rebuilt buckets' count (0 before), then
// the rebuilt order of the P parameter indices and the P (at most) bucket sizes.
const BACKWARDS = 0;
const BUCKETS = 1;
const HEAD = 2;

/** One parameter as DDP sees it: its torch shape and whether handgrad's tensor is its transpose. */
interface TorchParam { name: string; sizes: number[]; transposed: boolean }

function torchParams(s: TrainState): TorchParam[] {
  const linears = s.config.layers.filter((l): l is Extract<typeof l, { kind: 'linear' }> => l.kind === 'linear');
  return s.names.map((name) => {
    const l = linears[Number(name.slice(1)) - 1];
    return name[0] === 'W' ? { name, sizes: [l.out, l.in], transposed: true } : { name, sizes: [l.out], transposed: false };
  });
}

/** The torch-layout name of parameter p (its nn.Sequential index is not known here: the Linear's). */
function describe(p: TorchParam): string {
  return `${p.name} [${p.sizes.join(', ')}]`;
}

/**
 * compute_bucket_assignment_by_size for tensors of one dtype: the parameter indices in `order`
 * fill a bucket until its bytes reach the current limit (the tensor that crosses it included),
 * which then advances to the next limit (the last one repeats); the partly filled last bucket
 * follows.
 */
export function bucketAssignment(bytes: readonly number[], order: readonly number[], limits: readonly number[]): number[][] {
  const buckets: number[][] = [];
  let current: number[] = [];
  let size = 0;
  let limit = 0;
  for (const i of order) {
    current.push(i);
    size += bytes[i];
    if (size >= limits[limit]) {
      buckets.push(current);
      current = [];
      size = 0;
      limit = Math.min(limit + 1, limits.length - 1);
    }
  }
  if (current.length > 0) buckets.push(current);
  return buckets;
}

function flatOf(s: TrainState, n: number): FloatArray {
  return s.config.dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

/** Parameters (or gradients) `bucket` of `tensors` into one flat array in torch's layout (`into`, or a new one). */
function flatten(s: TrainState, tp: readonly TorchParam[], tensors: Record<string, FloatArray>, bucket: readonly number[], into?: FloatArray): FloatArray {
  let n = 0;
  for (const i of bucket) n += tensors[tp[i].name].length;
  const flat = into ?? flatOf(s, n);
  let at = 0;
  for (const i of bucket) {
    const { name, sizes, transposed } = tp[i];
    const t = tensors[name];
    if (transposed) {
      const [out, inn] = sizes;
      for (let o = 0; o < out; o++) for (let k = 0; k < inn; k++) flat[at + o * inn + k] = t[k * out + o];
    } else {
      flat.set(t, at);
    }
    at += t.length;
  }
  return flat;
}

/** flatten's inverse: the flat array back into `tensors`. */
function unflatten(flat: FloatArray, tp: readonly TorchParam[], tensors: Record<string, FloatArray>, bucket: readonly number[]): void {
  let at = 0;
  for (const i of bucket) {
    const { name, sizes, transposed } = tp[i];
    const t = tensors[name];
    if (transposed) {
      const [out, inn] = sizes;
      for (let o = 0; o < out; o++) for (let k = 0; k < inn; k++) t[k * out + o] = flat[at + o * inn + k];
    } else {
      t.set(flat.subarray(at, at + t.length));
    }
    at += t.length;
  }
}

function bytesOf(s: TrainState, tp: readonly TorchParam[]): number[] {
  const elem = s.config.dtype === 'float64' ? 8 : 4;
  return tp.map((p) => s.params[p.name].length * elem);
}

/**
 * DistributedDataParallel's construction: the parameter count and shapes compared with rank 0's
 * (verify_params_across_processes), then rank 0's weights everywhere (_sync_module_states). Starts
 * the reducer's record. @throws {HandgradError} ERR_DISTRIBUTED naming both ranks' models
 */
export function ddpJoin(s: TrainState, dp: DataParallel): void {
  const { rank, worldSize } = groupInfo();
  const tp = torchParams(s);
  const P = tp.length;
  const counts = new BigInt64Array(worldSize);
  allGatherSync(BigInt64Array.of(BigInt(P)), counts);
  counts.forEach((c, r) => {
    if (Number(c) !== P) {
      throw new HandgradError('ERR_DISTRIBUTED', `DDP expects the same model on every rank: rank ${rank} has ${P} parameters (${tp.map(describe).join(', ')}), rank ${r} has ${c}`);
    }
  });
  const meta: bigint[] = [];
  for (const p of tp) {
    meta.push(...p.sizes.map(BigInt));
    // Contiguous strides: [in, 1] for a weight [out,in], [1] for a bias.
    meta.push(...p.sizes.map((_, d) => BigInt(p.sizes.slice(d + 1).reduce((a, b) => a * b, 1))));
  }
  const mine = BigInt64Array.from(meta);
  const zero = mine.slice();
  broadcastSync(zero, 0);
  let at = 0;
  for (const p of tp) {
    const n = 2 * p.sizes.length;
    const theirs = Array.from(zero.subarray(at, at + n / 2), Number);
    if (theirs.some((d, k) => d !== p.sizes[k])) {
      throw new HandgradError('ERR_DISTRIBUTED', `DDP expects the same model on every rank: parameter ${tp.indexOf(p)} is ${describe(p)} on rank ${rank} and [${theirs.join(', ')}] on rank 0 (torch's layout, weight [out,in])`);
    }
    at += n;
  }
  for (const bucket of bucketAssignment(bytesOf(s, tp), tp.map((_, i) => i), [BROADCAST_BUCKET_BYTES])) {
    const flat = flatten(s, tp, s.params, bucket);
    broadcastSync(flat, 0);
    unflatten(flat, tp, s.params, bucket);
  }
  dp.reducer = new Int32Array(new SharedArrayBuffer(4 * (HEAD + 2 * P)));
}

/**
 * _rebuild_buckets: this rank's buckets by the gradients' ready order, then rank 0's adopted
 * (sync_bucket_indices: two broadcasts). Written into the record.
 */
function rebuild(s: TrainState, tp: readonly TorchParam[], dp: DataParallel, rec: Int32Array): void {
  const P = tp.length;
  const ready = tp.map((_, i) => P - 1 - i);
  const buckets = bucketAssignment(bytesOf(s, tp), ready, [FIRST_BUCKET_BYTES, dp.bucketBytes]);
  const indices = Int32Array.from([...buckets.flat(), buckets.length]);
  broadcastSync(indices, 0);
  const count = indices[P];
  if (!(count >= 1 && count <= P)) throw new HandgradError('ERR_DISTRIBUTED', `rank 0 sent ${count} rebuilt DDP buckets for ${P} parameters`);
  const sizes = Int32Array.from({ length: count }, (_, b) => buckets[Math.min(b, buckets.length - 1)].length);
  broadcastSync(sizes, 0);
  const order = indices.subarray(0, P);
  const seen = new Set(order);
  if (seen.size !== P || order.some((i) => i < 0 || i >= P) || sizes.reduce((a, b) => a + b, 0) !== P) {
    throw new HandgradError('ERR_DISTRIBUTED', `rank 0's rebuilt DDP buckets (indices ${Array.from(order).join(', ')}; sizes ${Array.from(sizes).join(', ')}) are not a partition of this rank's ${P} parameters`);
  }
  rec.set(order, HEAD);
  rec.set(sizes, HEAD + P);
  rec[BUCKETS] = count;
}

/** The reducer's current buckets: all parameters in order before the rebuild, the record's after. */
function bucketsOf(rec: Int32Array, P: number): number[][] {
  if (rec[BUCKETS] === 0) return [Array.from({ length: P }, (_, i) => i)];
  const out: number[][] = [];
  let at = HEAD;
  for (let b = 0; b < rec[BUCKETS]; b++) {
    const n = rec[HEAD + P + b];
    out.push(Array.from(rec.subarray(at, at + n)));
    at += n;
  }
  return out;
}

// Per thread and state (a fit's worker has its own copy of the state object): the parameters'
// torch shapes, and the buckets with their flat buffers, made again only when the record's buckets
// change (once, at the rebuild), so a step allocates nothing.
const reducers = new WeakMap<TrainState, { tp: TorchParam[]; built: number; buckets: number[][]; flats: FloatArray[] }>();

/**
 * One backward's gradient reduction as DDP's Reducer makes it: before the second, the buckets
 * rebuilt; then per bucket, the gradients in torch's layout each scaled by 1/W (allReduce 'avg':
 * a multiply by the dtype's 1/W, as the Reducer's mul_out) and summed across ranks, and copied back.
 */
export function ddpReduce(s: TrainState, dp: DataParallel): void {
  const rec = dp.reducer;
  if (!rec) throw new HandgradError('ERR_DISTRIBUTED', 'the DDP reducer was not set up (the Trainer joins the job when constructed)');
  let r = reducers.get(s);
  if (!r) reducers.set(s, (r = { tp: torchParams(s), built: -1, buckets: [], flats: [] }));
  if (rec[BACKWARDS] === 1 && rec[BUCKETS] === 0) rebuild(s, r.tp, dp, rec);
  if (r.built !== rec[BUCKETS]) {
    r.buckets = bucketsOf(rec, r.tp.length);
    r.flats = []; // each made by its bucket's first flatten below
    r.built = rec[BUCKETS];
  }
  r.buckets.forEach((bucket, b) => {
    const flat = (r!.flats[b] = flatten(s, r!.tp, s.grads, bucket, r!.flats[b]));
    allReduceSync(flat, 'avg', { bucketBytes: flat.byteLength });
    unflatten(flat, r!.tp, s.grads, bucket);
  });
  if (rec[BACKWARDS] < 2) rec[BACKWARDS]++;
}
