import * as v from '../validate';

/**
 * Learning-rate schedules, stepped once per epoch like torch.optim.lr_scheduler:
 * - 'constant'
 * - { type: 'step', every: k, gamma }: lr·gamma^⌊epoch/k⌋ (StepLR)
 * - { type: 'cosine', epochs: T, minLr }: minLr + (lr − minLr)(1 + cos(π·epoch/T))/2 (CosineAnnealingLR)
 */
export type Schedule = 'constant' | { type: 'step'; every: number; gamma?: number } | { type: 'cosine'; epochs: number; minLr?: number };

export function checkSchedule(s: unknown): Schedule {
  if (s === undefined || s === 'constant') return 'constant';
  if (s === null || typeof s !== 'object') v.fail(TypeError, "'constant', { type: 'step', … } or { type: 'cosine', … }", 'opts.schedule', s);
  const o = s as Record<string, unknown>;
  if (o.type === 'step') {
    v.options('opts.schedule', o, ['type', 'every', 'gamma'] as const);
    v.dim('opts.schedule.every', o.every);
    if (o.gamma !== undefined && !(typeof o.gamma === 'number' && o.gamma > 0 && o.gamma <= 1)) v.fail(RangeError, 'a number in (0, 1]', 'opts.schedule.gamma', o.gamma);
    return { type: 'step', every: o.every as number, gamma: (o.gamma as number | undefined) ?? 0.1 };
  }
  if (o.type === 'cosine') {
    v.options('opts.schedule', o, ['type', 'epochs', 'minLr'] as const);
    v.dim('opts.schedule.epochs', o.epochs);
    if (o.minLr !== undefined && !(typeof o.minLr === 'number' && o.minLr >= 0 && Number.isFinite(o.minLr))) v.fail(RangeError, 'a number ≥ 0', 'opts.schedule.minLr', o.minLr);
    return { type: 'cosine', epochs: o.epochs as number, minLr: (o.minLr as number | undefined) ?? 0 };
  }
  return v.fail(RangeError, "type 'step' or 'cosine'", 'opts.schedule.type', o.type);
}

export function learningRate(s: Schedule, lr: number, epoch: number): number {
  if (s === 'constant') return lr;
  if (s.type === 'step') return lr * (s.gamma ?? 0.1) ** Math.floor(epoch / s.every);
  const minLr = s.minLr ?? 0;
  const e = Math.min(epoch, s.epochs);
  return minLr + ((lr - minLr) * (1 + Math.cos((Math.PI * e) / s.epochs))) / 2;
}
