export { HandgradError, type HandgradErrorCode } from './errors';
export { forward, forwardBackward, predict, probs, softmax } from './model';
export type { ForwardBackwardOptions, ForwardBackwardResult, ForwardOptions, InputOf, LoadedParams } from './model';
export { initParams, type ArrayOf, type Init, type InitOptions, type InitializedParams } from './params';
export { Rng } from './rng';
export { getBlasLanes, getNumThreads, getSparseInput, setBlasLanes, setNumThreads, setSparseInput } from './threads';
export { getTorchThreads, setTorchThreads, torchAvailable } from './backends/torch';
export type { Activation, BackendName, Cache, Dims, Dtype, FloatArray, Grads, Labels, Params, Reduction } from './types';
export { Trainer, type FitCallbacks, type FitOptions, type LiveParams, type ProgressEvent, type TrainerOptions, type TrainerParams, type TrainerSaveOptions, type TwoLayerParams } from './train/trainer';
export type { EpochRecord, FitResult, StepEvent } from './train/loop';
export type { OptimizerName } from './train/optimizer';
export type { Schedule } from './train/schedule';
export { blobs, fitStandardizer, loadDigits, loadIdx, loadMnist, readCsv, readCsvAsync, readIdx, spirals, trainValSplit, xor } from './data';
export type { BlobsOptions, CsvAsyncOptions, CsvAsyncSource, CsvDataset, CsvOptions, CsvProgress, CsvSource, Dataset, DigitsOptions, IdxArray, Mnist, MnistOptions, SpiralsOptions, Split, SplitOptions, Standardizer, XorOptions } from './data';
export { loadParams, loadSequential, saveParams, saveSequential, transpose, type ArchitectureOptions, type Layout, type LoadedSequential, type ModuleKind, type SavedParams } from './checkpoint';
export { loadModel, Model, saveModel, type ModelFileOptions, type ModelInfo, type Preprocess, type Rows } from './model-file';
export { loadSafetensors, readSafetensors, saveSafetensors, writeSafetensors } from './io/safetensors';
export type { ReadOptions, SafetensorsDtype, SafetensorsFile, SafetensorsTensor, TensorData, TensorInput } from './io/safetensors';
export { verify } from './verify/verify';
export type {
  Candidate, GradFunction, ReferenceName, SequentialCandidate, SequentialDescription, SequentialGradFunction, SequentialVerifyOptions, SequentialVerifyReport,
  TensorCheck, VerifyOptions, VerifyReport, VerifyReportBase,
} from './verify/verify';
export { gradcheck } from './verify/gradcheck';
export type {
  GradcheckEntry, GradcheckOptions, GradcheckReport, GradcheckReportBase, GradcheckTensor, SequentialGradcheckOptions, SequentialGradcheckReport,
} from './verify/gradcheck';
export type { Diagnosis, DiagnosisKind, TensorName } from './verify/diagnose';
export type { GradsLike, LayerGradsLike, TensorLike } from './verify/coerce';
export { formatGradcheckReport, formatVerifyReport } from './verify/format';
export { Linear, ReLU, Sequential, Sigmoid, SoftmaxCrossEntropy, Tanh } from './layers';
export type {
  ClassMetrics, Evaluation, Layer, LayerContext, LayerKind, LayerSpec, LinearOptions, LossContext, MlpOptions, SequentialForwardBackwardOptions, SequentialOptions,
  SequentialResult, SequentialSpec, SoftmaxCrossEntropyOptions,
} from './layers';
export type { Kernels } from './kernels/kernels';
export * as distributed from './distributed';
