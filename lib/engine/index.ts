// The engine of a backend by name. The native and wasm engines load their module on first use;
// an unavailable one is a HandgradError that says how to get it, thrown by prepare().
import { nativeKernels } from '../kernels/native';
import { wasmKernels } from '../kernels/wasm';
import type { BackendName } from '../types';
import type { Engine } from './engine';
import { torchEngine } from './torch';
import { kernelsEngine, tsEngine } from './ts';

const ENGINES: Record<BackendName, Engine> = {
  native: kernelsEngine('native', () => nativeKernels),
  ts: tsEngine,
  torch: torchEngine,
  wasm: kernelsEngine('wasm', () => wasmKernels),
};

export function engine(name: BackendName): Engine {
  return ENGINES[name];
}
