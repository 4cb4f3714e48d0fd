// Which backends can run here, found at run time: every name lib/ accepts is tried on a tiny
// problem in each dtype, so a backend that lib/ gains later (torch, wasm) joins the table by itself.
import { HandgradError } from '../lib/errors';
import { forwardBackward } from '../lib/model';
import type { BackendName, Dtype } from '../lib/types';
import { BACKENDS } from '../lib/validate';
import { makeProblem } from './sizes';

export const DTYPES: readonly Dtype[] = ['float64', 'float32'];

export interface Availability {
  backend: BackendName;
  dtype: Dtype;
  available: boolean;
  /** Why not, when unavailable (the backend's own message). */
  note?: string;
}

function probe(backend: BackendName, dtype: Dtype): Availability {
  const p = makeProblem({ B: 2, D: 3, H: 4, C: 2 }, dtype);
  try {
    const { loss } = forwardBackward(p.params, p.X, p.y, { backend, inputGrad: true, out: p.out });
    if (!Number.isFinite(loss)) return { backend, dtype, available: false, note: `returned a non-finite loss (${loss})` };
    return { backend, dtype, available: true };
  } catch (e) {
    const code = e instanceof HandgradError ? `${e.code}: ` : '';
    const message = e instanceof Error ? e.message : String(e);
    return { backend, dtype, available: false, note: `${code}${message}` };
  }
}

/** Every (backend, dtype) pair lib/ knows, with whether it runs on this machine. */
export function discoverBackends(): Availability[] {
  return BACKENDS.flatMap((b) => DTYPES.map((d) => probe(b, d)));
}
