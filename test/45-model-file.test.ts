// One model file (lib/model-file.ts): `handgrad train` on a CSV of string class names writes the
// net with its standardizer and class and column names; `handgrad predict` in another process
// scores a held-out CSV (its classes first seen in another order, its columns in another order)
// at the accuracy the Trainer's own evaluate gives on the same rows, standardized here from
// scratch (trainValSplit + fitStandardizer, as train does, independent of the file). The file
// round-trips through a Buffer bit for bit, loads in a fresh process, and hostile fields are
// refused (ERR_FILE naming the key). A save during fit is a whole step's checkpoint: resumed, it
// ends on the uninterrupted run's bits.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fitStandardizer, HandgradError, loadModel, readCsv, readSafetensors, saveModel, Sequential, Trainer, trainValSplit, writeSafetensors, type TensorInput,
} from '../lib';
import { FIXTURES, sameBits, thrown } from './helpers';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'dist', 'lib', 'cli.js');
const DIST_INDEX = join(ROOT, 'dist', 'lib', 'index.js');
const DATA = join(FIXTURES, 'model-file');
const TRAIN = join(DATA, 'train.csv');
const HOLDOUT = join(DATA, 'holdout.csv');
const UNLABELLED = join(DATA, 'holdout-unlabelled.csv');
const tmp = mkdtempSync(join(tmpdir(), 'handgrad-model-file-'));
const MODEL = join(tmp, 'out', 'model.safetensors');

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The held-out rows as train saw its own: columns in train.csv's order, labels as train.csv's class ids. */
function heldOut(classNames: readonly string[], featureNames: readonly string[]) {
  const h = readCsv(HOLDOUT, { label: 'medal' });
  const D = featureNames.length;
  const n = h.y.length;
  const X = new Float64Array(n * D);
  featureNames.forEach((f, k) => {
    const j = h.featureNames.indexOf(f);
    for (let i = 0; i < n; i++) X[i * D + k] = h.X[i * h.D + j];
  });
  const y = Int32Array.from(h.y, (c) => classNames.indexOf(h.classNames![c]));
  return { X, y, labels: Array.from(h.y, (c) => h.classNames![c]) };
}

beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist', 'lib', 'commands', 'predict.js'))) {
    throw new Error('dist/ is not built: run `node scripts/setup.mjs` (npm test does) before this file');
  }
  const r = cli(['train', '--data', TRAIN, '--out', join(tmp, 'out'), '--epochs', '40', '--quiet']);
  if (r.code !== 0) throw new Error(`handgrad train failed: ${r.stderr}`);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('handgrad train → handgrad predict', () => {
  it('scores a held-out CSV (classes first seen in another order, columns reordered, an extra id column) at the accuracy evaluate reports', () => {
    const train = readCsv(TRAIN);
    expect(train.classNames).toEqual(['gold', 'bronze', 'silver']);
    // Independent of the file: the training split and its standardizer, as train computes them.
    const split = trainValSplit(train.X, train.y, train.D, { fraction: 0.2, seed: 0 });
    const z = fitStandardizer(split.train.X, train.D);
    const h = heldOut(train.classNames!, train.featureNames);
    expect(readCsv(HOLDOUT, { label: 'medal' }).classNames).toEqual(['silver', 'bronze', 'gold']); // ids differ per file
    const t = Trainer.load(MODEL);
    const evaluated = t.evaluate(z.apply(h.X), h.y).accuracy;
    expect(evaluated).toBeGreaterThan(0.6);

    const out = join(tmp, 'pred.csv');
    const r = cli(['predict', '--model', MODEL, '--data', HOLDOUT, '-o', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const m = /^accuracy (\d+\.\d+)% \((\d+) of 300 rows, label column "medal"\)$/m.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(Math.abs(Number(m![1]) - 100 * evaluated)).toBeLessThanOrEqual(1);
    expect(Number(m![2])).toBe(Math.round(evaluated * 300));
    // One class name per row under `prediction`: the net's classes on the rows standardized here.
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    expect(lines[0]).toBe('prediction');
    const want = Array.from(t.model.predict(z.apply(h.X)), (c) => train.classNames![c]);
    expect(lines.slice(1)).toEqual(want);
    // Raw features would not do: the standardizer is what the file adds.
    expect(Array.from(t.model.predict(h.X), (c) => train.classNames![c])).not.toEqual(want);
  });

  it('reads a CSV without the label column (any column order), writes probabilities with --probs; stdout keeps the CSV, stderr the accuracy', () => {
    const labelled = cli(['predict', '--model', MODEL, '--data', HOLDOUT]);
    expect(labelled.code).toBe(0);
    expect(labelled.stderr).toMatch(/^accuracy \d+\.\d+% \(\d+ of 300 rows/);
    const r = cli(['predict', '--model', MODEL, '--data', UNLABELLED, '--probs']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(''); // no labels, no accuracy
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('prediction,gold,bronze,silver');
    expect(lines.length).toBe(301);
    const names = labelled.stdout.trimEnd().split('\n');
    lines.slice(1).forEach((line, i) => {
      const [name, ...p] = line.split(',');
      expect(name).toBe(names[i + 1]);
      const probs = p.map(Number);
      expect(Math.abs(probs.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-12);
      expect(['gold', 'bronze', 'silver'][probs.indexOf(Math.max(...probs))]).toBe(name);
    });
  });

  it('errors exit 2 naming the flag or the file: no --model, a missing feature column, an unknown class, an unknown flag', () => {
    expect(cli(['predict', '--data', HOLDOUT])).toMatchObject({ code: 2, stderr: expect.stringMatching(/for --model/) });
    expect(cli(['predict', '--model', MODEL])).toMatchObject({ code: 2, stderr: expect.stringMatching(/for --data/) });
    const noColumn = join(tmp, 'no-column.csv');
    writeFileSync(noColumn, 'weight,thickness,medal\n1000,0.03,gold\n');
    expect(cli(['predict', '--model', MODEL, '--data', noColumn])).toMatchObject({ code: 2, stderr: expect.stringMatching(/a column named "diameter"/) });
    const unknown = join(tmp, 'unknown-class.csv');
    writeFileSync(unknown, 'weight,diameter,thickness,medal\n1000,50,0.03,gold\n1000,50,0.03,platinum\n');
    expect(cli(['predict', '--model', MODEL, '--data', unknown])).toMatchObject({ code: 2, stderr: expect.stringMatching(/a class the model knows.*"platinum"/) });
    expect(cli(['predict', '--model', MODEL, '--data', HOLDOUT, '--prob'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/'--prob'.*did you mean '--probs'/) });
    expect(cli(['predict', '--help'])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^usage: handgrad predict --model FILE --data FILE.csv/) });
  });

  it("the file holds train's standardizer bit for bit, the class names in id order, the columns and the label", () => {
    const train = readCsv(TRAIN);
    const split = trainValSplit(train.X, train.y, train.D, { fraction: 0.2, seed: 0 });
    const z = fitStandardizer(split.train.X, train.D);
    const model = loadModel(MODEL);
    expect(model.classes).toEqual(['gold', 'bronze', 'silver']);
    expect(model.features).toEqual(['weight', 'diameter', 'thickness']);
    expect(model.label).toBe('medal');
    expect(sameBits(model.preprocess!.mean, z.mean)).toBe(true);
    expect(sameBits(model.preprocess!.std, z.std)).toBe(true);
    // predict on raw rows = the net on rows standardized here.
    const h = heldOut(train.classNames!, train.featureNames);
    expect(sameBits(model.probs(h.X), model.net.probs(z.apply(h.X)))).toBe(true);
  });
});

describe('the model file as bytes and in a fresh process', () => {
  it('round-trips through a Buffer: the same bytes, bit-identical predictions and probabilities', () => {
    const fileBytes = readFileSync(MODEL);
    const t = Trainer.load(fileBytes);
    const again = t.save();
    expect(Buffer.isBuffer(again)).toBe(true);
    expect(Buffer.compare(again, fileBytes)).toBe(0); // Trainer.save writes back what it read, counters and all
    const model = loadModel(again);
    const h = heldOut(['gold', 'bronze', 'silver'], ['weight', 'diameter', 'thickness']);
    const fromPath = loadModel(MODEL);
    const bytes = saveModel(model);
    expect(bytes).toBeInstanceOf(Buffer);
    const back = loadModel(bytes!);
    expect(sameBits(back.probs(h.X), fromPath.probs(h.X))).toBe(true);
    expect(back.predictClasses(h.X)).toEqual(fromPath.predictClasses(h.X));
    expect(back.classes).toEqual(fromPath.classes);
    // A Model saved to a path is the bytes saveModel returned.
    const path = join(tmp, 'model-again.safetensors');
    back.save(path);
    expect(Buffer.compare(readFileSync(path), back.save())).toBe(0);
  });

  it("Trainer.load(bytes).asModel() predicts raw rows: the saved standardizer, then the net, then the class names (as computed here by hand)", () => {
    const t = Trainer.load(readFileSync(MODEL));
    const m = t.asModel();
    const h = heldOut(['gold', 'bronze', 'silver'], ['weight', 'diameter', 'thickness']);
    const { mean, std } = m.preprocess!;
    const D = t.model.inFeatures;
    const z = Float64Array.from(h.X, (x, i) => (x - mean[i % D]) / std[i % D]);
    const ids = t.model.predict(z as never);
    expect(m.predictClasses(h.X)).toEqual(Array.from(ids, (k) => m.classes![k]));
    expect(m.predictClasses(h.X)).toEqual(loadModel(MODEL).predictClasses(h.X));
    // Its options replace what the file said.
    expect(t.asModel({ classes: ['a', 'b', 'c'] }).predictClasses(h.X)).toEqual(Array.from(ids, (k) => 'abc'[k]));
    expect(thrown(() => t.asModel({ clases: [] } as never))).toBeInstanceOf(TypeError);
  });

  it('loads in a fresh process with nothing else and gives the same probabilities, bit for bit', () => {
    const h = heldOut(['gold', 'bronze', 'silver'], ['weight', 'diameter', 'thickness']);
    const rows = join(tmp, 'rows.json');
    writeFileSync(rows, JSON.stringify(Array.from(h.X)));
    const script = `const { loadModel } = require(${JSON.stringify(DIST_INDEX)});
const m = loadModel(${JSON.stringify(MODEL)});
const X = Float64Array.from(JSON.parse(require('fs').readFileSync(${JSON.stringify(rows)}, 'utf8')));
process.stdout.write(JSON.stringify({ probs: Array.from(m.probs(X)), names: m.predictClasses(X) }));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', cwd: tmpdir(), timeout: 60_000 });
    expect(r.stderr).toBe('');
    const got = JSON.parse(r.stdout) as { probs: number[]; names: string[] };
    const here = loadModel(MODEL);
    expect(sameBits(got.probs, here.probs(h.X))).toBe(true);
    expect(got.names).toEqual(here.predictClasses(h.X));
    // And against a float64 forward written out here from the file's tensors (relu MLP, softmax).
    const f = readSafetensors(readFileSync(MODEL));
    const T = (k: string) => f.tensors[k].data as Float64Array;
    const [W1, b1, W2, b2, mean, std] = [T('W1'), T('b1'), T('W2'), T('b2'), T('preprocess.mean'), T('preprocess.std')];
    const [D, H, C] = [3, b1.length, b2.length];
    for (let i = 0; i < 300; i++) {
      const x = Array.from({ length: D }, (_, j) => (h.X[i * D + j] - mean[j]) / std[j]);
      const a = Array.from({ length: H }, (_, k) => Math.max(0, x.reduce((s, xj, j) => s + xj * W1[j * H + k], b1[k])));
      const z = Array.from({ length: C }, (_, c) => a.reduce((s, ak, k) => s + ak * W2[k * C + c], b2[c]));
      const top = Math.max(...z);
      const e = z.map((zc) => Math.exp(zc - top));
      const sum = e.reduce((s, ec) => s + ec, 0);
      for (let c = 0; c < C; c++) expect(Math.abs(got.probs[i * C + c] - e[c] / sum)).toBeLessThan(1e-12);
    }
  });
});

/** The model file with tensors or metadata changed. */
function edited(change: (tensors: Record<string, TensorInput>, meta: Record<string, string>) => void): Buffer {
  const f = readSafetensors(readFileSync(MODEL), { copy: true });
  const tensors: Record<string, TensorInput> = {};
  for (const [k, t] of Object.entries(f.tensors)) tensors[k] = { dtype: t.dtype, shape: t.shape, data: t.data as Float64Array };
  const meta = { ...f.metadata };
  change(tensors, meta);
  return Buffer.from(writeSafetensors(tensors, meta));
}

describe('hostile model files are refused (ERR_FILE naming the key), by loadModel and Trainer.load', () => {
  const cases: [string, Buffer, RegExp][] = [];
  beforeAll(() => {
    const vec = (data: number[]): TensorInput => ({ dtype: 'F64', shape: [data.length], data: Float64Array.from(data) });
    cases.push(
      ['a mean of D + 1 values', edited((t) => void (t['preprocess.mean'] = vec([0, 0, 0, 0]))), /shape \[3\].*"preprocess\.mean".*\[4\]/],
      ['a 2-D std', edited((t) => void (t['preprocess.std'] = { dtype: 'F64', shape: [1, 3], data: Float64Array.from([1, 1, 1]) })), /shape \[3\].*"preprocess\.std"/],
      ['a NaN mean', edited((t) => void (t['preprocess.mean'] = vec([0, NaN, 0]))), /finite values for tensor "preprocess\.mean" but received NaN at index 1/],
      ['an infinite std', edited((t) => void (t['preprocess.std'] = vec([1, 1, Infinity]))), /finite values > 0 for tensor "preprocess\.std" but received Infinity at index 2/],
      ['a zero std', edited((t) => void (t['preprocess.std'] = vec([1, 0, 1]))), /finite values > 0 for tensor "preprocess\.std" but received 0 at index 1/],
      ['an F32 mean', edited((t) => void (t['preprocess.mean'] = { dtype: 'F32', shape: [3], data: new Float32Array(3) })), /dtype F64 for tensor "preprocess\.mean"/],
      ['no std', edited((t) => void delete t['preprocess.std']), /a tensor named "preprocess\.std"/],
      ['standardizer tensors without the key', edited((_, m) => void delete m.preprocess), /"standardize" beside the tensors.*__metadata__\.preprocess/],
      ['another preprocessing', edited((_, m) => void (m.preprocess = 'minmax')), /__metadata__\.preprocess but received "minmax"/],
      ['2 class names for 3 classes', edited((_, m) => void (m.classes = '["gold","silver"]')), /3 class names.*__metadata__\.classes but received 2/],
      ['4 class names for 3 classes', edited((_, m) => void (m.classes = '["a","b","c","d"]')), /3 class names.*__metadata__\.classes but received 4/],
      ['class names not JSON', edited((_, m) => void (m.classes = 'gold,bronze,silver')), /a JSON array of 3 class names.*__metadata__\.classes/],
      ['a repeated class name', edited((_, m) => void (m.classes = '["gold","gold","silver"]')), /distinct names for __metadata__\.classes\[1\]/],
      ['a class name not a string', edited((_, m) => void (m.classes = '["gold",7,"silver"]')), /a non-empty string for __metadata__\.classes\[1\] but received 7/],
      ['2 feature names for D = 3', edited((_, m) => void (m.features = '["a","b"]')), /3 feature names.*__metadata__\.features but received 2/],
      ['a label that is a feature', edited((_, m) => void (m.label = 'weight')), /__metadata__\.label but received "weight"/],
    );
  });

  it('each one, with its key in the message; the untouched file loads', () => {
    expect(loadModel(edited(() => {})).classes).toEqual(['gold', 'bronze', 'silver']);
    for (const [what, bytes, message] of cases) {
      for (const load of [() => loadModel(bytes), () => Trainer.load(bytes)]) {
        const e = thrown(load);
        expect(e, what).toBeInstanceOf(HandgradError);
        expect((e as HandgradError).code, what).toBe('ERR_FILE');
        expect(e.message, what).toMatch(message);
        expect(e.message, what).toMatch(/\(the (model|checkpoint) bytes\)$/);
      }
    }
  });
});

describe("Model.predict's X: refused as what it is, never coerced or blamed for the model's overflow", () => {
  const model = (dtype: 'float64' | 'float32', preprocess?: { mean: number[]; std: number[] }) =>
    loadModel(saveModel(Sequential.mlp([4, 5, 3], { seed: 0, dtype }), undefined, preprocess ? { preprocess, features: ['a', 'b', 'c', 'd'] } : {})!);
  it('an array holding anything but numbers is a TypeError naming the index (null, "", true, "7", [5], "abc")', () => {
    const m = model('float64');
    for (const [bad, shown] of [[null, 'null'], ['', '""'], [true, 'boolean'], ['7', '"7"'], [[5], 'Array of length 1'], ['abc', '"abc"']] as const) {
      for (const call of [() => m.predict([1, 2, bad as never, 4]), () => m.probs([1, 2, bad as never, 4])]) {
        const e = thrown(call);
        expect(e, String(bad)).toBeInstanceOf(TypeError);
        expect(e.message, String(bad)).toMatch(new RegExp(`^Expected a number.* for X\\[2\\] but received ${shown.replace(/[[\]]/g, '\\$&')}$`));
      }
    }
    // Rows as nested arrays are named at the first row, with what to pass instead.
    expect(thrown(() => m.predict([[1, 2, 3, 4]] as never)).message).toMatch(/for X\[0\] but received Array of length 4/);
    // The control: the same rows as numbers predict as the typed array does.
    expect(Array.from(m.predict([1, 2, 0, 4]))).toEqual(Array.from(m.predict(Float64Array.of(1, 2, 0, 4))));
  });
  it("a finite value past float32's range given to a float32 model is named as the caller's, with its index", () => {
    const m = model('float32');
    for (const X of [Float64Array.of(0, 0, 0, 1e39), [0, 0, 0, -1e39]]) {
      const e = thrown(() => m.predict(X));
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toMatch(/^Expected values within float32's range .* for X but received -?1e\+39 at index 3$/);
    }
    // 3.4e38 is within float32's range (its largest is 3.4028234663852886e38): it is predicted on.
    expect(m.predict([0, 0, 0, 3.4e38])).toHaveLength(1);
  });
  it("a standardization that overflows is the standardizer's, naming its column; the caller's X was finite", () => {
    // (1e308 − (−1e308)) / 1 = 2e308 > Number.MAX_VALUE (1.797e308): Infinity in float64.
    const wide = thrown(() => model('float64', { mean: [0, -1e308, 0, 0], std: [1, 1, 1, 1] }).predict([0, 1e308, 0, 0]));
    expect(wide).toBeInstanceOf(RangeError);
    expect(wide.message).toMatch(/^Expected finite standardized values but \(x − mean\) \/ std overflowed the float64 range in column 1 \("b"\) for X at index 1: x = 1e\+308, mean = -1e\+308, std = 1$/);
    // 1 / 1e-300 = 1e300: finite in float64, past float32's range once rounded to the net's dtype.
    const narrow = thrown(() => model('float32', { mean: [0, 0, 0, 0], std: [1, 1, 1e-300, 1] }).probs([0, 0, 1, 0, 0, 0, 0, 0]));
    expect(narrow.message).toMatch(/overflowed the float32 range in column 2 \("c"\) for X at index 2: x = 1, mean = 0, std = 1e-300$/);
    expect(narrow.message).not.toMatch(/finite values in X/);
  });
});

describe('saveModel, Trainer.save: every option checked', () => {
  const seq = Sequential.mlp([3, 4, 2], { seed: 1 });
  it('unknown keys, counts that do not match D or C, a std ≤ 0, the format\'s own metadata keys', () => {
    expect(thrown(() => saveModel(seq, undefined, { clases: ['a', 'b'] } as never))).toBeInstanceOf(TypeError);
    expect(thrown(() => saveModel(seq, undefined, { clases: ['a', 'b'] } as never)).message).toMatch(/did you mean 'classes'/);
    expect(thrown(() => saveModel(seq, undefined, { classes: ['a', 'b', 'c'] })).message).toMatch(/Expected 2 class names .* for opts\.classes but received 3/);
    expect(thrown(() => saveModel(seq, undefined, { classes: ['a', 'a'] })).message).toMatch(/distinct names for opts\.classes\[1\]/);
    expect(thrown(() => saveModel(seq, undefined, { features: ['x'] })).message).toMatch(/3 feature names .* for opts\.features but received 1/);
    expect(thrown(() => saveModel(seq, undefined, { preprocess: { mean: [0, 0, 0], std: [1, 0, 1] } })).message).toMatch(/finite numbers > 0 for opts\.preprocess\.std\[1\]/);
    expect(thrown(() => saveModel(seq, undefined, { preprocess: { mean: [0, 0], std: [1, 1, 1] } })).message).toMatch(/3 numbers .* for opts\.preprocess\.mean but received 2/);
    expect(thrown(() => saveModel(seq, undefined, { preprocess: { mean: [0, 0, 0], std: [1, 1, 1], scale: 2 } as never })).message).toMatch(/opts\.preprocess/);
    expect(thrown(() => saveModel(seq, undefined, { metadata: { layers: '[]' } })).message).toMatch(/for opts\.metadata but received "layers"/);
    expect(thrown(() => saveModel(seq, undefined, { label: 'x', features: ['x', 'y', 'z'] })).message).toMatch(/a column other than the features for opts\.label/);
    const t = new Trainer(seq);
    expect(thrown(() => t.save(undefined, { classes: ['a'] })).message).toMatch(/for opts\.classes/);
    expect(thrown(() => t.save(undefined, { layout: 'torch' })).message).toMatch(/a path for layout: 'torch'/);
    expect(thrown(() => t.save(join(tmp, 'x.safetensors'), { layout: 'torch', preprocess: { mean: [0, 0, 0], std: [1, 1, 1] } })).message).toMatch(/no opts\.preprocess with layout: 'torch'/);
  });

  it('a fitted Standardizer is taken as it is; a Model saved again keeps its fields unless opts replace them', () => {
    const X = Float64Array.from({ length: 30 }, (_, i) => (i * 7919) % 13);
    const z = fitStandardizer(X, 3);
    const bytes = saveModel(seq, undefined, { preprocess: z, classes: ['no', 'yes'], metadata: { note: 'n' } })!;
    const m = loadModel(bytes);
    expect(sameBits(m.preprocess!.mean, z.mean) && sameBits(m.preprocess!.std, z.std)).toBe(true);
    expect(sameBits(m.predict(X), seq.predict(z.apply(X)))).toBe(true);
    expect(m.metadata).toEqual({ note: 'n' });
    const renamed = loadModel(saveModel(m, undefined, { classes: ['off', 'on'] })!);
    expect(renamed.classes).toEqual(['off', 'on']);
    expect(renamed.metadata).toEqual({ note: 'n' });
    expect(sameBits(renamed.preprocess!.std, z.std)).toBe(true);
    // A Trainer checkpoint of a model file keeps its fields: Trainer.load, then save.
    const t = Trainer.load(bytes);
    expect(loadModel(t.save()).classes).toEqual(['no', 'yes']);
  });
});

describe('a save during fit', () => {
  it('is a whole step\'s checkpoint (not ERR_BUSY): resumed, it ends on the uninterrupted run\'s bits', async () => {
    const n = 256;
    const D = 3;
    const X = Float64Array.from({ length: n * D }, (_, i) => Math.sin(i * 12.9898) * 2);
    const y = Int32Array.from({ length: n }, (_, i) => (X[i * D] + X[i * D + 1] > 0 ? 1 : 0) + (X[i * D + 2] > 1 ? 1 : 0));
    const make = () => new Trainer(Sequential.mlp([D, 16, 3], { seed: 3 }), { optimizer: 'adam', lr: 0.01, batchSize: 16 });
    const epochs = 30;
    const whole = make();
    whole.fitSync(X, y, { epochs });
    const t = make();
    let snapshot: Buffer | undefined;
    let busy = false;
    await t.fit(X, y, {
      epochs, progressEvery: 7,
      onProgress: (e) => {
        if (snapshot === undefined && e.type === 'step' && e.epoch === 5) {
          busy = t.busy;
          snapshot = t.save(undefined, { classes: ['a', 'b', 'c'] });
        }
      },
    });
    expect(busy).toBe(true);
    expect(snapshot).toBeDefined();
    expect(loadModel(snapshot!).classes).toEqual(['a', 'b', 'c']); // the same kind of file
    const resumed = Trainer.load(snapshot!);
    expect(resumed.steps).toBeGreaterThan(0);
    resumed.fitSync(X, y, { epochs: epochs - resumed.epochs });
    expect(resumed.steps).toBe(whole.steps);
    const [got, want] = [resumed.params, whole.params] as Readonly<Record<string, ArrayLike<number>>>[];
    for (const k of Object.keys(want)) expect(sameBits(got[k], want[k]), k).toBe(true);
  });
});
