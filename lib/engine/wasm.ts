// The wasm engine: the stack executor of native/core/stack.h compiled to wasm32 (lib/backends/
// wasm.ts), one module call per step. The module sees only its own linear memory, so a step
// lays out, per batch size, the net's description, its tensors and the workspace there (from
// __heap_base: every call overwrites the last one's), copies in X, y, the parameters (and the
// gradients when accumulating), runs, and copies out the gradients and the logits; the other
// workspace tensors only when tensors(B) asks for them, right after the step.
import type { FloatArray } from '../types';
import { fail, memoryOf, Received } from '../validate';
import { checkLengths, emptyMeanError, paramCounts, type Engine, type PreparedNet, REDUCTION_CODE, type StackDescription, failureOf, perBatch } from './engine';
import { align, ensureMemory, lastWriter, load, type Ptr } from '../backends/wasm';

type F = Float64ArrayConstructor | Float32ArrayConstructor;

/** One batch size's regions of linear memory (byte offsets) and its views onto them. */
interface Batch {
  /** Region offsets: the int32 header (kinds, widths, tensor pointers, status), then X, y, params, grads, dX, ws. */
  net: Ptr; ptrs: Ptr; status: Ptr; X: Ptr; y: Ptr; dX: Ptr; ws: Ptr; end: number;
  /** The loss options' regions: weight [C], probability targets [B,C], gradOutput [B]. */
  weight: Ptr; targets: Ptr; gradOutput: Ptr;
  params: Ptr[]; grads: Ptr[]; B: number;
  /** Element offsets of the outputs and probs in ws (stackLayout). */
  at: Float64Array;
  /** The header's contents, written on every call (the memory may hold another net's). */
  header: Int32Array;
  /** The JS-side logits, and the other tensors once tensors(B) copied them. */
  logits: FloatArray;
  cache: { outputs: FloatArray[]; probs: FloatArray } | null;
  /** Views onto `of` (rebuilt after the memory grows). */
  of: ArrayBuffer | null;
  v: Views | null;
  /** Whether the last call on this batch was a forwardBackward (probs are then valid). */
  stepped: boolean;
}

interface Views {
  header: Int32Array; status: Int32Array; X: FloatArray; y: Int32Array; dX: FloatArray;
  weight: FloatArray; targets: FloatArray; gradOutput: FloatArray; losses: FloatArray;
  params: FloatArray[]; grads: FloatArray[]; outputs: FloatArray[]; probs: FloatArray;
}

function prepare(net: StackDescription): PreparedNet {
  const w = load(); // ERR_WASM_UNAVAILABLE here, before any work
  const { kinds, widths, params } = net;
  const f32 = net.dtype === 'float32';
  const A: F = f32 ? Float32Array : Float64Array;
  const size = A.BYTES_PER_ELEMENT;
  const L = kinds.length;
  const P = params.length;
  const counts = paramCounts(net);
  const D = widths[0];
  const C = widths[L];
  const step = f32 ? w.stackForwardBackwardF32 : w.stackForwardBackwardF64;
  const stepLoss = f32 ? w.stackForwardBackwardLossF32 : w.stackForwardBackwardLossF64;
  const fwd = f32 ? w.stackForwardF32 : w.stackForwardF64;
  const batches = perBatch((B: number): Batch => {
    const header = new Int32Array(2 * L + 1 + 2 * P);
    header.set(kinds);
    header.set(widths, L);
    let at = align(w.__heap_base.value);
    const take = (bytes: number) => {
      const p = at;
      at = align(at + bytes);
      return p;
    };
    const head = take(4 * header.length + 8);
    // The layout is the module's (stackLayout), asked once per batch size.
    const layoutAt = align(head + 4 * header.length);
    ensureMemory(w, layoutAt + 8 * (L + 3), `the layout of B=${B}`);
    new Int32Array(w.memory.buffer, head, header.length).set(header);
    if (!w.stackLayout(head, L, B, +f32, layoutAt)) fail(RangeError, 'a batch whose workspace fits in a typed array (2^32 − 1 elements)', 'B', B);
    const layout = new Float64Array(w.memory.buffer, layoutAt, L + 3).slice();
    const X = take(B * D * size);
    const y = take(4 * B);
    const pP = counts.map((n) => take(n * size));
    const pG = counts.map((n) => take(n * size));
    const dX = take(B * D * size);
    const ws = take(layout[L + 1] * size);
    const weight = take(C * size);
    const targets = take(B * C * size);
    const gradOutput = take(B * size);
    header.set(pP, 2 * L + 1);
    header.set(pG, 2 * L + 1 + P);
    return {
      B, net: head, ptrs: head + 4 * (2 * L + 1), status: head + 4 * header.length, X, y, dX, ws, end: at, weight, targets, gradOutput,
      params: pP, grads: pG, at: layout, header, logits: new A(B * C), cache: null, of: null, v: null, stepped: false,
    };
  });

  /** The batch's regions with the memory grown to hold them, the header and params written, and the views. */
  const enter = (b: Batch): Views => {
    // The same buffer as when the views were made: the memory held b.end bytes then and never shrinks.
    if (b.of !== w.memory.buffer || !b.v) {
      ensureMemory(w, b.end, `B=${b.B}, widths=${widths.join('→')}`);
      const mem = w.memory.buffer;
      const { B, at } = b;
      const f = (p: Ptr, n: number) => new A(mem, p, n);
      b.v = {
        header: new Int32Array(mem, b.net, b.header.length), status: new Int32Array(mem, b.status, 2),
        X: f(b.X, B * D), y: new Int32Array(mem, b.y, B), dX: f(b.dX, B * D),
        params: b.params.map((p, j) => f(p, counts[j])), grads: b.grads.map((p, j) => f(p, counts[j])),
        outputs: Array.from(kinds, (_, i) => f(b.ws + at[i] * size, B * widths[i + 1])), probs: f(b.ws + at[L] * size, B * C),
        weight: f(b.weight, C), targets: f(b.targets, B * C), gradOutput: f(b.gradOutput, B), losses: f(b.ws + at[L + 2] * size, B),
      };
      b.of = mem;
      lastWriter.by = null;
    }
    const v = b.v;
    // The header stays from this batch's last call unless another call has written since.
    if (lastWriter.by !== b) v.header.set(b.header);
    for (let j = 0; j < P; j++) v.params[j].set(params[j]);
    lastWriter.by = b;
    return v;
  };

  const failure = (v: Views) => {
    const [stage, at] = v.status;
    if (stage === 5) fail(RangeError, `labels in [0, ${C})`, 'y', new Received(`${v.y[at]} at index ${at}`));
    if (stage === 6) throw emptyMeanError(at, lastIgnoreIndex);
    return failureOf([stage, at]);
  };

  let lastIgnoreIndex = -100; // for the words of a refused 'mean' (status 6)
  return {
    forwardBackward(a) {
      const { X, y, B, grads, dX, reduction, accumulate } = a;
      const b = batches.get(B);
      const v = enter(b); // sizes the memory first: a step past 4 GiB is refused as such
      checkLengths(a.X, a.B, D, params, counts, a); // before anything runs on what enter() and the copies below read
      v.X.set(X);
      v.y.set(y); // the module's copy: another thread can no longer change it
      if (accumulate) {
        for (let j = 0; j < P; j++) v.grads[j].set(grads[j]);
        if (dX) v.dX.set(dX);
      }
      b.stepped = true;
      const o = a.loss;
      let loss: number;
      if (o == null) {
        lastIgnoreIndex = -100;
        loss = step(b.net, L, b.ws, b.X, b.y, B, dX ? b.dX : 0, REDUCTION_CODE[reduction], +accumulate, b.ptrs, P, b.status);
      } else {
        // The module's copies (it copies them again into its workspace): read once, here.
        const put = (from: FloatArray | null, into: FloatArray, at: Ptr, name: string): Ptr => {
          if (from === null) return 0;
          if (from.length !== into.length) fail(RangeError, `${into.length} elements`, name, from);
          into.set(from);
          return at;
        };
        lastIgnoreIndex = o.ignoreIndex;
        loss = stepLoss(b.net, L, b.ws, b.X, b.y, B, dX ? b.dX : 0, +accumulate, b.ptrs, P, b.status, REDUCTION_CODE[o.reduction],
          put(o.weight, v.weight, b.weight, 'weight'), o.ignoreIndex, o.labelSmoothing, put(o.targets, v.targets, b.targets, 'targets'),
          put(o.gradOutput, v.gradOutput, b.gradOutput, 'gradOutput'));
      }
      const failed = loss !== loss; // NaN
      if (failed && v.status[0] !== 4) return failure(v); // nothing written to the gradients
      for (let j = 0; j < P; j++) grads[j].set(v.grads[j]);
      if (dX) dX.set(v.dX);
      if (failed) return failure(v); // 'grads': the caller scans them for the name
      b.logits.set(v.outputs[L - 1]);
      return o?.reduction === 'none' ? { loss, logits: b.logits, losses: v.losses.slice() } : { loss, logits: b.logits };
    },
    forward(X, B) {
      const b = batches.get(B);
      const v = enter(b);
      checkLengths(X, B, D, params, counts, null);
      v.X.set(X);
      b.stepped = false;
      if (!fwd(b.net, L, b.ws, b.X, B, b.ptrs, b.status)) return failure(v);
      b.logits.set(v.outputs[L - 1]);
      return { logits: b.logits };
    },
    tensors(B) {
      const b = batches.peek(B);
      if (!b || !b.v) return null;
      if (lastWriter.by !== b) throw new Error(`wasm engine: tensors(${B}) must be read right after the step (the module's memory was reused since)`);
      b.cache ??= { outputs: b.v.outputs.map((o) => new A(o.length)), probs: new A(B * C) };
      b.cache.outputs.forEach((o, i) => o.set(b.v!.outputs[i]));
      if (b.stepped) b.cache.probs.set(b.v.probs);
      return b.cache;
    },
    sharesWorkspace(B, view) {
      // The module's memory (all of it: the step writes its regions and its own stack there), and
      // the JS-side logits and cache, each its buffer's only view.
      const m = memoryOf(view);
      if (m === null) return false;
      if (m === w.memory.buffer) return true;
      const b = batches.peek(B);
      if (b === undefined) return false;
      return m === b.logits.buffer || (b.cache !== null && (m === b.cache.probs.buffer || b.cache.outputs.some((o) => o.buffer === m)));
    },
  };
}

export const wasmEngine: Engine = { name: 'wasm', prepare };
