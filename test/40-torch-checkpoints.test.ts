// Checkpoints as PyTorch users have them (issue 13, item 3), held to PyTorch 1.13:
// (a) an nn.Sequential's state_dict records no activations: it loads only when the caller names
//     them, and then predicts PyTorch's logits; (b) index gaps from Dropout/Identity; (c)
//     Trainer.save(path, { layout: 'torch' }) writes the state_dict alone to `path` and
//     optimizer.state_dict()'s layout to the optimizer file beside it (model.safetensors →
//     model.optim.safetensors): against committed goldens (test/fixtures/torch-checkpoints/make.py),
//     and live against PyTorch Python where /usr/bin/python3 has torch
//     (load_state_dict(load_file(path), strict=True) with no key filtered, the logits,
//     optimizer.load_state_dict from the optimizer file, one more step); (d) Trainer.load resumes
//     from that pair exactly as from handgrad's layout; (e) the pair: a mismatched, missing or
//     unnamed optimizer file is refused, never resumed from silently.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { blobs, forward, HandgradError, initParams, loadParams, loadSequential, saveSequential, Sequential, Trainer, type TrainerOptions } from '../lib';
import type { ModuleKind } from '../lib/checkpoint';
import { loadSafetensors, saveSafetensors, type SafetensorsFile } from '../lib/io/safetensors';
import type { FloatArray } from '../lib/types';
import { errEps, FIXTURES, thrown, TORCH_PYTHON, torchPythonSkip } from './helpers';

const DIR = join(FIXTURES, 'torch-checkpoints');
const tmp = mkdtempSync(join(tmpdir(), 'hg-torch-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const PYTHON = TORCH_PYTHON;
const skipPython = torchPythonSkip('torch, numpy');

const fixture = (name: string) => join(DIR, `${name}.safetensors`);
/** The optimizer file beside a checkpoint, by the documented rule: .safetensors → .optim.safetensors (else appended). */
const optim = (path: string) => `${path.replace(/\.safetensors$/, '')}.optim.safetensors`;
const expected = (name: string) => loadSafetensors(fixture(`${name}.expected`), { copy: true });
const dtypeOf = (f: SafetensorsFile) => (f.tensors.X.dtype === 'F32' ? 'float32' : 'float64');
const modulesOf = (f: SafetensorsFile) => JSON.parse(f.metadata.layers) as ModuleKind[];
const fileError = (fn: () => unknown): HandgradError => {
  const e = thrown(fn);
  expect(e).toBeInstanceOf(HandgradError);
  expect((e as HandgradError).code).toBe('ERR_FILE');
  return e as HandgradError;
};

/** Logits of a loaded net against PyTorch's, within 8 eps (normwise). */
function expectLogits(seq: Sequential, want: SafetensorsFile): void {
  const dtype = dtypeOf(want);
  expect(seq.dtype).toBe(dtype);
  const got = seq.forward(want.tensors.X.data as FloatArray);
  expect(errEps(got, want.tensors.logits.data as FloatArray, dtype)).toBeLessThanOrEqual(8);
}

describe('(a) a state_dict of a Tanh or Sigmoid nn.Sequential', () => {
  for (const name of ['tanh-f64', 'tanh-f32', 'sigmoid-f64', 'sigmoid-f32']) {
    it(`${name}: refused without its activations, saying what to pass; with them, PyTorch's logits`, () => {
      const want = expected(name);
      const act = want.metadata.activation as 'tanh' | 'sigmoid';
      const layers = modulesOf(want);
      const e = fileError(() => loadSequential(fixture(name)));
      expect(e.message).toContain('does not record its activations');
      expect(e.message).toContain(`loadSequential(path, { layers: ${JSON.stringify(layers.map((k) => (k === 'linear' ? k : 'tanh'))).replace(/"/g, "'").replace(/,/g, ', ')} })`);
      expect(e.message).toContain("loadSequential(path, { activation: 'tanh' })");
      expectLogits(loadSequential(fixture(name), { activation: act }), want);
      expectLogits(loadSequential(fixture(name), { layers }), want);
      // Read as ReLU (what every loader did before), the logits are another net's.
      const relu = loadSequential(fixture(name), { activation: 'relu' }).forward(want.tensors.X.data as FloatArray);
      expect(errEps(relu, want.tensors.logits.data as FloatArray, dtypeOf(want))).toBeGreaterThan(1e4);
      expect(() => Trainer.load(fixture(name))).toThrow(/Trainer\.load\(path, \{ activation: 'tanh' \}\)/);
      expectLogits(Trainer.load(fixture(name), { activation: act }).model, want);
    });
  }

  it('loadParams reads a two-layer state_dict with its activation, and forward uses it', () => {
    const want = expected('tanh-f64');
    expect(() => loadParams(fixture('tanh-f64'))).toThrow(/loadParams\(path, \{ activation: 'tanh' \}\)/);
    const p = loadParams(fixture('tanh-f64'), { activation: 'tanh' });
    expect([p.layout, p.activation, p.D, p.H, p.C]).toEqual(['torch', 'tanh', 5, 7, 4]);
    expect(errEps(forward(p, want.tensors.X.data as Float64Array), want.tensors.logits.data as Float64Array, 'float64')).toBeLessThanOrEqual(8);
    expect(() => loadParams(fixture('sigmoid-f64'), { activation: 'sigmoid' })).toThrow(/holds a Sequential of other depth: read it with loadSequential/);
  });

  it("a file with handgrad's own metadata loads as before; options that contradict it are refused", () => {
    const seq = loadSequential(fixture('sigmoid-f64'), { activation: 'sigmoid' });
    const path = join(tmp, 'own.safetensors');
    saveSequential(path, seq, { layout: 'torch' });
    expect(loadSequential(path).toString()).toBe(seq.toString());
    expect(loadSequential(path, { activation: 'sigmoid' }).toString()).toBe(seq.toString());
    // Its metadata comes back with it (loadSequential dropped it before).
    saveSequential(path, seq, { layout: 'torch', metadata: { names: 'cat,dog,bird' } }); // ("classes" is the format's own key)
    expect(loadSequential(path).metadata).toMatchObject({ names: 'cat,dog,bird', layout: 'torch', format: 'handgrad' });
    expect(loadSequential(path, { layers: ['linear', 'sigmoid', 'linear', 'sigmoid', 'linear'] }).toString()).toBe(seq.toString());
    expect(fileError(() => loadSequential(path, { activation: 'tanh' })).message).toMatch(/opts\.activation to agree with the file's own layers \['linear', 'sigmoid'/);
    expect(fileError(() => loadSequential(path, { layers: ['linear', 'sigmoid', 'linear'] })).message).toMatch(/opts\.layers to agree/);
    expect(fileError(() => Trainer.load(path, { activation: 'relu' })).message).toMatch(/opts\.activation to agree/);
    // The two-layer form (activation in the metadata, no layers list).
    const p = loadParams(fixture('tanh-f64'), { activation: 'tanh' });
    const two = join(tmp, 'two.safetensors');
    new Trainer(p).save(two, { layout: 'torch' });
    expect(loadParams(two).activation).toBe('tanh');
    expect(fileError(() => loadParams(two, { activation: 'relu' })).message).toMatch(/agree with the file's own __metadata__\.activation 'tanh'/);
    expect(fileError(() => Trainer.load(two, { activation: 'sigmoid' })).message).toMatch(/agree with the file's own __metadata__\.activation 'tanh'/);
  });

  it('bad options are TypeError/RangeError naming them', () => {
    expect(() => loadSequential(fixture('tanh-f64'), { activation: 'gelu' as never })).toThrow(RangeError);
    expect(() => loadSequential(fixture('tanh-f64'), { layers: ['linear', 'softmax' as never, 'linear'] })).toThrow(/opts\.layers\[1\]/);
    expect(() => loadSequential(fixture('tanh-f64'), { layers: 'linear,tanh,linear' as never })).toThrow(TypeError);
    expect(() => loadSequential(fixture('tanh-f64'), { layers: ['linear', 'tanh', 'linear'], activation: 'tanh' })).toThrow(/either opts\.layers or opts\.activation/);
    expect(() => loadSequential(fixture('tanh-f64'), { activaton: 'tanh' } as never)).toThrow(/activation/);
  });
});

describe('(b) index gaps from parameter-free modules', () => {
  it('Linear, ReLU, Dropout, Linear (keys 0.*, 3.*): loads with { activation } or { layers }, Dropout the identity', () => {
    const want = expected('dropout-f64');
    expect(Object.keys(loadSafetensors(fixture('dropout-f64')).tensors).sort()).toEqual(['0.bias', '0.weight', '3.bias', '3.weight']);
    expect(fileError(() => loadSequential(fixture('dropout-f64'))).message).toContain("{ layers: ['linear', 'tanh', 'dropout', 'linear'] }");
    const a = loadSequential(fixture('dropout-f64'), { activation: 'relu' });
    expect(a.toString()).toBe('Sequential(Linear 4→6, ReLU, Linear 6→3; SoftmaxCrossEntropy(mean))');
    expectLogits(a, want);
    expectLogits(loadSequential(fixture('dropout-f64'), { layers: ['linear', 'relu', 'dropout', 'linear'] }), want);
    expectLogits(loadSequential(fixture('dropout-f64'), { layers: ['linear', 'identity', 'relu', 'linear'] }), want);
    const p = loadParams(fixture('dropout-f64'), { activation: 'relu' });
    expect(errEps(forward(p, want.tensors.X.data as Float64Array), want.tensors.logits.data as Float64Array, 'float64')).toBeLessThanOrEqual(8);
    // Layers that do not fit the tensors are refused, naming the module.
    expect(fileError(() => loadSequential(fixture('dropout-f64'), { layers: ['linear', 'relu', 'linear'] })).message).toMatch(/every module up to index 3/);
    expect(fileError(() => loadSequential(fixture('dropout-f64'), { layers: ['linear', 'relu', 'linear', 'linear'] })).message).toMatch(/a module without tensors .* for opts\.layers\[2\]/);
    expect(fileError(() => loadSequential(fixture('dropout-f64'), { layers: ['linear', 'relu', 'dropout', 'relu'] })).message).toMatch(/'linear' \(the file holds 3\.weight and 3\.bias\) for opts\.layers\[3\]/);
  });

  it('saved back in the torch layout, a net read with Dropout/Identity keeps its indices (and loads with no options)', () => {
    const want = expected('dropout-f64');
    const seq = loadSequential(fixture('dropout-f64'), { activation: 'relu' });
    expect(seq.modules).toEqual(['linear', 'relu', 'dropout', 'linear']);
    const path = join(tmp, 'dropout-again.safetensors');
    saveSequential(path, seq, { layout: 'torch' });
    const f = loadSafetensors(path);
    expect(Object.keys(f.tensors).sort()).toEqual(['0.bias', '0.weight', '3.bias', '3.weight']);
    expect(JSON.parse(f.metadata.modules)).toEqual(['linear', 'relu', 'dropout', 'linear']);
    const back = loadSequential(path);
    expectLogits(back, want);
    expect(back.modules).toEqual(seq.modules);
    expect(fileError(() => loadSequential(path, { layers: ['linear', 'relu', 'linear'] })).message).toMatch(/opts\.layers to agree with the file's own layers \['linear', 'relu', 'dropout', 'linear'\]/);
    // Named explicitly: any modules with the net's layers in order; others are refused.
    saveSequential(path, seq, { layout: 'torch', layers: ['identity', 'linear', 'dropout', 'relu', 'dropout', 'dropout', 'linear'] });
    expect(Object.keys(loadSafetensors(path).tensors).sort()).toEqual(['1.bias', '1.weight', '6.bias', '6.weight']);
    expectLogits(loadSequential(path), want);
    expect(() => saveSequential(path, seq, { layout: 'torch', layers: ['linear', 'tanh', 'dropout', 'linear'] })).toThrow(/Expected the net's layers \['linear', 'relu', 'linear'\] in order, with 'dropout' or 'identity' anywhere between for opts\.layers/);
    expect(() => saveSequential(path, seq, { layers: ['linear', 'relu', 'dropout', 'linear'] })).toThrow(/no opts\.layers without layout: 'torch'/);
    // A Trainer loaded from it saves at the same indices, with the optimizer state.
    const t = Trainer.load(fixture('dropout-f64'), { activation: 'relu', optimizer: 'adam', batchSize: 6 });
    t.step(want.tensors.X.data as Float64Array, Int32Array.of(0, 1, 2, 0, 1, 2));
    t.save(path, { layout: 'torch' });
    // The state_dict and nothing else; the optimizer state beside it, parameter 2 being 3.weight.
    expect(Object.keys(loadSafetensors(path).tensors).sort()).toEqual(['0.bias', '0.weight', '3.bias', '3.weight']);
    expect(loadSafetensors(optim(path)).tensors['state.2.exp_avg'].shape).toEqual([3, 6]);
    expect(Trainer.load(path).model.toString()).toBe(seq.toString());
  });

  it('mixed activations and a Dropout before the first Linear: only { layers } reads them', () => {
    const want = expected('mixed-f32');
    const layers = modulesOf(want);
    expect(layers).toEqual(['dropout', 'linear', 'tanh', 'identity', 'linear', 'sigmoid', 'dropout', 'dropout', 'linear']);
    expect(fileError(() => loadSequential(fixture('mixed-f32'), { activation: 'tanh' })).message).toMatch(/the first Linear at index 0 .*name every module with opts\.layers/);
    const seq = loadSequential(fixture('mixed-f32'), { layers });
    expect(seq.toString()).toBe('Sequential(Linear 4→5, Tanh, Linear 5→6, Sigmoid, Linear 6→3; SoftmaxCrossEntropy(mean))');
    expectLogits(seq, want);
    const path = join(tmp, 'mixed-again.safetensors');
    saveSequential(path, seq, { layout: 'torch' });
    expect(Object.keys(loadSafetensors(path).tensors).sort()).toEqual(['1.bias', '1.weight', '4.bias', '4.weight', '8.bias', '8.weight']);
  });

  it('refuses what it cannot read unambiguously, saying why', () => {
    expect(fileError(() => loadSequential(fixture('batchnorm'), { activation: 'relu' })).message).toMatch(/only Linear modules' weight and bias .*BatchNorm.* for tensor "1\.(weight|bias|running_mean|running_var|num_batches_tracked)"/);
    expect(fileError(() => loadSequential(fixture('nobias'), { activation: 'relu' })).message).toMatch(/both 0\.weight and 0\.bias \(a Linear without bias is not supported\)/);
    // Adjacent Linear layers: no activation between them, which { activation } cannot say.
    const path = join(tmp, 'adjacent.safetensors');
    const t = (shape: number[]) => ({ shape, data: new Float64Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) });
    saveSafetensors(path, { '0.weight': t([3, 2]), '0.bias': t([3]), '1.weight': t([2, 3]), '1.bias': t([2]) });
    expect(fileError(() => loadSequential(path, { activation: 'relu' })).message).toMatch(/0 and 1 are adjacent: name every module with opts\.layers/);
    expect(loadSequential(path, { layers: ['linear', 'linear'] }).toString()).toBe('Sequential(Linear 2→3, Linear 3→2; SoftmaxCrossEntropy(mean))');
  });
});

/** A Trainer's settings for each training fixture (make.py's optimizers). */
const TRAINING: Record<string, TrainerOptions> = {
  'adam-f64': { optimizer: 'adam', lr: 0.01 },
  'adamw-f64': { optimizer: 'adamw', lr: 0.01, amsgrad: true },
  'momentum-f32': { optimizer: 'sgd', lr: 0.1, momentum: 0.9 },
  'sgd-f64': { optimizer: 'sgd', lr: 0.1 },
  'adam-f32': { optimizer: 'adam', lr: 0.01 },
};

/** The optimizer file's metadata as optimizer.state_dict() has it (class, state, param_groups; handgrad's steps left out). */
const optimizerMeta = (f: SafetensorsFile) => ({ class: f.metadata.class, state: JSON.parse(f.metadata.state), param_groups: JSON.parse(f.metadata.param_groups) });

/** Every tensor of `want` in `got`, within 8 eps (a 0-d step exactly), and no other tensor. */
function expectTensors(got: SafetensorsFile, want: SafetensorsFile, dtype: 'float64' | 'float32', skip: string[] = []): void {
  const names = (f: SafetensorsFile) => Object.keys(f.tensors).filter((n) => !skip.includes(n)).sort();
  expect(names(got)).toEqual(names(want));
  for (const n of names(want)) {
    const [g, w] = [got.tensors[n], want.tensors[n]];
    expect([n, g.dtype, g.shape]).toEqual([n, w.dtype, w.shape]);
    if (n.endsWith('.step')) expect(g.data[0], n).toBe(w.data[0]);
    else expect(errEps(g.data as FloatArray, w.data as FloatArray, dtype), n).toBeLessThanOrEqual(8);
  }
}

describe("(c) Trainer.save(path, { layout: 'torch' }) against PyTorch's goldens", () => {
  for (const [name, opts] of Object.entries(TRAINING)) {
    it(`${name}: the state_dict (alone in the file) and optimizer.state_dict() (beside it) after the same steps`, () => {
      const batches = loadSafetensors(fixture(`train-${name}.batches`), { copy: true });
      const layers = modulesOf(batches);
      const t = Trainer.load(fixture(`train-${name}.init`), { ...opts, layers, batchSize: 5 });
      for (let s = 0; s < Number(batches.metadata.steps); s++) t.step(batches.tensors[`X${s}`].data as FloatArray, batches.tensors[`y${s}`].data as Int32Array);
      const path = join(tmp, `train-${name}.safetensors`);
      t.save(path, { layout: 'torch' });
      const dtype = name.endsWith('f32') ? 'float32' : 'float64';
      // PyTorch's model.state_dict(): the same keys, no other (what load_state_dict(strict=True) takes).
      expectTensors(loadSafetensors(path), loadSafetensors(fixture(`train-${name}.after`)), dtype);
      const [gotOpt, wantOpt] = [loadSafetensors(optim(path)), loadSafetensors(fixture(`train-${name}.after.optim`))];
      expectTensors(gotOpt, wantOpt, dtype);
      expect(optimizerMeta(gotOpt)).toEqual(optimizerMeta(wantOpt));
      // And the pair PyTorch wrote (no handgrad metadata: the optimizer file named by the caller)
      // resumes in handgrad: its state restored, saved again it is the same pair.
      const back = Trainer.load(fixture(`train-${name}.after`), { ...opts, layers, batchSize: 5, optimizerState: fixture(`train-${name}.after.optim`) });
      // SGD does not count its steps: a state that has stepped counts from 1 (optimizer-file.ts torchSteps).
      expect(back.steps).toBe(opts.optimizer === 'sgd' ? 1 : Number(batches.metadata.steps));
      const again = join(tmp, `again-${name}.safetensors`);
      back.save(again, { layout: 'torch' });
      for (const [g, w] of [[again, fixture(`train-${name}.after`)], [optim(again), fixture(`train-${name}.after.optim`)]]) {
        const [a, want] = [loadSafetensors(g), loadSafetensors(w)];
        expect(Object.keys(a.tensors).sort()).toEqual(Object.keys(want.tensors).sort());
        for (const n of Object.keys(want.tensors)) expect([...(a.tensors[n].data as FloatArray)], n).toEqual([...(want.tensors[n].data as FloatArray)]);
      }
      expect(optimizerMeta(loadSafetensors(optim(again)))).toEqual(optimizerMeta(wantOpt));
      // The state_dict alone (no optimizer file named) is parameters alone: a fresh run from them,
      // though a file named like its optimizer file lies beside it (never picked up unasked: nothing
      // says it belongs to these weights).
      const fresh = Trainer.load(fixture(`train-${name}.after`), { ...opts, layers, batchSize: 5 });
      expect([fresh.steps, fresh.epochs]).toEqual([0, 0]);
    });
  }

  it('before any step the optimizer state is empty, as PyTorch\'s', () => {
    const path = join(tmp, 'fresh.safetensors');
    new Trainer(initParams({ D: 2, H: 3, C: 2 }, { seed: 1 }), { optimizer: 'adam' }).save(path, { layout: 'torch' });
    const f = loadSafetensors(path);
    expect(Object.keys(f.tensors).sort()).toEqual(['0.bias', '0.weight', '2.bias', '2.weight']);
    const o = loadSafetensors(optim(path));
    expect(Object.keys(o.tensors)).toEqual([]);
    expect(optimizerMeta(o)).toMatchObject({ class: 'Adam', state: {} });
    expect(() => new Trainer(initParams({ D: 2, H: 3, C: 2 })).save(path, { layout: 'pytorch' as never })).toThrow(/opts\.layout/);
  });
});

describe("(d) Trainer.load resumes from the torch layout exactly as from handgrad's", () => {
  const cases: [string, TrainerOptions][] = [
    ['adam', { optimizer: 'adam', lr: 0.01 }],
    ['adamw amsgrad', { optimizer: 'adamw', lr: 0.01, amsgrad: true }],
    ['momentum f32', { optimizer: 'sgd', lr: 0.05, momentum: 0.9 }],
    ['nesterov', { optimizer: 'sgd', lr: 0.05, momentum: 0.9, nesterov: true }],
    ['adam two-layer', { optimizer: 'adam', lr: 0.01, activation: 'sigmoid' }],
  ];
  for (const [title, opts] of cases) {
    it(`${title}: saved mid-epoch in either layout, loaded, finished: the bits of an uninterrupted run`, () => {
      const dtype = title.endsWith('f32') ? 'float32' : 'float64';
      const data = blobs({ n: 60, dim: 3, classes: 3, seed: 5 });
      const X = dtype === 'float32' ? Float32Array.from(data.X) : data.X;
      const net = () => (opts.activation ? initParams({ D: 3, H: 6, C: 3 }, { seed: 2, dtype }) : Sequential.mlp([3, 6, 5, 3], { activation: 'tanh', seed: 2, dtype }));
      const make = () => new Trainer(net() as never, { ...opts, batchSize: 8, seed: 3, schedule: { type: 'step', every: 1, gamma: 0.5 } } as TrainerOptions);
      const straight = make();
      straight.fitSync(X, data.y, { epochs: 3 });
      const first = make();
      const ac = new AbortController();
      first.fitSync(X, data.y, { epochs: 3, signal: ac.signal, progressEvery: 1, onProgress: (e) => e.type === 'step' && e.epoch === 2 && e.step === 3 && ac.abort() });
      for (const layout of ['torch', 'handgrad'] as const) {
        const path = join(tmp, `resume-${title}-${layout}.safetensors`);
        first.save(path, { layout });
        const resumed = Trainer.load(path);
        expect([resumed.steps, resumed.epochs]).toEqual([first.steps, first.epochs]);
        resumed.fitSync(X, data.y, { epochs: 3 - resumed.epochs });
        for (const [k, t] of Object.entries(straight.model.params)) expect(Buffer.from(resumed.model.params[k].buffer).equals(Buffer.from(t.buffer)), `${layout} ${k}`).toBe(true);
      }
    });
  }
});

/**
 * Runs check_trainer.py on a torch-layout checkpoint (load_state_dict(strict=True) of the file as
 * it is, optimizer.load_state_dict of the file beside it): PyTorch's logits and state_dict after
 * one more step (model), and its optimizer state after that step (optimizer).
 */
function pytorchReads(ckpt: string, data: Record<string, { shape: number[]; data: FloatArray | Int32Array }>): { model: SafetensorsFile; optimizer: SafetensorsFile } {
  const dataPath = `${ckpt}.data.safetensors`;
  const out = `${ckpt}.out.safetensors`;
  saveSafetensors(dataPath, data);
  const r = spawnSync(PYTHON, [join(DIR, 'check_trainer.py'), ckpt, dataPath, out], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`check_trainer.py failed: ${r.stderr}`);
  return { model: loadSafetensors(out, { copy: true }), optimizer: loadSafetensors(optim(out), { copy: true }) };
}

describe.skipIf(skipPython !== null)(`(c, live) PyTorch reads Trainer.save(path, { layout: 'torch' })${skipPython ? ` (skipped: ${skipPython})` : ''}`, () => {
  const cases: [string, 'float64' | 'float32', TrainerOptions, 'two-layer' | 'sequential'][] = [
    ['adam f64 Sequential', 'float64', { optimizer: 'adam', lr: 0.01 }, 'sequential'],
    ['adamw amsgrad f64 two-layer', 'float64', { optimizer: 'adamw', lr: 0.01, amsgrad: true, activation: 'sigmoid' }, 'two-layer'],
    ['momentum f32 Sequential', 'float32', { optimizer: 'sgd', lr: 0.05, momentum: 0.9 }, 'sequential'],
    ['nesterov f64 two-layer', 'float64', { optimizer: 'sgd', lr: 0.05, momentum: 0.9, nesterov: true, activation: 'tanh' }, 'two-layer'],
    ['sgd f32 two-layer', 'float32', { optimizer: 'sgd', lr: 0.1 }, 'two-layer'],
    ['adam f32 Sequential', 'float32', { optimizer: 'adam', lr: 0.01 }, 'sequential'],
  ];
  it("a Trainer read from Linear, ReLU, Dropout, Linear: PyTorch's nn.Sequential with the Dropout takes it (strict), same logits in eval, same next step", () => {
    const want = expected('dropout-f64');
    const X = want.tensors.X.data as Float64Array;
    const y = Int32Array.of(0, 1, 2, 2, 1, 0);
    const t = Trainer.load(fixture('dropout-f64'), { activation: 'relu', optimizer: 'sgd', momentum: 0.9, lr: 0.05, batchSize: 6 });
    t.step(X, y);
    const path = join(tmp, 'live-dropout.safetensors');
    t.save(path, { layout: 'torch' });
    const torch = pytorchReads(path, { X: { shape: [6, 4], data: X }, Xs: { shape: [6, 4], data: X }, ys: { shape: [6], data: y } });
    expect(Object.keys(torch.model.tensors).filter((n) => n !== 'logits').sort()).toEqual(['0.bias', '0.weight', '3.bias', '3.weight']);
    expect(errEps(t.model.forward(X), torch.model.tensors.logits.data as FloatArray, 'float64')).toBeLessThanOrEqual(8);
    t.step(X, y);
    const after = join(tmp, 'live-dropout-after.safetensors');
    t.save(after, { layout: 'torch' });
    expectTensors(loadSafetensors(after), torch.model, 'float64', ['logits']);
    expectTensors(loadSafetensors(optim(after)), torch.optimizer, 'float64');
  });

  for (const [title, dtype, opts, form] of cases) {
    it(`${title}: load_state_dict(strict=True) takes it, the same logits, the same next step`, () => {
      const data = blobs({ n: 40, dim: 4, classes: 3, seed: 9 });
      const X = dtype === 'float32' ? Float32Array.from(data.X) : data.X;
      const net = form === 'sequential'
        ? Sequential.mlp([4, 7, 5, 3], { activation: 'tanh', seed: 4, dtype })
        : initParams({ D: 4, H: 6, C: 3 }, { seed: 4, dtype });
      const t = new Trainer(net as never, { ...opts, batchSize: 8, seed: 1 } as TrainerOptions);
      t.fitSync(X, data.y, { epochs: 2 });
      const path = join(tmp, `live-${title}.safetensors`);
      t.save(path, { layout: 'torch' });
      const Xs = X.slice(0, 8 * 4) as FloatArray;
      const ys = Int32Array.from(data.y.slice(0, 8));
      const torch = pytorchReads(path, { X: { shape: [40, 4], data: X }, Xs: { shape: [8, 4], data: Xs }, ys: { shape: [8], data: ys } });
      expect(errEps(t.model.forward(X), torch.model.tensors.logits.data as FloatArray, dtype)).toBeLessThanOrEqual(8);
      t.step(Xs, ys);
      const after = join(tmp, `live-${title}-after.safetensors`);
      t.save(after, { layout: 'torch' });
      expectTensors(loadSafetensors(after), torch.model, dtype, ['logits']);
      const got = loadSafetensors(optim(after));
      expectTensors(got, torch.optimizer, dtype);
      expect(optimizerMeta(got)).toEqual(optimizerMeta(torch.optimizer));
    });
  }
});

describe('what a PyTorch user may hand over by mistake', () => {
  it("the state_dict of a module holding the nn.Sequential ('net.0.weight') names the fix", () => {
    const path = join(tmp, 'prefixed.safetensors');
    saveSafetensors(path, { 'net.0.weight': { shape: [3, 2], data: new Float64Array(6) }, 'net.0.bias': { shape: [3], data: new Float64Array(3) } });
    expect(fileError(() => loadSequential(path, { activation: 'relu' })).message).toMatch(/"net\.0\.weight" has a prefix: save the nn\.Sequential's own state_dict, e\.g\. model\.net\.state_dict\(\)/);
  });
});

describe("(e) the pair: the model file and its optimizer file", () => {
  const data = blobs({ n: 40, dim: 3, classes: 3, seed: 7 });
  const trainer = (opts: TrainerOptions = { optimizer: 'adam', lr: 0.01 }) => new Trainer(Sequential.mlp([3, 5, 3], { activation: 'tanh', seed: 1 }), { ...opts, batchSize: 8, seed: 2 });
  const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
  const same = (a: Trainer<never>, b: Trainer<never>) => {
    for (const [k, x] of Object.entries(a.model.params)) expect(Buffer.from(b.model.params[k].buffer).equals(Buffer.from(x.buffer)), k).toBe(true);
  };

  it('named from the path, recorded with its digest in the model file; found there, or where the caller says', () => {
    const dir = join(tmp, 'pair');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    const t = trainer();
    t.fitSync(data.X, data.y, { epochs: 1 });
    const path = join(dir, 'model.safetensors');
    t.save(path, { layout: 'torch' });
    expect(existsSync(join(dir, 'model.optim.safetensors'))).toBe(true);
    const meta = loadSafetensors(path).metadata;
    expect([meta.optimizer_state, meta.optimizer_state_sha256]).toEqual(['model.optim.safetensors', sha256(join(dir, 'model.optim.safetensors'))]);
    // Not ending in .safetensors: appended.
    t.save(join(dir, 'ckpt'), { layout: 'torch' });
    expect(existsSync(join(dir, 'ckpt.optim.safetensors'))).toBe(true);
    // Elsewhere: named relative to the model file's folder; the pair moved together still loads.
    t.save(path, { layout: 'torch', optimizerState: join(dir, 'sub', 'adam.safetensors') });
    expect(loadSafetensors(path).metadata.optimizer_state).toBe('sub/adam.safetensors');
    const moved = join(tmp, 'pair-moved');
    mkdirSync(join(moved, 'sub'), { recursive: true });
    copyFileSync(path, join(moved, 'model.safetensors'));
    copyFileSync(join(dir, 'sub', 'adam.safetensors'), join(moved, 'sub', 'adam.safetensors'));
    const straight = trainer();
    straight.fitSync(data.X, data.y, { epochs: 3 });
    for (const [from, opts] of [[path, {}], [join(moved, 'model.safetensors'), {}]] as const) {
      const r = Trainer.load(from, opts);
      expect([r.steps, r.epochs]).toEqual([t.steps, t.epochs]);
      r.fitSync(data.X, data.y, { epochs: 2 });
      same(straight as never, r as never);
    }
    // The optimizer file renamed: the caller names it, and its digest is still checked.
    renameSync(join(moved, 'sub', 'adam.safetensors'), join(moved, 'elsewhere.safetensors'));
    const r = Trainer.load(join(moved, 'model.safetensors'), { optimizerState: join(moved, 'elsewhere.safetensors') });
    r.fitSync(data.X, data.y, { epochs: 2 });
    same(straight as never, r as never);
  });

  it('a pair from two saves (a crash between the two writes) is refused, naming both files', () => {
    const path = join(tmp, 'crash.safetensors');
    const t = trainer({ optimizer: 'sgd', lr: 0.05, momentum: 0.9 });
    t.fitSync(data.X, data.y, { epochs: 1 });
    t.save(path, { layout: 'torch' });
    const older = join(tmp, 'crash-older.optim.safetensors');
    copyFileSync(optim(path), older);
    t.fitSync(data.X, data.y, { epochs: 1 });
    // What a crash after the optimizer file's rename and before the model file's leaves: the old
    // model file beside the new optimizer file (Trainer.save writes the optimizer file first).
    const next = join(tmp, 'crash-next.safetensors');
    t.save(next, { layout: 'torch' });
    copyFileSync(optim(next), optim(path));
    const e = fileError(() => Trainer.load(path));
    expect(e.message).toContain(path);
    expect(e.message).toContain(optim(path));
    expect(e.message).toMatch(/step 5\) .*step 10\): the pair .* does not belong together/);
    expect(e.message).toContain('{ optimizerState: false }');
    // The other way round (an older optimizer file), and a caller-named one, are refused as well.
    copyFileSync(older, optim(next));
    expect(fileError(() => Trainer.load(next)).message).toMatch(/step 10\) .*step 5\)/);
    expect(fileError(() => Trainer.load(next, { optimizerState: older })).message).toContain('does not belong together');
    // The file it was saved with, named by the caller, still resumes it (a copy kept aside).
    expect(Trainer.load(path, { optimizerState: older }).steps).toBe(5);
    // The way out: the weights, with a fresh optimizer and counters from zero.
    const fresh = Trainer.load(path, { optimizerState: false });
    expect([fresh.steps, fresh.epochs]).toEqual([0, 0]);
    const reference = new Trainer(loadSequential(path), { optimizer: 'sgd', lr: 0.05, momentum: 0.9, batchSize: 8, seed: 2 });
    reference.fitSync(data.X, data.y, { epochs: 1 });
    fresh.fitSync(data.X, data.y, { epochs: 1 });
    same(reference as never, fresh as never);
  });

  it('a missing optimizer file is an ERR_FILE naming it and the way out; a failed optimizer write leaves the model file', () => {
    const path = join(tmp, 'lonely.safetensors');
    const t = trainer();
    t.fitSync(data.X, data.y, { epochs: 1 });
    t.save(path, { layout: 'torch' });
    rmSync(optim(path));
    const e = fileError(() => Trainer.load(path));
    expect(e.message).toContain(optim(path));
    expect(e.message).toContain(`the optimizer state saved with ${path}`);
    expect(e.message).toContain('{ optimizerState: false }');
    expect(Trainer.load(path, { optimizerState: false }).steps).toBe(0);
    expect(fileError(() => Trainer.load(path, { optimizerState: join(tmp, 'nowhere.safetensors') })).message).toContain('nowhere.safetensors');
    // A name read from a file is data: one that is not a regular file (a device that never ends) is refused unread.
    const f = loadSafetensors(path, { copy: true });
    saveSafetensors(path, f.tensors as never, { ...f.metadata, optimizer_state: '../'.repeat(20) + 'dev/zero' });
    expect(fileError(() => Trainer.load(path)).message).toMatch(/a regular file \(the optimizer state file\) for .*dev\/zero but received a device/);
    saveSafetensors(path, f.tensors as never, f.metadata);
    // The optimizer file is written first: when it cannot be, the model file is not touched.
    const before = sha256(path);
    t.fitSync(data.X, data.y, { epochs: 1 });
    expect(fileError(() => t.save(path, { layout: 'torch', optimizerState: join(tmp, 'no-such-folder', 'o.safetensors') })).message).toContain('no-such-folder');
    expect(sha256(path)).toBe(before);
  });

  it('a torch-layout file that took steps but names no optimizer file is refused, not resumed with zeroed moments', () => {
    const path = join(tmp, 'draft.safetensors');
    const t = trainer();
    t.fitSync(data.X, data.y, { epochs: 1 });
    t.save(path, { layout: 'torch' });
    // As the earlier draft of this layout wrote it: the optimizer tensors inside, no optimizer file named.
    const f = loadSafetensors(path, { copy: true });
    const o = loadSafetensors(optim(path), { copy: true });
    const { optimizer_state: _n, optimizer_state_sha256: _d, ...meta } = f.metadata;
    const tensors = { ...f.tensors, ...Object.fromEntries(Object.entries(o.tensors).map(([k, x]) => [`optimizer.${k}`, x])) };
    saveSafetensors(path, tensors as never, meta);
    const e = fileError(() => Trainer.load(path));
    expect(e.message).toMatch(/__metadata__\.optimizer_state but received nothing \(__metadata__\.steps is 5\)/);
    expect(e.message).toContain('{ optimizerState: path }');
    expect(Trainer.load(path, { optimizerState: optim(path) }).steps).toBe(5);
    expect(Trainer.load(path, { optimizerState: false }).steps).toBe(0);
  });

  it("optimizerState: false on save writes the weights alone: the state_dict, no counters, no optimizer file", () => {
    const path = join(tmp, 'weights.safetensors');
    const t = trainer();
    t.fitSync(data.X, data.y, { epochs: 1 });
    t.save(path, { layout: 'torch', optimizerState: false });
    expect(existsSync(optim(path))).toBe(false);
    const f = loadSafetensors(path);
    expect(Object.keys(f.tensors).sort()).toEqual(['0.bias', '0.weight', '2.bias', '2.weight']);
    expect(['steps', 'epochs', 'position', 'optimizer_state'].filter((k) => k in f.metadata)).toEqual([]);
    const back = Trainer.load(path);
    expect([back.steps, back.epochs, back.model.toString()]).toEqual([0, 0, t.model.toString()]);
    same(t as never, back as never);
    // handgrad's layout too: no optimizer tensors, a fresh run.
    const h = join(tmp, 'weights-handgrad.safetensors');
    t.save(h, { optimizerState: false });
    expect(Object.keys(loadSafetensors(h).tensors).some((n) => n.startsWith('optimizer.'))).toBe(false);
    expect(Trainer.load(h).steps).toBe(0);
    // And load's false in handgrad's layout: the moments in the file are not read.
    t.save(h);
    expect([Trainer.load(h).steps, Trainer.load(h, { optimizerState: false }).steps]).toEqual([5, 0]);
  });

  it('bad optimizerState options are TypeError/RangeError/ERR_FILE naming them', () => {
    const t = trainer();
    const path = join(tmp, 'opts.safetensors');
    expect(() => t.save(path, { layout: 'torch', optimizerState: 3 as never })).toThrow(/false or the path of the optimizer file for opts\.optimizerState/);
    expect(() => t.save(path, { layout: 'torch', optimizerState: '' })).toThrow(RangeError);
    expect(() => t.save(path, { layout: 'torch', optimizerState: path })).toThrow(/another path than the model file's for opts\.optimizerState/);
    expect(() => t.save(path, { optimizerState: join(tmp, 'o.safetensors') })).toThrow(/no path without layout: 'torch'/);
    expect(() => t.save(path, { layout: 'torch', optimizerStat: false } as never)).toThrow(/optimizerState/);
    t.save(path);
    expect(fileError(() => Trainer.load(path, { optimizerState: join(tmp, 'o.safetensors') })).message).toMatch(/PyTorch's layout for opts\.optimizerState/);
    expect(() => Trainer.load(path, { optimizerState: 1 as never })).toThrow(TypeError);
  });
});
