// Checkpoints: handgrad's layout round trip, PyTorch's state_dict layout (nn.Linear stores Wᵀ),
// and a Trainer that resumes exactly where it was saved. A two-layer file's loss survives a save
// of loadParams' params (saveParams, saveModel, a Trainer of them): it was written away before.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forwardBackward, initParams, loadModel, loadParams, saveModel, saveParams, Trainer, xor } from '../lib';
import { loadSafetensors, saveSafetensors } from '../lib/io/safetensors';

const dir = mkdtempSync(join(tmpdir(), 'handgrad-ckpt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('checkpoints', () => {
  it('saveParams → loadParams gives the same tensors, dims and activation', () => {
    const p = initParams({ D: 3, H: 4, C: 2 }, { seed: 1, dtype: 'float32' });
    saveParams(join(dir, 'p.safetensors'), p, { activation: 'tanh' });
    const q = loadParams(join(dir, 'p.safetensors'));
    expect([q.D, q.H, q.C, q.activation, q.layout]).toEqual([3, 4, 2, 'tanh', 'handgrad']);
    expect(q.W1).toEqual(p.W1);
    expect(q.W2).toBeInstanceOf(Float32Array);
    expect(q.W2).toEqual(p.W2);
  });

  it("reads PyTorch's layout: 0.weight is W1ᵀ [H,D], 2.weight is W2ᵀ [C,H]", () => {
    // What safetensors.torch.save_file(nn.Sequential(Linear(2,3), ReLU(), Linear(3,2)).state_dict())
    // writes, built here by hand: weight[h][d] = W1[d][h].
    const W1 = [
      [1, 2, 3],
      [4, 5, 6],
    ]; // [D=2, H=3]
    const W2 = [
      [7, 8],
      [9, 10],
      [11, 12],
    ]; // [H=3, C=2]
    const path = join(dir, 'torch.safetensors');
    saveSafetensors(path, {
      '0.weight': { dtype: 'F64', shape: [3, 2], data: [1, 4, 2, 5, 3, 6] },
      '0.bias': { dtype: 'F64', shape: [3], data: [0.1, 0.2, 0.3] },
      '2.weight': { dtype: 'F64', shape: [2, 3], data: [7, 9, 11, 8, 10, 12] },
      '2.bias': { dtype: 'F64', shape: [2], data: [0.5, 0.6] },
    });
    // A state_dict records no activation: the caller names it (test/40 has the refusal).
    const q = loadParams(path, { activation: 'relu' });
    expect(q.layout).toBe('torch');
    expect(q.activation).toBe('relu');
    expect([...q.W1]).toEqual(W1.flat());
    expect([...q.W2]).toEqual(W2.flat());
    expect([...q.b1]).toEqual([0.1, 0.2, 0.3]);
    // And back: saving in torch layout then loading gives the same W1.
    saveParams(join(dir, 'again.safetensors'), q, { layout: 'torch' });
    expect([...loadParams(join(dir, 'again.safetensors')).W1]).toEqual(W1.flat());
  });

  it('a Trainer saved mid-run resumes bit for bit (Adam state and counters included)', () => {
    const { X, y } = xor({ seed: 4 });
    const opts = { optimizer: 'adam', lr: 0.01, batchSize: 16, seed: 7 } as const;
    const straight = new Trainer(initParams({ D: 2, H: 8, C: 2 }, { seed: 3 }), opts);
    straight.fitSync(X, y, { epochs: 4 });
    const first = new Trainer(initParams({ D: 2, H: 8, C: 2 }, { seed: 3 }), opts);
    first.fitSync(X, y, { epochs: 2 });
    first.save(join(dir, 't.safetensors'));
    const resumed = Trainer.load(join(dir, 't.safetensors'));
    expect([resumed.steps, resumed.epochs]).toEqual([first.steps, first.epochs]);
    resumed.fitSync(X, y, { epochs: 2 });
    expect(resumed.params.W1).toEqual(straight.params.W1);
    expect(resumed.params.b2).toEqual(straight.params.b2);
  });

  it('a malformed or mismatched file is a clear ERR_FILE error', () => {
    const path = join(dir, 'bad.safetensors');
    saveSafetensors(path, { W1: { dtype: 'F64', shape: [2, 3], data: new Float64Array(6) }, b1: { dtype: 'F64', shape: [3], data: new Float64Array(3) }, W2: { dtype: 'F64', shape: [4, 2], data: new Float64Array(8) }, b2: { dtype: 'F64', shape: [2], data: new Float64Array(2) } });
    expect(() => loadParams(path)).toThrow(expect.objectContaining({ code: 'ERR_FILE', message: expect.stringMatching(/shape \[3,2\] for W2 but received \[4,2\]/) }));
    expect(() => loadParams(join(dir, 'missing.safetensors'))).toThrow(expect.objectContaining({ code: 'ERR_FILE' }));
  });

  it('loaded parameters compute the same gradients as the originals', () => {
    const p = initParams({ D: 5, H: 6, C: 3 }, { seed: 8 });
    saveParams(join(dir, 'g.safetensors'), p, { layout: 'torch' });
    const q = loadParams(join(dir, 'g.safetensors'));
    const X = new Float64Array(10).map((_, i) => Math.cos(i));
    expect(forwardBackward(q, X, [0, 2]).grads.dW1).toEqual(forwardBackward(p, X, [0, 2]).grads.dW1);
  });

  describe("a two-layer file's loss, saved again from loadParams' params", () => {
    const loss = { reduction: 'sum', weight: [1, 5, 1] };
    /** A ReLU 2→4→3 file with that loss in its metadata, written by hand. */
    const lossFile = (): string => {
      const f = join(dir, 'loss.safetensors');
      const t = (shape: number[]) => ({ dtype: 'F64' as const, shape, data: Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => 0.1 * Math.cos(i + shape[0])) });
      saveSafetensors(f, { W1: t([2, 4]), b1: t([4]), W2: t([4, 3]), b2: t([3]) }, { format: 'handgrad', activation: 'relu', loss: JSON.stringify(loss) });
      return f;
    };
    const savedLoss = (path: string) => JSON.parse(loadSafetensors(path).metadata.loss ?? '{"reduction":"mean"}');

    it('saveParams(path, loadParams(f)) writes it, in either layout, and loadParams reads it back', () => {
      const q = loadParams(lossFile());
      for (const layout of ['handgrad', 'torch'] as const) {
        const g = join(dir, `loss-again-${layout}.safetensors`);
        saveParams(g, q, { layout });
        expect(savedLoss(g)).toEqual(loss);
        expect(loadParams(g).loss).toEqual(loss);
      }
    });

    it('saveModel of the params and a Trainer of them (save, and saveParams of its snapshot) keep it', () => {
      const q = loadParams(lossFile());
      expect(loadModel(saveModel(q)!).net.spec()).toMatchObject({ reduction: 'sum', loss: { weight: [1, 5, 1] } });
      const t = new Trainer(q, { lr: 0.1 });
      const h = join(dir, 'loss-trainer.safetensors');
      t.save(h);
      expect(savedLoss(h)).toEqual(loss);
      const g = join(dir, 'loss-snapshot.safetensors');
      saveParams(g, t.snapshot());
      expect(loadParams(g).loss).toEqual(loss);
    });

    it('params without a loss still write none (the mean: the files of before, bit for bit)', () => {
      const g = join(dir, 'noloss.safetensors');
      saveParams(g, initParams({ D: 2, H: 4, C: 3 }, { seed: 1 }));
      expect(loadSafetensors(g).metadata.loss).toBeUndefined();
      expect(loadParams(g).loss).toEqual({ reduction: 'mean' });
    });
  });
});
