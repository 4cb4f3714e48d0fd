import * as v from '../validate';

/**
 * Learning-rate schedules, stepped once per epoch like torch.optim.lr_scheduler:
 * - 'constant'
 * - { type: 'step', every: k, gamma }: lr·gamma^⌊epoch/k⌋ (StepLR)
 * - { type: 'cosine', epochs: T, minLr }: minLr + (lr − minLr)(1 + cos(π·epoch/T))/2 (CosineAnnealingLR,
 *   past T too: back up to lr at 2T)
 * Closed forms, in double: torch's schedulers update the lr epoch by epoch (StepLR multiplies by
 * gamma, CosineAnnealingLR by a ratio of cosines), so their lr can differ in the last bit.
 */
export type Schedule = 'constant' | { type: 'step'; every: number; gamma?: number } | { type: 'cosine'; epochs: number; minLr?: number };

/** A schedule, checked; `name` names it in errors (a checkpoint's settings are checked the same way). @throws {TypeError|RangeError} */
export function checkSchedule(s: unknown, name = 'opts.schedule'): Schedule {
  if (s === undefined || s === 'constant') return 'constant';
  if (s === null || typeof s !== 'object') v.fail(TypeError, "'constant', { type: 'step', … } or { type: 'cosine', … }", name, s);
  const o = s as Record<string, unknown>;
  const number = (key: string, ok: (x: number) => boolean, what: string) => {
    const x = o[key];
    if (x === undefined) return undefined;
    if (typeof x !== 'number') v.fail(TypeError, 'a number', `${name}.${key}`, x);
    if (!(Number.isFinite(x) && ok(x))) v.fail(RangeError, what, `${name}.${key}`, x);
    return x;
  };
  if (o.type === 'step') {
    v.options(name, o, ['type', 'every', 'gamma'] as const);
    v.dim(`${name}.every`, o.every);
    const gamma = number('gamma', (x) => x > 0 && x <= 1, 'a number in (0, 1]');
    return { type: 'step', every: o.every as number, gamma: gamma ?? 0.1 };
  }
  if (o.type === 'cosine') {
    v.options(name, o, ['type', 'epochs', 'minLr'] as const);
    v.dim(`${name}.epochs`, o.epochs);
    const minLr = number('minLr', (x) => x >= 0, 'a finite number ≥ 0');
    return { type: 'cosine', epochs: o.epochs as number, minLr: minLr ?? 0 };
  }
  return v.fail(RangeError, "type 'step' or 'cosine'", `${name}.type`, o.type);
}

export function learningRate(s: Schedule, lr: number, epoch: number): number {
  if (s === 'constant') return lr;
  if (s.type === 'step') return lr * (s.gamma ?? 0.1) ** Math.floor(epoch / s.every);
  // Past T the cosine goes on, back up to lr at 2T, as CosineAnnealingLR does: holding minLr there
  // (0 by default) froze the weights while the history went on reporting epochs.
  const minLr = s.minLr ?? 0;
  return minLr + ((lr - minLr) * (1 + Math.cos((Math.PI * epoch) / s.epochs))) / 2;
}
