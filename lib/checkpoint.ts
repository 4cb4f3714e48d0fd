// Parameters (and, for a Trainer, its optimizer state) to and from safetensors files.
//
// handgrad layout: W1 [D,H], b1 [H], W2 [H,C], b2 [C], as the math is written (X·W1).
// PyTorch layout: nn.Linear(D, H) stores weight as [H, D] — that is W1ᵀ — because it computes
// x·weightᵀ. A state_dict of nn.Sequential(Linear(D,H), ReLU(), Linear(H,C)) saved with
// safetensors.torch.save_file holds "0.weight" [H,D], "0.bias" [H], "2.weight" [C,H], "2.bias" [C].
import { HandgradError } from './errors';
import { loadSafetensors, saveSafetensors, type SafetensorsFile, type TensorInput, tensorOf } from './io/safetensors';
import type { Activation, FloatArray } from './types';
import * as v from './validate';

export type Layout = 'handgrad' | 'torch';

export interface SavedParams {
  D: number;
  H: number;
  C: number;
  W1: FloatArray;
  b1: FloatArray;
  W2: FloatArray;
  b2: FloatArray;
}

/** A [rows, cols] row-major matrix transposed into a new array of the same dtype. */
export function transpose<T extends FloatArray>(a: T, rows: number, cols: number): T {
  const out = new (a.constructor as { new (n: number): T })(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** The tensors of a parameter set in the chosen layout, ready for writeSafetensors. */
export function paramTensors(p: SavedParams, layout: Layout = 'handgrad'): Record<string, TensorInput> {
  const { D, H, C } = p;
  if (layout === 'torch') {
    return {
      '0.weight': { shape: [H, D], data: transpose(p.W1, D, H) },
      '0.bias': { shape: [H], data: p.b1 },
      '2.weight': { shape: [C, H], data: transpose(p.W2, H, C) },
      '2.bias': { shape: [C], data: p.b2 },
    };
  }
  return {
    W1: { shape: [D, H], data: p.W1 },
    b1: { shape: [H], data: p.b1 },
    W2: { shape: [H, C], data: p.W2 },
    b2: { shape: [C], data: p.b2 },
  };
}

/**
 * Saves parameters, with dims and activation in the metadata.
 * @throws {TypeError|RangeError} bad params; {HandgradError} ERR_FILE when the file cannot be written
 */
export function saveParams(path: string, params: SavedParams | Omit<SavedParams, 'D' | 'H' | 'C'>, opts: { activation?: Activation; layout?: Layout; metadata?: Record<string, string> } = {}): void {
  const p = v.params(params);
  const layout = v.oneOf('opts.layout', opts.layout, ['handgrad', 'torch'] as const, 'handgrad');
  const activation = v.oneOf('opts.activation', opts.activation, v.ACTIVATIONS, 'relu');
  saveSafetensors(path, paramTensors(p, layout), {
    ...opts.metadata,
    format: 'handgrad',
    layout,
    activation,
    dtype: p.dtype,
    D: String(p.D),
    H: String(p.H),
    C: String(p.C),
  });
}

/** Reads W1, b1, W2, b2 from either layout (the names tell which), in the file's float dtype. */
export function paramsFromFile(file: SafetensorsFile, source: string): SavedParams & { layout: Layout } {
  const layout: Layout = '0.weight' in file.tensors ? 'torch' : 'handgrad';
  const names = layout === 'torch' ? ['0.weight', '0.bias', '2.weight', '2.bias'] : ['W1', 'b1', 'W2', 'b2'];
  const [w1, b1, w2, b2] = names.map((n) => tensorOf(file, n, ['F64', 'F32'], source));
  const fail = (what: string, name: string, got: string): never => {
    throw new HandgradError('ERR_FILE', `Expected ${what} for ${name} but received ${got} (${source})`);
  };
  for (const [t, n] of [[w1, names[0]], [w2, names[2]]] as const) if (t.shape.length !== 2) fail('a 2-D tensor', n, `shape [${t.shape}]`);
  for (const [t, n] of [[b1, names[1]], [b2, names[3]]] as const) if (t.shape.length !== 1) fail('a 1-D tensor', n, `shape [${t.shape}]`);
  if (new Set([w1.dtype, b1.dtype, w2.dtype, b2.dtype]).size !== 1) fail('one float dtype', 'the parameters', [w1, b1, w2, b2].map((t) => t.dtype).join(', '));
  const H = b1.shape[0];
  const C = b2.shape[0];
  const D = layout === 'torch' ? w1.shape[1] : w1.shape[0];
  const wantW1 = layout === 'torch' ? [H, D] : [D, H];
  const wantW2 = layout === 'torch' ? [C, H] : [H, C];
  if (w1.shape.join() !== wantW1.join()) fail(`shape [${wantW1}]`, names[0], `[${w1.shape}]`);
  if (w2.shape.join() !== wantW2.join()) fail(`shape [${wantW2}]`, names[2], `[${w2.shape}]`);
  const data = (t: typeof w1) => (t.data as FloatArray).slice() as FloatArray;
  return {
    layout,
    D,
    H,
    C,
    W1: layout === 'torch' ? transpose(w1.data as FloatArray, H, D) : data(w1),
    b1: data(b1),
    W2: layout === 'torch' ? transpose(w2.data as FloatArray, C, H) : data(w2),
    b2: data(b2),
  };
}

/**
 * Loads parameters written by saveParams, Trainer.save, or PyTorch (see the layout note above).
 * @throws {HandgradError} ERR_FILE for a missing, malformed or mismatched file
 */
export function loadParams(path: string): SavedParams & { layout: Layout; activation?: Activation; metadata: Record<string, string> } {
  const file = loadSafetensors(path);
  const p = paramsFromFile(file, path);
  const act = file.metadata.activation;
  return { ...p, activation: (v.ACTIVATIONS as readonly string[]).includes(act) ? (act as Activation) : undefined, metadata: file.metadata };
}
