// Peers: the same training step in another library, timed in the same run and the same table.
// TensorFlow.js (tfjs-core) on its pure-JS CPU backend and its WebAssembly backend, f32 only:
// forward (X·W1+b1 → relu → ·W2+b2), mean softmax cross-entropy, and the gradients of
// [X, W1, b1, W2, b2] by tf.valueAndGrads, all inside tf.tidy so every step frees its tensors.
// The tfjs packages are devDependencies, loaded lazily: without them the peers are listed as
// skipped and the rest of the bench runs as before.
import { dirname, join } from 'node:path';
import { packageRoot } from '../lib/binding';
import type { Dims } from '../lib/types';
import { makeProblem } from './sizes';

export const PEERS = ['tfjs-cpu', 'tfjs-wasm'] as const;
export type PeerName = (typeof PEERS)[number];

export interface PeerAvailability {
  backend: PeerName;
  dtype: 'float32';
  available: boolean;
  note?: string;
}

type Tf = typeof import('@tensorflow/tfjs-core');
let tfCache: Tf | undefined;

/** TensorFlow.js with both backends registered (throws when the packages are not installed). */
function loadTf(): Tf {
  if (tfCache) return tfCache;
  // The union package: tfjs-core with the CPU backend and every gradient registered (tfjs-core's
  // own Node build registers no gradients).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const tf = require('@tensorflow/tfjs') as Tf;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
  // The .wasm files ship in the package; in Node tfjs would otherwise look next to the bundle.
  const dir = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json', { paths: [packageRoot] })), 'dist');
  wasm.setWasmPaths(`${dir}/`);
  tfCache = tf;
  return tf;
}

const TF_BACKEND: Record<PeerName, string> = { 'tfjs-cpu': 'cpu', 'tfjs-wasm': 'wasm' };

/** Makes `peer` tfjs's current backend (initialising it on first use). */
async function use(peer: PeerName): Promise<Tf> {
  const tf = loadTf();
  // tfjs-backend-cpu prints a "use tfjs-node" banner through console.warn on first use: not ours to show.
  const warn = console.warn;
  console.warn = () => {};
  try {
    if (!(await tf.setBackend(TF_BACKEND[peer]))) throw new Error(`tf.setBackend('${TF_BACKEND[peer]}') failed`);
    await tf.ready();
    tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(1)).dataSync());
  } finally {
    console.warn = warn;
  }
  return tf;
}

/** A peer's training step at one size, on the same seeded f32 data as handgrad's rows. */
export interface PeerStep {
  /** One step; returns the loss. */
  step: () => number;
  /** Live tfjs tensors (constant across steps when nothing leaks). */
  numTensors: () => number;
  dispose: () => void;
}

export async function makePeerStep(peer: PeerName, dims: Dims): Promise<PeerStep> {
  const tf = await use(peer);
  const p = makeProblem(dims, 'float32');
  const { B, D, H, C } = dims;
  const X = tf.tensor2d(p.X as Float32Array, [B, D]);
  const W1 = tf.tensor2d(p.params.W1 as Float32Array, [D, H]);
  const b1 = tf.tensor1d(p.params.b1 as Float32Array);
  const W2 = tf.tensor2d(p.params.W2 as Float32Array, [H, C]);
  const b2 = tf.tensor1d(p.params.b2 as Float32Array);
  const Y = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(p.y, 'int32'), C), 'float32'));
  const lossOf = (...[x, w1, c1, w2, c2]: import('@tensorflow/tfjs-core').Tensor[]) => {
    const h = tf.relu(tf.add(tf.matMul(x as never, w1 as never), c1));
    const logits = tf.add(tf.matMul(h, w2 as never), c2);
    return tf.neg(tf.mean(tf.sum(tf.mul(Y, tf.logSoftmax(logits)), 1))) as import('@tensorflow/tfjs-core').Scalar;
  };
  const vg = tf.valueAndGrads(lossOf);
  const inputs = [X, W1, b1, W2, b2];
  const step = () =>
    tf.tidy(() => {
      const { value } = vg(inputs);
      // Both backends are synchronous: the gradients exist once vg returns; reading the loss
      // (one float) is what forwardBackward returns too.
      return value.dataSync()[0];
    });
  return {
    step,
    numTensors: () => tf.memory().numTensors,
    dispose: () => tf.dispose([...inputs, Y]),
  };
}

/** Which peers run here: each is set up and takes one tiny step. */
export async function discoverPeers(): Promise<PeerAvailability[]> {
  const out: PeerAvailability[] = [];
  for (const backend of PEERS) {
    try {
      const s = await makePeerStep(backend, { B: 2, D: 3, H: 4, C: 2 });
      const loss = s.step();
      s.dispose();
      out.push(Number.isFinite(loss) ? { backend, dtype: 'float32', available: true } : { backend, dtype: 'float32', available: false, note: `returned a non-finite loss (${loss})` });
    } catch (e) {
      out.push({ backend, dtype: 'float32', available: false, note: e instanceof Error ? e.message.split('\n')[0] : String(e) });
    }
  }
  return out;
}
