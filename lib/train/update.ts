// One optimizer step over every tensor, all or nothing: the weights and optimizer state after it
// are all finite, or they are left exactly as after the previous step and a RangeError names the
// tensor and the step.
//
// Why a copy taken before the update (and not a check before writing, or an undo): an update
// cannot be undone exactly in floating point (W − lr·g + lr·g is not W), and a dry run that
// computes every new value before writing any costs a second pass of the update's arithmetic
// (Adam's square root and division: as much again as the update). A copy of W, m and v is a
// memcpy (TypedArray.set), the cheapest pass over the memory there is; the finiteness test rides
// in the update loop itself (lib/train/optimizer.ts, native/core/optimizer.h), and the copy is read
// back only on the rare failing step.
import { coreBinding } from '../binding';
import type { FloatArray } from '../types';
import * as v from '../validate';
import { OPTIMIZER_CODE, update } from './optimizer';
import { COUNTER, holdingParams, type TrainState } from './state';

type Tensors = { W: FloatArray; m: FloatArray | null; v: FloatArray | null };

// The copies, per state and per thread (a worker has its own): plain memory, allocated once.
const copies = new WeakMap<TrainState, Record<string, Tensors>>();

function copiesOf(s: TrainState): Record<string, Tensors> {
  let c = copies.get(s);
  if (!c) {
    c = {};
    const like = (a: FloatArray | null) => (a ? (new (a.constructor as new (n: number) => FloatArray)(a.length)) : null);
    for (const k of s.names) c[k] = { W: like(s.params[k])!, m: like(s.slots[k].m), v: like(s.slots[k].v) };
    copies.set(s, c);
  }
  return c;
}

function firstNonFinite(a: FloatArray): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/**
 * Updates every parameter from s.grads at learning rate lr and counts the step, holding the
 * parameters (a snapshot sees the step whole or not at all).
 * @throws {RangeError} when a value written is not finite; the weights, optimizer state and step count are then as before the call
 */
export function applyUpdate(s: TrainState, lr: number): void {
  const saved = copiesOf(s);
  holdingParams(s, () => {
    const t = s.counters[COUNTER.steps] + 1;
    const o = s.config.optimizer;
    const native = s.config.backend === 'native';
    // The same rules in C++ (native/core/optimizer.h): a JS loop over W1 costs ~0.5 ms a step.
    const core = native ? coreBinding() : null;
    let failed = -1;
    for (let i = 0; i < s.names.length && failed < 0; i++) {
      const k = s.names[i];
      const slot = s.slots[k];
      const c = saved[k];
      c.W.set(s.params[k]);
      if (slot.m) c.m!.set(slot.m);
      if (slot.v) c.v!.set(slot.v);
      const finite = core
        ? core.optimizerUpdate(s.params[k], s.grads[k], slot.m, slot.v, OPTIMIZER_CODE[o.name], lr, t, o.momentum, o.beta1, o.beta2, o.epsilon, o.weightDecay)
        : update(o, s.params[k], s.grads[k], slot, lr, t);
      if (!finite) failed = i;
    }
    if (failed < 0) {
      s.counters[COUNTER.steps] = t;
      return;
    }
    const k = s.names[failed];
    const slot = s.slots[k];
    // Name the first non-finite value (the weights first, then the optimizer state), then restore.
    const where = ([[k, s.params[k]], [`optimizer.${k}.m`, slot.m], [`optimizer.${k}.v`, slot.v]] as const)
      .map(([name, a]) => ({ name, a, i: a ? firstNonFinite(a) : -1 }))
      .find((w) => w.i >= 0) ?? { name: k, a: s.params[k], i: 0 }; // (the loop said one is there)
    const value = where.a![where.i];
    for (let i = 0; i <= failed; i++) {
      const c = saved[s.names[i]];
      const live = s.slots[s.names[i]];
      s.params[s.names[i]].set(c.W);
      if (live.m) live.m.set(c.m!);
      if (live.v) live.v.set(c.v!);
    }
    v.fail(RangeError, `finite values after the update of step ${t}`, where.name, new v.Received(
      `${value} at index ${where.i} (lr = ${lr}; the weights and optimizer state are left as after step ${t - 1})`,
    ));
  });
}
