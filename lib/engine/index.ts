// The engine of a backend by name. The native and wasm engines load their module on first use;
// an unavailable one is a HandgradError that says how to get it, thrown by prepare().
import type { BackendName } from '../types';
import type { Engine } from './engine';
import { nativeEngine } from './native';
import { torchEngine } from './torch';
import { tsEngine } from './ts';
import { wasmEngine } from './wasm';

const ENGINES: Record<BackendName, Engine> = { native: nativeEngine, ts: tsEngine, torch: torchEngine, wasm: wasmEngine };

export function engine(name: BackendName): Engine {
  return ENGINES[name];
}
