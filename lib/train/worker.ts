// The thread behind Trainer.fit: runs fitLoop on the shared buffers and reports back by message.
// Loaded from dist/ (compiled JS), as worker_threads needs a JavaScript file.
import { parentPort, workerData } from 'node:worker_threads';
import { fitLoop, type Data, type FitPlan } from './loop';
import type { TrainState } from './state';

const job = workerData as { state: TrainState; data: Data; validation?: Data; plan: FitPlan };
try {
  const result = fitLoop(job.state, job.data, job.validation, job.plan, {
    step: (e) => parentPort!.postMessage({ type: 'step', event: e }),
    epoch: (r) => parentPort!.postMessage({ type: 'epoch', record: r }),
  });
  parentPort!.postMessage({ type: 'done', result });
} catch (err) {
  const e = err as Error & { code?: string };
  parentPort!.postMessage({ type: 'error', name: e.name, message: e.message, code: e.code });
}
