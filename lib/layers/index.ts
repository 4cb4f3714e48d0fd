export { ReLU, Sigmoid, Tanh } from './activation';
export type { Layer, LayerContext, LayerKind, LayerSpec } from './layer';
export { Linear, type LinearOptions } from './linear';
export { SoftmaxCrossEntropy, type LossContext, type LossSpec, type SoftmaxCrossEntropyOptions } from './loss';
export {
  type MlpOptions, Sequential, type SequentialForwardBackwardOptions, type SequentialOptions, type SequentialResult, type SequentialSpec,
} from './sequential';
export { type ClassMetrics, type Evaluation, MAX_CONFUSION_CLASSES } from './class-metrics';
