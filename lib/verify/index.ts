// The verifier: verify (a candidate against torch or finite differences, with a diagnosis of what
// went wrong) and gradcheck (torch.autograd.gradcheck's check), for the two-layer params or a
// Sequential of any depth (the params are checked as the Sequential [Linear, act, Linear]).
export { verify, DEFAULT_TOLERANCE_EPS, DEFAULT_FD_STEP, EPSILON } from './verify';
export type {
  Candidate, GradFunction, GradOptions, Network, NetworkOptions, ReferenceName, SequentialCandidate, SequentialGradFunction, SequentialVerifyOptions,
  SequentialVerifyReport, TensorCheck, VerifyOptions, VerifyReport, VerifyReportBase,
} from './verify';
export { gradcheck } from './gradcheck';
export type {
  GradcheckEntry, GradcheckOptions, GradcheckReport, GradcheckReportBase, GradcheckTensor, SequentialGradcheckOptions, SequentialGradcheckReport,
} from './gradcheck';
export type { Diagnosis, DiagnosisKind, TensorName } from './diagnose';
export type { GradsLike, LayerGradsLike, TensorLike } from './coerce';
export type { SequentialDescription } from './subject';
export { formatGradcheckReport, formatVerifyReport } from './format';
