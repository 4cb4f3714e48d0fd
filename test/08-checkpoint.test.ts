// Checkpoints: handgrad's layout round trip, PyTorch's state_dict layout (nn.Linear stores Wᵀ),
// and a Trainer that resumes exactly where it was saved.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { forwardBackward, initParams, loadParams, saveParams, Trainer, xor } from '../lib';
import { saveSafetensors } from '../lib/io/safetensors';

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
});
