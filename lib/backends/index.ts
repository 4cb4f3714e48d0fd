import { HandgradError } from '../errors';
import type { BackendName } from '../types';
import type { Backend } from './backend';
import { nativeBackend } from './native';
import { loadTorchBackend } from './torch';
import { tsBackend } from './ts';

// Backends are looked up by name at call time so an optional one (torch, wasm) costs nothing
// until asked for, and its absence is a HandgradError that says how to get it.
const registry: Record<BackendName, () => Backend> = {
  native: () => nativeBackend,
  ts: () => tsBackend,
  torch: loadTorchBackend,
  wasm: () => {
    throw new HandgradError('ERR_WASM_UNAVAILABLE', "The 'wasm' backend is not in this version of handgrad yet; use 'native' or 'ts'.");
  },
};

export function getBackend(name: BackendName): Backend {
  return registry[name]();
}

/** Lets an optional backend module plug itself in (used by the torch and wasm loaders). */
export function registerBackend(name: BackendName, load: () => Backend): void {
  registry[name] = load;
}
