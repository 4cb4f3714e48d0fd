// The deep net's native step against its matrix products alone: the 3·L products a step with dX
// makes (per Linear: Z = A·W, dW = Aᵀ·dZ, dA = dZ·Wᵀ), at the step's shapes, transposes and betas,
// through the addon's gemm — the same hg::gemm the step calls (OpenBLAS, or the BLAS lanes in
// float64) — timed alternately with the step. The products alone are what no MLP library can go
// below on this BLAS, so "% of the peak" of the step says what the BLAS gives at these shapes and
// "step ÷ products" what handgrad adds to it (the bias, activations, loss, checks and calls).
import { coreBinding } from '../lib/binding';
import type { FloatArray } from '../lib/types';
import type { BenchOptions } from './options';
import { ENGINE_ROUNDS, netFlop, outBuffers, type NetCase } from './sequential';
import { measureCase, type Measured } from './step';

export interface ProductsBound {
  /** The lowest of the rounds' medians, µs: the step (seq.forwardBackward with dX and out buffers). */
  stepUs: number;
  /** The same for the products alone. */
  productsUs: number;
  /** The median over rounds of the step's median ÷ the products' in the same round. */
  stepOverProducts: number;
  /** The step's FLOP (6·B·Σ in·out) over productsUs. */
  productsGflops: number;
  rounds: number;
  /** productsGflops ÷ the run's (d|s)gemm peak in %, set by run.ts once the peak is known. */
  pctPeak?: number | null;
}

/** One call of every product of a step of `c`'s net, on buffers of its shapes (filled once). */
function productsOf(c: NetCase): () => void {
  const { B, widths } = c.net;
  const core = coreBinding();
  const make = (n: number, v: number): FloatArray => (c.dtype === 'float64' ? new Float64Array(n) : new Float32Array(n)).fill(v);
  // [transA, transB, M, N, K, beta]: native/core/stack.h's calls (the forward adds into Z, which holds the bias).
  const shapes: [boolean, boolean, number, number, number, number][] = [];
  for (let l = 0; l + 1 < widths.length; l++) {
    const inF = widths[l];
    const out = widths[l + 1];
    shapes.push([false, false, B, out, inF, 1], [true, false, inF, out, B, 0], [false, true, B, inF, out, 0]);
  }
  const calls = shapes.map(([tA, tB, M, N, K, beta]) => {
    const a = make(M * K, 0.5);
    const b = make(K * N, 0.25);
    const out = make(M * N, 0);
    return () => core.gemm(tA, tB, M, N, K, 1, a, b, beta, out);
  });
  return () => {
    for (const call of calls) call();
  };
}

/**
 * The native step of `c` and its products alone, one window each per round (the order swapped
 * every other round), each window on a third of the normal budget.
 */
export async function measureProducts(c: NetCase, opts: BenchOptions): Promise<ProductsBound> {
  const rounds = opts.quick ? 1 : ENGINE_ROUNDS;
  const part: BenchOptions = { ...opts, step: { minTimeMs: opts.step.minTimeMs / rounds, minSamples: opts.step.minSamples } };
  const flopPerStep = netFlop(c.net);
  const fbOpts = { backend: 'native' as const, inputGrad: true, out: outBuffers(c.seq, c.net.B) };
  const products = productsOf(c);
  const contenders: Array<() => number> = [() => c.seq.forwardBackward(c.X, c.y, fbOpts).loss, () => (products(), 0)];
  const medians: number[][] = [[], []];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [0, 1] : [1, 0];
    for (const k of order) {
      const m = await measureCase<Measured>({ flopPerStep }, contenders[k], part);
      if (!m.timing) throw new Error(m.skipped ?? 'not measured');
      medians[k].push(m.timing.medianUs);
    }
  }
  const ratios = medians[0].map((s, i) => s / medians[1][i]).sort((x, y) => x - y);
  const productsUs = Math.min(...medians[1]);
  return {
    stepUs: Math.min(...medians[0]),
    productsUs,
    stepOverProducts: ratios[ratios.length >> 1],
    productsGflops: flopPerStep / (productsUs * 1e3),
    rounds,
  };
}
