// The verifier: verify (a candidate against torch or finite differences, with a diagnosis of what
// went wrong) and gradcheck (torch.autograd.gradcheck's check for this network).
export { verify, DEFAULT_TOLERANCE_EPS, DEFAULT_FD_STEP, EPSILON } from './verify';
export type { Candidate, GradFunction, ReferenceName, TensorCheck, VerifyOptions, VerifyReport } from './verify';
export { gradcheck } from './gradcheck';
export type { GradcheckEntry, GradcheckOptions, GradcheckReport, GradcheckTensor } from './gradcheck';
export type { Diagnosis, DiagnosisKind, TensorName } from './diagnose';
export type { GradsLike, TensorLike } from './coerce';
export { formatGradcheckReport, formatVerifyReport } from './format';
