import type { BackendName } from '../types';
import type { Backend } from './backend';
import { nativeBackend } from './native';
import { loadTorchBackend } from './torch';
import { tsBackend } from './ts';
import { wasmBackend } from './wasm';

// Backends are looked up by name at call time so an optional one (torch, wasm) costs nothing
// until asked for, and its absence is a HandgradError that says how to get it.
const registry: Record<BackendName, () => Backend> = {
  native: () => nativeBackend,
  ts: () => tsBackend,
  torch: loadTorchBackend,
  wasm: () => wasmBackend,
};

export function getBackend(name: BackendName): Backend {
  return registry[name]();
}

/** Replaces a backend loader (tests use it to point a backend at another build). */
export function registerBackend(name: BackendName, load: () => Backend): void {
  registry[name] = load;
}
