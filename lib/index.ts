export { HandgradError, type HandgradErrorCode } from './errors';
export { forward, forwardBackward, predict, probs, softmax } from './model';
export type { ForwardBackwardOptions, ForwardBackwardResult, ForwardOptions } from './model';
export { initParams, type Init, type InitOptions, type InitializedParams } from './params';
export { Rng } from './rng';
export { getNumThreads, setNumThreads } from './threads';
export type { Activation, BackendName, Cache, Dims, Dtype, FloatArray, Grads, Labels, Params, Reduction } from './types';
