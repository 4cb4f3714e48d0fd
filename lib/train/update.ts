// One optimizer step over every tensor, all or nothing: the weights and optimizer state after it
// are all finite, or they are left exactly as after the previous step and a RangeError names the
// tensor and the step. The step's counters (steps, the position in the epoch) change with it,
// inside the same hold of the parameters: a snapshot, a stop or a dead worker sees the step whole
// or not at all.
//
// Why a copy taken before the update (and not a check before writing, or an undo): an update
// cannot be undone exactly in floating point (W − lr·g + lr·g is not W), and a dry run that
// computes every new value before writing any costs a second pass of the update's arithmetic
// (Adam's square root and division: as much again as the update). A copy of W, m and v is a
// memcpy (TypedArray.set), the cheapest pass over the memory there is — or, in C++, a store in the
// update's own loop; the finiteness test rides in the update loop itself (lib/train/optimizer.ts,
// native/core/optimizer.h), and the copy is read back only on a failing step (or by the caller's
// thread, if the worker died inside one).
import { coreBinding } from '../binding';
import type { FloatArray } from '../types';
import * as v from '../validate';
import { atenCapability, OPTIMIZER_CODE, update } from './optimizer';
import { COUNTER, holdingParams, restoreTensors, TOUCHED, type TrainState } from './state';

function firstNonFinite(a: FloatArray): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/**
 * Updates every parameter from s.grads at learning rate lr, counts the step and runs `advance`
 * (the caller's other counters for it), holding the parameters.
 * @throws {RangeError} when a value written is not finite; the weights, optimizer state and counters are then as before the call
 */
export function applyUpdate(s: TrainState, lr: number, advance?: () => void): void {
  holdingParams(s, () => {
    const t = s.counters[COUNTER.steps] + 1;
    const o = s.config.optimizer;
    // The same rules in C++ (native/core/optimizer.h): a JS loop over W1 costs ~0.5 ms a step.
    const core = s.config.backend === 'native' ? coreBinding() : null;
    // The TS rule fuses as LibTorch's kernel set here does, asked once a step (the C++ rule asks itself).
    const fused = atenCapability() !== 'DEFAULT';
    s.before.counters.set(s.counters);
    let failed = -1;
    for (let i = 0; i < s.names.length && failed < 0; i++) {
      const k = s.names[i];
      const slot = s.slots[k];
      const b = s.before.tensors[k];
      if (!core) {
        b.W.set(s.params[k]);
        if (slot.m) b.m!.set(slot.m);
        if (slot.v) b.v!.set(slot.v);
        if (slot.vmax) b.vmax!.set(slot.vmax);
      }
      // From here on tensor i may differ from its copy. The C++ rule copies each value into b in
      // the same loop, just before overwriting it: one native call runs whole (a worker's
      // terminate() waits for it), so by the time anything can read b it holds the whole tensor.
      Atomics.store(s.control, TOUCHED, i + 1);
      const finite = core
        ? core.optimizerUpdate(s.params[k], s.grads[k], slot.m, slot.v, OPTIMIZER_CODE[o.name], lr, t, o.momentum, o.beta1, o.beta2, o.epsilon, o.weightDecay, o.dampening, slot.vmax ?? null,
          b.W, b.m, b.v, b.vmax)
        : update(o, s.params[k], s.grads[k], slot, lr, t, fused);
      if (!finite) failed = i;
    }
    if (failed < 0) {
      s.counters[COUNTER.steps] = t;
      advance?.();
      Atomics.store(s.control, TOUCHED, 0); // the step is whole
      return;
    }
    const k = s.names[failed];
    const slot = s.slots[k];
    // Name the first non-finite value (the weights first, then the optimizer state), then restore.
    const where = ([[k, s.params[k]], [`optimizer.${k}.m`, slot.m], [`optimizer.${k}.v`, slot.v], [`optimizer.${k}.vmax`, slot.vmax]] as const)
      .map(([name, a]) => ({ name, a, i: a ? firstNonFinite(a) : -1 }))
      .find((w) => w.i >= 0) ?? { name: k, a: s.params[k], i: 0 }; // (the loop said one is there)
    const value = where.a![where.i];
    restoreTensors(s, failed + 1);
    Atomics.store(s.control, TOUCHED, 0);
    v.fail(RangeError, `finite values after the update of step ${t}`, where.name, new v.Received(
      `${value} at index ${where.i} (lr = ${lr}; the weights and optimizer state are left as after step ${t - 1})`,
    ));
  });
}
