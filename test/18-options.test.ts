// Every option object of the public API is checked (lib/validate.ts `options`): an unknown key is a
// TypeError that names it, with "did you mean" for a near miss and for the names users bring from
// PyTorch, tfjs, Keras and scikit-learn; an option PyTorch has that handgrad does not support yet
// (F.cross_entropy's weight, ignore_index, label_smoothing) is
// refused by name, never ignored. One row per (entry point, misspelt or foreign key), then one row
// per entry point with its options spelt right, then the CLI's flags in child processes.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  blobs, fitStandardizer, forward, forwardBackward, gradcheck, initParams, Linear, loadDigits, loadIdx, loadMnist, loadParams,
  loadSafetensors, loadSequential, predict, probs, readCsv, readIdx, readSafetensors, saveParams, saveSafetensors, saveSequential,
  Sequential, SoftmaxCrossEntropy, spirals, Trainer, trainValSplit, verify, writeSafetensors, xor,
} from '../lib';
import { FIXTURES } from './helpers';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'lib', 'cli.js');
const tmp = mkdtempSync(join(tmpdir(), 'handgrad-options-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// A tiny problem: B = 4, D = 2, H = 3, C = 2. Built inside each row, so one entry point's failure
// is that row's alone.
const X = Float64Array.from([0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, -0.8]);
const y = Int32Array.from([0, 1, 1, 0]);
const params = () => initParams({ D: 2, H: 3, C: 2 }, { seed: 1 });
const seq = () => Sequential.mlp([2, 3, 2], { seed: 1 });
const trainer = () => new Trainer(params(), { batchSize: 4 });
const file = (name: string) => join(tmp, name);
const savedParams = () => (saveParams(file('p.safetensors'), params()), file('p.safetensors'));
const savedSequential = () => (saveSequential(file('s.safetensors'), seq()), file('s.safetensors'));
const savedTrainer = () => (trainer().save(file('t.safetensors')), file('t.safetensors'));
const tensors = { W: { shape: [2], data: new Float64Array(2) } };
const csv = { text: 'a,b,y\n1,2,0\n3,4,1\n' };
/** An option object the types refuse (the point of these rows). */
const bad = (o: object) => o as never;
/** Methods called with an argument their types do not declare. */
const loose = (o: object) => o as Record<string, (...args: unknown[]) => unknown>;

/** IDX bytes: 00 00 08 (uint8) k, k big-endian sizes, the data. */
function idx(shape: number[], data: number[]): Uint8Array {
  const b = new Uint8Array(4 + 4 * shape.length + data.length);
  b.set([0, 0, 8, shape.length]);
  shape.forEach((s, i) => new DataView(b.buffer).setUint32(4 + 4 * i, s, false));
  b.set(data, 4 + 4 * shape.length);
  return b;
}
/** A two-image, 2×2-pixel MNIST folder. */
function mnistDir(): string {
  const dir = file('mnist');
  if (!existsSync(dir)) {
    mkdirSync(dir);
    for (const prefix of ['train', 't10k']) {
      writeFileSync(join(dir, `${prefix}-images-idx3-ubyte`), idx([2, 2, 2], [0, 64, 128, 255, 255, 128, 64, 0]));
      writeFileSync(join(dir, `${prefix}-labels-idx1-ubyte`), idx([2], [0, 1]));
    }
  }
  return dir;
}
const idxFile = () => (writeFileSync(file('a.idx'), idx([2], [1, 2])), file('a.idx'));

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** Names the key and guesses the right one. */
const near = (key: string, right: string) => new RegExp(`^Expected no option '${esc(key)}' for [\\w.]+ \\(did you mean '${esc(right)}'\\?\\); the options are `);
/** Names the key (no guess asked for: nothing near it). */
const unknown = (key: string) => new RegExp(`^Expected no option '${esc(key)}' for [\\w.]+[ ;]`);

type Row = [entry: string, call: () => unknown, message: RegExp];

const MISSPELT: Row[] = [
  // The two-layer functions (lib/model.ts, lib/params.ts).
  ['forwardBackward', () => forwardBackward(params(), X, y, bad({ activaton: 'tanh' })), near('activaton', 'activation')],
  ['forwardBackward', () => forwardBackward(params(), X, y, bad({ label_smoothing: 0.1 })), near('label_smoothing', 'labelSmoothing')],
  ['forwardBackward', () => forwardBackward(params(), X, y, bad({ ignore_index: -100 })), near('ignore_index', 'ignoreIndex')],
  ['forwardBackward', () => forwardBackward(params(), X, y, bad({ reduce: 'sum' })), near('reduce', 'reduction')],
  ['forwardBackward', () => forwardBackward(params(), X, y, bad({ input_grad: true })), near('input_grad', 'inputGrad')],
  ['forward', () => forward(params(), X, bad({ backnd: 'ts' })), near('backnd', 'backend')],
  ['probs', () => probs(params(), X, bad({ activation_fn: 'tanh' })), near('activation_fn', 'activation')],
  ['predict', () => predict(params(), X, bad({ device: 'cpu' })), near('device', 'backend')],
  ['initParams', () => initParams({ D: 2, H: 3, C: 2 }, bad({ dtyp: 'float32' })), near('dtyp', 'dtype')],
  ['initParams', () => initParams({ D: 2, H: 3, C: 2 }, bad({ random_state: 0 })), near('random_state', 'seed')],
  // Layers (lib/layers).
  ['Linear', () => new Linear(2, 3, bad({ sed: 1 })), near('sed', 'seed')],
  ['Linear', () => new Linear(2, 3, bad({ kernel_initializer: 'he' })), near('kernel_initializer', 'init')],
  ['SoftmaxCrossEntropy', () => new SoftmaxCrossEntropy(bad({ label_smoothing: 0.2 })), near('label_smoothing', 'labelSmoothing')],
  ['SoftmaxCrossEntropy', () => new SoftmaxCrossEntropy(bad({ ignore_index: -100 })), near('ignore_index', 'ignoreIndex')],
  ['SoftmaxCrossEntropy', () => new SoftmaxCrossEntropy(bad({ reducton: 'sum' })), near('reducton', 'reduction')],
  ['Sequential', () => new Sequential([new Linear(2, 2)], bad({ los: new SoftmaxCrossEntropy() })), near('los', 'loss')],
  ['Sequential.mlp', () => Sequential.mlp([2, 3, 2], bad({ activaton: 'tanh' })), near('activaton', 'activation')],
  ['Sequential.mlp', () => Sequential.mlp([2, 3, 2], bad({ random_seed: 1 })), near('random_seed', 'seed')],
  ['seq.forwardBackward', () => seq().forwardBackward(X, y, bad({ input_grad: true })), near('input_grad', 'inputGrad')],
  ['seq.forwardBackward', () => seq().forwardBackward(X, y, bad({ ignore_index: -100 })), near('ignore_index', 'ignoreIndex')],
  ['seq.forward', () => seq().forward(X, bad({ backnd: 'ts' })), near('backnd', 'backend')],
  ['seq.predict', () => seq().predict(X, bad({ device: 'cpu' })), near('device', 'backend')],
  ['seq.evaluate', () => seq().evaluate(X, y, bad({ batch_size: 2 })), near('batch_size', 'batchSize')],
  // Training (lib/train).
  ['Trainer', () => new Trainer(params(), bad({ learningRate: 0.5 })), near('learningRate', 'lr')],
  ['Trainer', () => new Trainer(params(), bad({ learning_rate: 0.5 })), near('learning_rate', 'lr')],
  ['Trainer', () => new Trainer(params(), bad({ weight_decay: 1e-4 })), near('weight_decay', 'weightDecay')],
  ['Trainer', () => new Trainer(params(), bad({ batch_size: 8 })), near('batch_size', 'batchSize')],
  ['Trainer', () => new Trainer(params(), bad({ betas: [0.9, 0.999] })), near('betas', 'beta1 and beta2')],
  ['Trainer opts.schedule', () => new Trainer(params(), bad({ schedule: { type: 'step', every: 2, gama: 0.5 } })), near('gama', 'gamma')],
  ['trainer.fitSync', () => trainer().fitSync(X, y, bad({ epoch: 3, callbacks: [] })), near('epoch', 'epochs')],
  // fit takes tfjs's callbacks { onEpochEnd, onStep } and validationSplit (test/50): their misspellings are near misses.
  ['trainer.fitSync', () => trainer().fitSync(X, y, bad({ callback: () => {} })), near('callback', 'onProgress')],
  ['trainer.fitSync opts.callbacks', () => trainer().fitSync(X, y, bad({ callbacks: { onBatchEnd: () => {} } })), near('onBatchEnd', 'onStep')],
  ['trainer.fitSync', () => trainer().fitSync(X, y, bad({ validation_split: 0.2 })), near('validation_split', 'validationSplit')],
  ['Trainer', () => new Trainer(params(), bad({ validationSplit: 0.2 })), /^Expected no option 'validationSplit' for opts: validationSplit is an option of trainer\.fit/],
  ['trainer.fitSync', () => trainer().fitSync(X, y, bad({ patience: 3 })), near('patience', 'earlyStop: { patience }')],
  ['trainer.fitSync opts.earlyStop', () => trainer().fitSync(X, y, bad({ earlyStop: { patience: 2, min_delta: 0.01 } })), near('min_delta', 'minDelta')],
  ['trainer.fitSync opts.validation', () => trainer().fitSync(X, y, bad({ validation: { x: X, y } })), near('x', 'X')],
  ['trainer.fit', () => trainer().fit(X, y, bad({ epoch: 3 })), near('epoch', 'epochs')],
  // These take no options today (nor do loadParams, loadSequential, loadIdx, fitStandardizer): an
  // options object is refused all the same, never ignored.
  ['trainer.evaluate', () => loose(trainer()).evaluate(X, y, { batch_size: 2 }), unknown('batch_size')],
  ['trainer.step', () => loose(trainer()).step(X, y, { learning_rate: 0.1 }), unknown('learning_rate')],
  ['trainer.save', () => loose(trainer()).save(file('bad.safetensors'), { layot: 'torch' }), unknown('layot')],
  ['Trainer.load', () => Trainer.load(savedTrainer(), bad({ learning_rate: 0.1 })), near('learning_rate', 'lr')],
  // Proofs (lib/verify).
  ['verify', () => verify(params(), X, y, bad({ candidat: 'ts' })), near('candidat', 'candidate')],
  ['verify (Sequential)', () => verify(seq(), X, y, bad({ referense: 'fd' })), near('referense', 'reference')],
  ['gradcheck', () => gradcheck(params(), X, y, bad({ mod: 'fast' })), near('mod', 'mode')],
  ['gradcheck', () => gradcheck(params(), X, y, bad({ fast_mode: true })), near('fast_mode', 'mode')],
  ['gradcheck (Sequential)', () => gradcheck(seq(), X, y, bad({ atoll: 1e-5 })), near('atoll', 'atol')],
  // Model files (lib/checkpoint.ts).
  ['saveParams', () => saveParams(file('bad.safetensors'), params(), bad({ layot: 'torch' })), near('layot', 'layout')],
  ['loadParams', () => loose({ loadParams }).loadParams(savedParams(), { layot: 'torch' }), unknown('layot')],
  ['saveSequential', () => saveSequential(file('bad.safetensors'), seq(), bad({ layot: 'torch' })), near('layot', 'layout')],
  ['loadSequential', () => loose({ loadSequential }).loadSequential(savedSequential(), { dtyp: 'float32' }), unknown('dtyp')],
  // Tensor files (lib/io/safetensors.ts).
  ['readSafetensors', () => readSafetensors(writeSafetensors(tensors), bad({ cpoy: true })), near('cpoy', 'copy')],
  ['loadSafetensors', () => (saveSafetensors(file('w.safetensors'), tensors), loadSafetensors(file('w.safetensors'), bad({ cpy: true }))), near('cpy', 'copy')],
  ['saveSafetensors tensors.W', () => saveSafetensors(file('bad.safetensors'), bad({ W: { shape: [2], data: new Float64Array(2), dtyp: 'F64' } })), near('dtyp', 'dtype')],
  ['writeSafetensors tensors.W', () => writeSafetensors(bad({ W: { shape: [2], data: new Float32Array(2), type: 'F32' } })), near('type', 'dtype')],
  // Data (lib/data).
  ['xor', () => xor(bad({ n_samples: 10 })), near('n_samples', 'n')],
  ['spirals', () => spirals(bad({ arms: 3 })), unknown('arms')],
  ['spirals', () => spirals(bad({ num_classes: 3 })), near('num_classes', 'classes')],
  ['blobs', () => blobs(bad({ random_state: 0 })), near('random_state', 'seed')],
  ['readCsv', () => readCsv(csv, bad({ sep: ';' })), near('sep', 'delimiter')],
  ['readCsv', () => readCsv(csv, bad({ labl: 'y' })), near('labl', 'label')],
  ['loadDigits', () => loadDigits(bad({ dtyp: 'float32' })), near('dtyp', 'dtype')],
  ['loadMnist', () => loadMnist(bad({ dirr: mnistDir() })), near('dirr', 'dir')],
  ['readIdx', () => readIdx(idx([2], [1, 2]), bad({ sourc: 'a.idx' })), near('sourc', 'source')],
  ['loadIdx', () => loadIdx(idxFile(), bad({ source: 'a.idx' })), unknown('source')],
  ['trainValSplit', () => trainValSplit(X, y, 2, bad({ test_size: 0.25 })), near('test_size', 'fraction')],
  ['trainValSplit', () => trainValSplit(X, y, 2, bad({ validationSplit: 0.25 })), near('validationSplit', 'fraction')],
  ['trainValSplit', () => trainValSplit(X, y, 2, bad({ random_state: 0 })), near('random_state', 'seed')],
  ['fitStandardizer', () => fitStandardizer(X, 2, bad({ with_mean: false })), unknown('with_mean')],
];

const SPELT_RIGHT: [entry: string, call: () => unknown][] = [
  ['forwardBackward', () => forwardBackward(params(), X, y, { activation: 'tanh', reduction: 'sum', inputGrad: true, cache: true })],
  ['forward', () => forward(params(), X, { backend: 'ts', activation: 'tanh' })],
  ['probs', () => probs(params(), X, { activation: 'tanh' })],
  ['predict', () => predict(params(), X, { backend: 'native' })],
  ['initParams', () => initParams({ D: 2, H: 3, C: 2 }, { dtype: 'float32', seed: 0, init: 'torch' })],
  ['Linear', () => new Linear(2, 3, { seed: 1, init: 'xavier', dtype: 'float32' })],
  ['SoftmaxCrossEntropy', () => new SoftmaxCrossEntropy({ reduction: 'sum' })],
  ['SoftmaxCrossEntropy, F.cross_entropy\'s options', () => new SoftmaxCrossEntropy({ weight: Float64Array.of(1, 5), ignoreIndex: -1, labelSmoothing: 0.2 })],
  ['Sequential', () => new Sequential([new Linear(2, 2)], { loss: new SoftmaxCrossEntropy() })],
  ['Sequential.mlp', () => Sequential.mlp([2, 3, 2], { activation: 'tanh', seed: 1 })],
  ['seq.forwardBackward', () => seq().forwardBackward(X, y, { inputGrad: true, reduction: 'sum' })],
  ['seq.forwardBackward, F.cross_entropy\'s options', () => seq().forwardBackward(X, y, { weight: Float64Array.of(1, 5), ignoreIndex: 1, labelSmoothing: 0.1 })],
  ['seq.forward', () => seq().forward(X, { backend: 'ts' })],
  ['seq.predict', () => seq().predict(X, { backend: 'native' })],
  ['seq.evaluate', () => seq().evaluate(X, y, { batchSize: 2 })],
  ['Trainer', () => new Trainer(params(), { lr: 0.5, weightDecay: 1e-4, batchSize: 8, schedule: { type: 'step', every: 2, gamma: 0.5 } })],
  ['trainer.fitSync', () => trainer().fitSync(X, y, { epochs: 2, onProgress: () => {}, validation: { X, y }, earlyStop: { patience: 2, minDelta: 0.01 } })],
  ['trainer.fitSync, tfjs\'s conveniences', () => trainer().fitSync(X, y, { epochs: 2, validationSplit: 0.25, callbacks: { onEpochEnd: () => {}, onStep: () => {} }, restoreBest: true })],
  // A loader's data set as it came (readCsv's fields); a key no data set has is refused (test/61).
  ['trainer.fitSync, validation a data set with fields of its own', () => trainer().fitSync(X, y, { epochs: 1, validation: { X, y, D: 2, C: 2, featureNames: ['a', 'b'], labelName: 'y' } })],
  ['trainer.fit', () => trainer().fit(X, y, { epochs: 1 })],
  ['Trainer.load', () => Trainer.load(savedTrainer(), { lr: 0.01 })],
  ['verify', () => verify(params(), X, y, { candidate: 'ts', reference: 'fd' })],
  ['verify (Sequential)', () => verify(seq(), X, y, { reference: 'fd' })],
  ['gradcheck', () => gradcheck(params(), X, y, { mode: 'fast', backend: 'ts' })],
  ['gradcheck (Sequential)', () => gradcheck(seq(), X, y, { atol: 1e-5 })],
  ['saveParams', () => saveParams(file('ok.safetensors'), params(), { layout: 'torch' })],
  ['saveSequential', () => saveSequential(file('ok.safetensors'), seq(), { layout: 'torch' })],
  ['readSafetensors', () => readSafetensors(writeSafetensors(tensors), { copy: true, source: 'bytes' })],
  ['loadSafetensors', () => (saveSafetensors(file('w.safetensors'), tensors), loadSafetensors(file('w.safetensors'), { copy: true }))],
  ['saveSafetensors', () => saveSafetensors(file('ok.safetensors'), { W: { shape: [2], data: new Float64Array(2), dtype: 'F64' } })],
  ['writeSafetensors', () => writeSafetensors({ W: { shape: [2], data: [1, 2], dtype: 'F32' } })],
  ['xor', () => xor({ n: 10 })],
  ['spirals', () => spirals({ classes: 3 })],
  ['blobs', () => blobs({ seed: 0 })],
  ['readCsv', () => readCsv(csv, { delimiter: ',', label: 'y' })],
  ['loadDigits', () => loadDigits({ dtype: 'float32' })],
  ['loadMnist', () => loadMnist({ dir: mnistDir(), dtype: 'float32' })],
  ['readIdx', () => readIdx(idx([2], [1, 2]), { source: 'a.idx' })],
  ['loadIdx', () => loadIdx(idxFile())],
  ['trainValSplit', () => trainValSplit(X, y, 2, { fraction: 0.25, seed: 0 })],
  ['fitStandardizer', () => fitStandardizer(X, 2)],
];

function thrown(call: () => unknown): unknown {
  try {
    call();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('an unknown option is a TypeError naming it, with did-you-mean; PyTorch options not supported yet are refused by name', () => {
  // Titled by entry point and key: "forwardBackward 'activaton'".
  it.each(MISSPELT.map(([entry, call, message]) => [`${entry} ${/'[^']+'/.exec(message.source)![0]}`, call, message] as const))('%s', (_, call, message) => {
    const err = thrown(call);
    expect(err, 'no error: the option was ignored').toBeInstanceOf(TypeError);
    expect((err as Error).message).toMatch(message);
  });
});

describe('the same entry points accept their options spelt right', () => {
  it.each(SPELT_RIGHT)('%s', async (_, call) => {
    await call();
  });
});

describe('handgrad <command>: an unknown flag exits 2 naming it, with did-you-mean', () => {
  const cli = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  const fixture = join(FIXTURES, 'seed-realistic-64x128x256x10.case.safetensors');
  const FLAGS: [command: string, args: string[], flag: string, right: string | null][] = [
    ['train', ['--epoch', '3'], '--epoch', '--epochs'],
    ['train', ['--learning-rate', '0.1'], '--learning-rate', '--lr'],
    ['train', ['--batch-size', '32'], '--batch-size', '--batch'],
    ['train', ['--validation-split', '0.2'], '--validation-split', null],
    ['verify', ['--candidat', 'ts'], '--candidat', '--candidate'],
    ['grads', [fixture, '--outt', file('g.safetensors')], '--outt', '--out'],
    ['tour', ['--backnd', 'ts'], '--backnd', '--backend'],
    ['tour', ['-x'], '-x', null],
  ];
  it.each(FLAGS)('handgrad %s %j', (command, args, flag, right) => {
    const r = cli([command, ...args]);
    expect(r.status, r.stderr).toBe(2);
    const hint = right === null ? '' : ` \\(did you mean '${esc(right)}'\\?\\)`;
    expect(r.stderr).toMatch(new RegExp(`^handgrad ${command}: Expected no option '${esc(flag)}' for handgrad ${command}${hint}; the options are --`));
  });

  const SPELT: [command: string, args: string[]][] = [
    ['train', ['--data', 'xor', '--epochs', '2', '--lr', '0.5', '--batch', '4', '--quiet', '--out', file('xor')]],
    ['verify', ['--candidate', 'ts', '--reference', 'fd', '--B', '4', '--D', '3', '--H', '5', '--C', '2']],
    ['grads', [fixture, '--out', file('g.safetensors'), '--backend', 'ts']],
    ['tour', ['--help']],
  ];
  it.each(SPELT)('handgrad %s %j: accepted', (command, args) => {
    const r = cli([command, ...args]);
    expect(r.status, r.stderr).toBe(0);
  });

  it('--help and -h print the command\'s usage and exit 0; --version prints the package version', () => {
    for (const command of ['train', 'verify', 'grads', 'tour']) {
      for (const flag of ['--help', '-h']) {
        const r = cli([command, flag]);
        expect(r.status, r.stderr).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^usage: handgrad ${command} `));
      }
    }
    const r = cli(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  });
});
