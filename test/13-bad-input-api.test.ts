// The rest of the public surface under bad input: each call is a TypeError/RangeError (or an
// ERR_FILE HandgradError for file contents) that names what was wrong; afterwards a valid step
// still reproduces PyTorch. test/04 holds forwardBackward/forward and the raw exports.
import { describe, expect, it } from 'vitest';
import * as hg from '../lib';
import { backendTitle, caseParams, errEps, jsonCases, skipReason, typed } from './helpers';

const golden = jsonCases().find((c) => c.name.startsWith('seed-toy'))!;
const params = () => caseParams(golden);
const X = () => typed('float64', golden.inputs.X);
const y = () => Int32Array.from(golden.inputs.y);

type Row = [string, typeof TypeError | typeof RangeError | 'ERR_FILE', RegExp, () => unknown];

const rows: Row[] = [
  ['softmax: C not an integer', RangeError, /for C but received 1.5/, () => hg.softmax(new Float64Array(6), 1.5)],
  ['softmax: length not a multiple of C', RangeError, /multiple of C = 4 elements for logits/, () => hg.softmax(new Float64Array(6), 4)],
  ['probs: float32 X with float64 params', TypeError, /for X but received Float32Array/, () => hg.probs(params(), new Float32Array(10))],
  ['predict: unknown activation', RangeError, /for opts.activation/, () => hg.predict(params(), X(), { activation: 'elu' as never })],
  ['initParams: unknown init', RangeError, /for opts.init but received "kaiming"/, () => hg.initParams({ D: 2, H: 2, C: 2 }, { init: 'kaiming' as never })],
  ['initParams: non-integer seed', TypeError, /for opts.seed but received 0.5/, () => hg.initParams({ D: 2, H: 2, C: 2 }, { seed: 0.5 })],
  ['initParams: dims missing', TypeError, /for dims but received undefined/, () => hg.initParams(undefined as never)],
  ['Trainer: batchSize 0', RangeError, /for opts.batchSize but received 0/, () => new hg.Trainer(params(), { batchSize: 0 })],
  ['Trainer: momentum 2', RangeError, /for opts.momentum but received 2/, () => new hg.Trainer(params(), { optimizer: 'momentum', momentum: 2 })],
  ['Trainer: unknown schedule', RangeError, /for opts.schedule.type/, () => new hg.Trainer(params(), { schedule: { type: 'linear' } as never })],
  ['Trainer.step: more labels than batchSize', RangeError, /at most batchSize = 2 labels for y/, () => new hg.Trainer(params(), { batchSize: 2 }).step(X(), y())],
  ['Trainer.evaluate: labels out of range', RangeError, /labels in \[0, 3\) for y but received 5/, () => new hg.Trainer(params()).evaluate(X(), [0, 1, 5, 2])],
  ['Trainer.fitSync: NaN in X', RangeError, /finite values in X but received NaN at index 2/, () => new hg.Trainer(params()).fitSync(X().fill(NaN, 2, 3), y())],
  ['Trainer.fitSync: validation of another width', RangeError, /Expected 5 elements for validation.X but received Float64Array of length 7/, () => new hg.Trainer(params()).fitSync(X(), y(), { validation: { X: new Float64Array(7), y: [0] } })],
  ['verify: unknown reference', RangeError, /for opts.reference but received "jax"/, () => hg.verify(params(), X(), y(), { reference: 'jax' as never })],
  ['verify: candidate not a function or backend', TypeError, /for opts.candidate but received 42/, () => hg.verify(params(), X(), y(), { candidate: 42 as never })],
  ['gradcheck: negative step', RangeError, /positive finite number for opts.eps but received -1/, () => hg.gradcheck(params(), X(), y(), { eps: -1 })],
  ['gradcheck: unknown mode', RangeError, /for opts.mode but received "turbo"/, () => hg.gradcheck(params(), X(), y(), { mode: 'turbo' as never })],
  ['saveParams: not params', TypeError, /for params/, () => hg.saveParams('/tmp/never.safetensors', {} as never)],
  ['loadParams: missing file', 'ERR_FILE', /never-there/, () => hg.loadParams('/tmp/handgrad-never-there.safetensors')],
  ['readSafetensors: 3 bytes', 'ERR_FILE', /at least 8 bytes \(the header length\) for the safetensors file but received 3 bytes/, () => hg.readSafetensors(new Uint8Array(3))],
  ['readCsv: ragged row', 'ERR_FILE', /line 3/, () => hg.readCsv({ text: 'a,b,c\n1,2,0\n1,0\n' })],
  ['trainValSplit: fraction 1', RangeError, /number in \(0, 1\) for opts.fraction but received 1/, () => hg.trainValSplit(X(), y(), 5, { fraction: 1 })],
  ['fitStandardizer: X not a multiple of D', RangeError, /for X/, () => hg.fitStandardizer(new Float64Array(7), 2)],
  ['xor: negative n', RangeError, /for opts.n/, () => hg.xor({ n: -1 })],
  ['spirals: unknown option', TypeError, /Expected no option 'arms' for opts; the options are n, classes/, () => hg.spirals({ arms: 3 } as never)],
];

// Rows that need the LibTorch addon (without it the call is ERR_TORCH_UNAVAILABLE first).
const torchRows: Row[] = [
  ['setTorchThreads: 0', RangeError, /positive 32-bit integer for threads but received 0/, () => hg.setTorchThreads(0)],
];
const torchSkip = skipReason('torch');

function refusedClearly(kind: Row[1], message: RegExp, call: () => unknown): void {
  let thrown: unknown;
  try {
    call();
  } catch (e) {
    thrown = e;
  }
  if (kind === 'ERR_FILE') {
    expect(thrown).toBeInstanceOf(hg.HandgradError);
    expect((thrown as hg.HandgradError).code).toBe('ERR_FILE');
  } else {
    expect(thrown).toBeInstanceOf(kind);
  }
  expect((thrown as Error).message).toMatch(message);
  const r = hg.forwardBackward(params(), X(), y(), { inputGrad: true });
  expect(errEps(r.grads.dW1, golden.expected.dW1, 'float64')).toBeLessThanOrEqual(8);
}

describe('every public function refuses bad input clearly, and the next call is exact', () => {
  it.each(rows)('%s', (_, kind, message, call) => refusedClearly(kind, message, call));
  for (const [name, kind, message, call] of torchRows) {
    it.skipIf(torchSkip)(backendTitle(name, 'torch', torchSkip), () => refusedClearly(kind, message, call));
  }
});
