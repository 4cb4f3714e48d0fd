// Data-parallel training ({ distributed: true }): what a rank does besides what a single process
// does. Every rank holds the whole model; each epoch it trains on its shard of the data
// (torch.utils.data.DistributedSampler's rule), and after each backward the gradients are averaged
// across ranks (DDP's rule: each rank's scaled by 1/W, then summed) before the optimizer steps, so
// the optimizer runs on the same numbers everywhere and every rank holds the same bits after every
// step. Everything here is a collective: every rank makes the same calls in the same order, from
// the thread that trains (fitSync's, or fit's worker: the process group is the process's).
import type { Evaluation } from '../layers/class-metrics';
import { allGatherSync, allReduceSync, broadcastSync, groupInfo, isInitialized } from '../distributed/group';
import type { Sequential } from '../layers/sequential';
import type { BackendName } from '../types';
import { HandgradError } from '../errors';
import { Rng } from '../rng';
import type { FloatArray } from '../types';
import type { TrainState } from './state';
import { ddpJoin, ddpReduce } from './ddp';
import { torchRandperm } from './ddp-sampler';

/** The Trainer's distributed setting, resolved (settings.ts). */
export interface DataParallel {
  /** Compare a hash of the weights across ranks every this many steps (0: never). */
  verifyEvery: number;
  /** allReduce's bucket size for the gradients (DDP's bucket_cap_mb, in bytes). */
  bucketBytes: number;
  /**
   * Who the other ranks are: 'handgrad' Trainers (the job's epoch records, evaluate and checks, on
   * collectives of handgrad's own), or possibly PyTorch DistributedDataParallel ranks ('ddp':
   * exactly DDP's collectives and no others, ./ddp.ts).
   */
  peers: 'handgrad' | 'ddp';
  /** The epoch's shuffled order: the Trainer's seeded shuffle, or DistributedSampler's torch.randperm (./ddp-sampler.ts). */
  sampler: 'handgrad' | 'torch';
  /** peers 'ddp': the reducer's record (./ddp.ts), shared with a fit's worker; set when the Trainer joins the job. */
  reducer?: Int32Array;
}

/** @throws {HandgradError} ERR_DISTRIBUTED when this process has joined no group */
export function requireGroup(what: string): { rank: number; worldSize: number } {
  if (!isInitialized()) {
    throw new HandgradError('ERR_DISTRIBUTED', `${what} needs a process group: call \`await distributed.init()\` (or distributed.initSync()) on every rank first`);
  }
  const { rank, worldSize } = groupInfo();
  return { rank, worldSize };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Every rank's `text`, gathered (two all-gathers: the lengths, then the bytes padded to the
 * longest, so every rank's call has the same length).
 */
function gatherText(text: string, worldSize: number): string[] {
  const bytes = encoder.encode(text);
  const lengths = new Int32Array(worldSize);
  allGatherSync(Int32Array.of(bytes.length), lengths);
  const L = Math.max(1, ...lengths);
  const mine = new Int32Array(L);
  mine.set(bytes);
  const all = new Int32Array(L * worldSize);
  allGatherSync(mine, all);
  return Array.from(lengths, (n, r) => decoder.decode(Uint8Array.from(all.subarray(r * L, r * L + n))));
}

/**
 * Checks that every rank agrees on each named value (the model, the training settings, …): one
 * gather of them all. A mismatch fails every rank alike, naming the first rank that differs from
 * rank 0 and both values.
 * @throws {HandgradError} ERR_DISTRIBUTED
 */
export function agree(what: string, values: Record<string, string>): void {
  const { worldSize } = groupInfo();
  const names = Object.keys(values);
  const all = gatherText(JSON.stringify(names.map((k) => values[k])), worldSize).map((t) => JSON.parse(t) as string[]);
  for (let i = 0; i < names.length; i++) {
    const r = all.findIndex((v) => v[i] !== all[0][i]);
    if (r > 0) {
      throw new HandgradError('ERR_DISTRIBUTED', `ranks disagree on ${names[i]} (${what}): rank 0 has ${JSON.stringify(all[0][i])}, rank ${r} has ${JSON.stringify(all[r][i])}`);
    }
  }
}

/**
 * The rows rank r trains on this epoch, in order: DistributedSampler's rule. `perm` is the
 * epoch's order of the N rows (one seeded permutation, the same on every rank, or the identity),
 * padded by repeating from its start to a multiple of W (torch's drop_last=False); rank r takes
 * positions r, r+W, r+2W, … Returns the shard's length, ceil(N/W), the same on every rank (so
 * every rank takes the same number of steps).
 */
export function shardOf(perm: Int32Array, N: number, rank: number, worldSize: number, shard: Int32Array): number {
  const S = Math.ceil(N / worldSize);
  for (let i = 0; i < S; i++) shard[i] = perm[(rank + i * worldSize) % N];
  return S;
}

/**
 * The epoch's order of its rows (order.length): seeded Fisher–Yates (the Trainer's shuffle),
 * torch.randperm with an mt19937 of that seed (sampler 'torch': DistributedSampler's order), or the identity.
 */
export function epochOrder(order: Int32Array, seed: number, shuffle: boolean, sampler: DataParallel['sampler'] = 'handgrad'): Int32Array {
  if (shuffle && sampler === 'torch') return torchRandperm(order, order.length, seed);
  for (let i = 0; i < order.length; i++) order[i] = i;
  if (shuffle) new Rng(seed >>> 0).shuffle(order); // the Trainer's seed is any safe integer: mod 2^32, as the generator always took it
  return order;
}

/** The gradients averaged across ranks, in place, before the optimizer reads them (with DDP peers, as DDP's Reducer does). */
export function averageGradients(s: TrainState, dp: DataParallel): void {
  if (dp.peers === 'ddp') return ddpReduce(s, dp);
  allReduceSync(s.names.map((k) => s.grads[k]), 'avg', { bucketBytes: dp.bucketBytes });
}

/**
 * The distributed settings every handgrad rank must share: the sampler decides which rows each
 * rank trains (two samplers shard two permutations: rows trained twice, others never); the bucket
 * size lays out the gradients' all-reduce (unequal buckets pair unequal lengths, which Gloo aborts
 * on without verifyCalls); verify is a collective of its own every N steps. peers is not here: a
 * 'ddp' rank makes DDP's collectives, never this comparison.
 */
export function distributedSettings(dp: DataParallel): Record<string, string> {
  return { 'the distributed settings (sampler, bucketBytes, verify)': JSON.stringify({ sampler: dp.sampler, bucketBytes: dp.bucketBytes, verify: dp.verifyEvery }) };
}

/**
 * A new Trainer joining the job: every rank's model and settings compared, then rank 0's weights
 * everywhere; with DDP peers, DistributedDataParallel's construction instead (./ddp.ts), which
 * compares the shapes and broadcasts the weights.
 */
export function joinJob(s: TrainState, dp: DataParallel, values: Record<string, string>): void {
  if (dp.peers === 'ddp') return ddpJoin(s, dp);
  agree('new Trainer', { ...values, ...distributedSettings(dp) });
  fromRankZero(s);
}

/**
 * Weights and optimizer state from rank 0, and its counters (steps, epochs, the place in an epoch).
 * With DDP peers nothing (a DDP rank makes no such call): each rank loads its own optimizer state
 * and counters, as each PyTorch rank does, and the constructor took rank 0's weights.
 */
export function fromRankZero(s: TrainState): void {
  if (s.config.distributed?.peers === 'ddp') return;
  const tensors: FloatArray[] = [];
  for (const k of s.names) {
    tensors.push(s.params[k]);
    const slot = s.slots[k];
    for (const t of [slot.m, slot.v, slot.vmax]) if (t) tensors.push(t);
  }
  broadcastSync(tensors, 0);
  broadcastSync(s.counters, 0);
}

/** A 31-bit hash of every weight's bytes (FNV-1a over 32-bit words), equal across ranks that hold the same bits. */
export function weightsHash(s: TrainState): number {
  let h = 0x811c9dc5;
  for (const k of s.names) {
    const p = s.params[k];
    const words = new Uint32Array(p.buffer, p.byteOffset, p.byteLength >>> 2);
    for (let i = 0; i < words.length; i++) h = Math.imul(h ^ words[i], 0x01000193);
  }
  return h & 0x7fffffff;
}

/**
 * The debug check: the ranks' weight hashes compared (an all-reduce of [h, −h] with max gives the
 * largest and the smallest). @throws {HandgradError} ERR_DISTRIBUTED when they differ
 */
export function verifyWeights(s: TrainState, step: number): void {
  const h = weightsHash(s);
  const both = Int32Array.of(h, -h);
  allReduceSync(both, 'max');
  if (both[0] !== h || -both[1] !== h) {
    throw new HandgradError('ERR_DISTRIBUTED', `the ranks' weights differ after step ${step} (distributed.verify): hashes range over [${-both[1]}, ${both[0]}], this rank's is ${h}`);
  }
}

/**
 * An Evaluation of this rank's rows combined with every other rank's into the Evaluation of all
 * of them: the loss's numerator (mean · its denominator) and denominator, the per-class hits,
 * predictions and support, and the confusion matrix, summed across ranks (counts are integers: exact
 * in a double). `weight` is the loss's class weight (the mean's denominator is Σ w[y]); `predicted`
 * is the rank's per-class prediction counts when the Evaluation has no confusion matrix (C > 1024).
 */
export function combineEvaluation(e: Evaluation, weight: ArrayLike<number> | null, predictedWithout: () => Float64Array): Evaluation {
  const C = e.support.length;
  const sums = new Float64Array(2 + 3 * C);
  const predicted = e.confusion ? new Float64Array(C) : predictedWithout();
  let den = 0;
  for (let c = 0; c < C; c++) {
    const support = e.support[c];
    // recall = hits / support, correctly rounded: the nearest integer to recall·support is hits.
    const hits = e.confusion ? e.confusion[c * C + c] : Math.round(e.recall[c] * support);
    if (e.confusion) for (let t = 0; t < C; t++) predicted[c] += e.confusion[t * C + c];
    den += (weight === null ? 1 : weight[c]) * support;
    sums[2 + c] = hits;
    sums[2 + C + c] = predicted[c];
    sums[2 + 2 * C + c] = support;
  }
  sums[0] = e.loss * den;
  sums[1] = den;
  allReduceSync(sums, 'sum');
  let confusion: Int32Array | null = null;
  if (e.confusion) {
    confusion = Int32Array.from(e.confusion);
    allReduceSync(confusion, 'sum');
  }
  let correct = 0;
  let rows = 0;
  const precision: number[] = [];
  const recall: number[] = [];
  const support: number[] = [];
  for (let c = 0; c < C; c++) {
    const hits = sums[2 + c];
    const p = sums[2 + C + c];
    const n = sums[2 + 2 * C + c];
    correct += hits;
    rows += n;
    precision.push(p === 0 ? 0 : hits / p);
    recall.push(n === 0 ? 0 : hits / n);
    support.push(n);
  }
  return { loss: sums[0] / sums[1], accuracy: rows > 0 ? correct / rows : 0, precision, recall, support, confusion };
}

/**
 * Sequential.score of this rank's rows, combined across ranks: the Evaluation of every rank's rows
 * together (each rank passes its part of the set; one that passes the whole set counts it W times,
 * which leaves every mean as it is, to rounding).
 */
export function scoreAcross(seq: Sequential, X: FloatArray, y: Int32Array, batchSize: number, backend: BackendName): Evaluation {
  const e = seq.score(X, y, batchSize, backend);
  return combineEvaluation(e, seq.loss.weight, () => {
    const counts = new Float64Array(seq.classes);
    const p = seq.predict(X, { backend });
    for (let i = 0; i < p.length; i++) if (y[i] !== seq.loss.ignoreIndex) counts[p[i]]++;
    return counts;
  });
}
