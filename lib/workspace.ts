import type { Dims, FloatArray } from './types';

// The layout of the intermediate-tensor buffer, identical to carveWorkspace in native/core/mlp.h:
// [Z1 | A1 | dZ1 | logits | probs | dZ2], sizes BH, BH, BH, BC, BC, BC.
export function workspaceLength(d: Dims): number {
  return 3 * d.B * d.H + 3 * d.B * d.C;
}

export interface WorkspaceViews<T extends FloatArray> {
  Z1: T;
  A1: T;
  dZ1: T;
  logits: T;
  probs: T;
  dZ2: T;
}

export function carveWorkspace<T extends FloatArray>(ws: T, d: Dims): WorkspaceViews<T> {
  const bh = d.B * d.H;
  const bc = d.B * d.C;
  const at = (start: number, len: number) => ws.subarray(start, start + len) as T;
  return {
    Z1: at(0, bh),
    A1: at(bh, bh),
    dZ1: at(2 * bh, bh),
    logits: at(3 * bh, bc),
    probs: at(3 * bh + bc, bc),
    dZ2: at(3 * bh + 2 * bc, bc),
  };
}
