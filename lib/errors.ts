/** Errors that are neither a wrong kind of value (TypeError) nor a wrong size or value (RangeError). */
export type HandgradErrorCode =
  | 'ERR_NATIVE_UNAVAILABLE' | 'ERR_TORCH_UNAVAILABLE' | 'ERR_WASM_UNAVAILABLE' | 'ERR_BUSY' | 'ERR_NOT_BUILT' | 'ERR_WORKER' | 'ERR_FILE' | 'ERR_DISTRIBUTED' | 'ERR_EXACT_UNAVAILABLE' | 'ERR_LANES_UNAVAILABLE';

export class HandgradError extends Error {
  constructor(readonly code: HandgradErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HandgradError';
  }
}
