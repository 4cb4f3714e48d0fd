// Training jobs: each one a CSV parsed off the event loop (readCsvAsync), standardized
// (fitStandardizer), and trained in a worker thread (Trainer.fit) while the server goes on
// answering. At most `maxTraining` train at once; up to `maxQueued` more wait their turn
// ('queued'); beyond that a new job is refused (429). A job's model file is the Trainer's
// (trainer.save() with no path: a Buffer) with the standardizer, class and feature names, so it
// predicts on raw rows in a fresh process; during the fit it is a snapshot of a whole step.
'use strict';
const { randomUUID } = require('node:crypto');
const { fitStandardizer, Model, readCsvAsync, Sequential, Trainer } = require('handgrad');
const { HttpError } = require('./http');

/** What POST /jobs takes in its query string: name → parse(text) (throws HttpError 400). */
const OPTIONS = {
  epochs: (s) => int('epochs', s, 1, 100_000),
  hidden: (s) => int('hidden', s, 1, 4096),
  lr: (s) => {
    const x = Number(s);
    if (s === '' || !(x > 0 && x <= 10)) throw new HttpError(400, `Expected a learning rate in (0, 10] for lr but received ${JSON.stringify(s)}`);
    return x;
  },
  optimizer: (s) => s, // the Trainer checks it (an unknown name is a RangeError naming the choices → 400)
  batchSize: (s) => int('batchSize', s, 1, 65_536),
  seed: (s) => int('seed', s, 0, 2 ** 31 - 1),
  label: (s) => (/^-?\d+$/.test(s) ? Number(s) : s), // a column name or a 0-based index
  classes: (s) => s.split(',').map((c) => c.trim()), // the class order: 'bronze,silver,gold'
};

function int(name, s, lo, hi) {
  const x = Number(s);
  if (!/^\d+$/.test(s) || x < lo || x > hi) throw new HttpError(400, `Expected an integer in [${lo}, ${hi}] for ${name} but received ${JSON.stringify(s)}`);
  return x;
}

/** The query's options, checked: an unknown or repeated key is an error, not ignored. */
function jobOptions(query) {
  const o = { epochs: 20, hidden: 64 };
  const seen = new Set();
  for (const [k, s] of query) {
    if (!Object.hasOwn(OPTIONS, k)) throw new HttpError(400, `Unknown option ${JSON.stringify(k)}; the options are ${Object.keys(OPTIONS).join(', ')}`);
    if (seen.has(k)) throw new HttpError(400, `Option ${JSON.stringify(k)} given twice`);
    seen.add(k);
    o[k] = OPTIONS[k](s);
  }
  return o;
}

class Jobs {
  constructor({ maxTraining = 2, maxQueued = 4, maxBytes, keep = 100 } = {}) {
    Object.assign(this, { maxTraining, maxQueued, maxBytes, keep });
    this.jobs = new Map(); // id → job, in creation order
    this.training = 0;
  }

  /** A job by id. @throws {HttpError} 404 */
  get(id) {
    const job = this.jobs.get(id);
    if (!job) throw new HttpError(404, `No job ${JSON.stringify(id)}`);
    return job;
  }

  /**
   * A new job from a CSV body and the query's options: parsed, standardized and given a Trainer
   * now (so bad data or options are a 400 to this request), trained when a slot is free.
   * @throws {HttpError|TypeError|RangeError|HandgradError}
   */
  async create(body, query) {
    const o = jobOptions(query);
    this.admit();
    const d = await readCsvAsync(body, { maxBytes: this.maxBytes, ...(o.label !== undefined ? { label: o.label } : {}), ...(o.classes ? { classes: o.classes } : {}) });
    this.admit(); // others may have come in while this one parsed
    const z = fitStandardizer(d.X, d.D);
    const net = Sequential.mlp([d.D, o.hidden, d.C], { seed: o.seed ?? 0 });
    const trainer = new Trainer(net, { ...pick(o, ['optimizer', 'lr', 'batchSize', 'seed']) });
    const job = {
      id: randomUUID(), state: 'queued', epoch: 0, epochs: o.epochs, loss: null, accuracy: null, rows: d.y.length,
      batchSize: o.batchSize ?? 32, trainer, X: z.apply(d.X), y: d.y, controller: new AbortController(),
      // What makes the model file usable on raw rows elsewhere.
      file: { preprocess: z, classes: d.classNames ?? Array.from({ length: d.C }, (_, c) => String(c)), features: d.featureNames, label: d.labelName },
    };
    this.jobs.set(job.id, job);
    this.forgetOld();
    this.pump();
    return job;
  }

  /** Refuses a job when the queue is full. @throws {HttpError} 429 */
  admit() {
    const queued = [...this.jobs.values()].filter((j) => j.state === 'queued').length;
    if (this.training >= this.maxTraining && queued >= this.maxQueued) {
      throw new HttpError(429, `${this.training} jobs are training and ${queued} waiting, the most this service holds; try again later`, { 'retry-after': '5' });
    }
  }

  /** Starts queued jobs while a training slot is free. */
  pump() {
    for (const job of this.jobs.values()) {
      if (this.training >= this.maxTraining) return;
      if (job.state === 'queued') this.train(job);
    }
  }

  async train(job) {
    this.training++;
    job.state = 'training';
    const steps = Math.ceil(job.y.length / job.batchSize); // per epoch
    try {
      const result = await job.trainer.fit(job.X, job.y, {
        epochs: job.epochs,
        signal: job.controller.signal,
        progressEvery: Math.max(1, Math.ceil(steps / 4)),
        onProgress: (e) => {
          if (e.type === 'epoch') Object.assign(job, { epoch: e.epoch, loss: e.loss, accuracy: e.accuracy });
          else job.runningLoss = e.loss;
        },
      });
      job.state = result.stopped === 'aborted' ? 'aborted' : 'done';
      job.stopped = result.stopped;
    } catch (e) {
      job.state = 'failed';
      job.error = e.message;
    } finally {
      job.X = job.y = undefined; // the data are no longer needed; the Trainer keeps the weights
      this.training--;
      this.pump();
    }
  }

  /** Aborts a job: a queued one at once, a training one between two steps. @throws {HttpError} 409 */
  abort(job) {
    if (job.state === 'queued') {
      job.state = 'aborted';
      job.X = job.y = undefined;
      return;
    }
    if (job.state !== 'training') throw new HttpError(409, `Job ${job.id} is ${job.state}: nothing to abort`);
    job.controller.abort();
  }

  /** What GET /jobs/:id shows. */
  status(job) {
    const { id, state, epoch, epochs, loss, accuracy, rows, error } = job;
    return { id, state, epoch, epochs, loss, accuracy, rows, steps: job.trainer.steps, ...(error !== undefined ? { error } : {}) };
  }

  /** The model file's bytes: the weights of the last whole step, with preprocessing and names. @throws {HttpError} 409 */
  modelFile(job) {
    this.ready(job);
    return job.trainer.save(undefined, { ...job.file, optimizerState: false });
  }

  /** A Model over a copy of the weights (a finished job's is kept). @throws {HttpError} 409 */
  model(job) {
    this.ready(job);
    if (job.model) return job.model;
    const model = new Model(job.trainer.snapshot(), job.file);
    if (job.state !== 'training') job.model = model; // the weights no longer change
    return model;
  }

  ready(job) {
    if (job.state === 'queued' || job.state === 'failed' || job.trainer.steps === 0) {
      throw new HttpError(409, `Job ${job.id} is ${job.state} with ${job.trainer.steps} steps taken: no model yet`);
    }
  }

  /** Keeps the `keep` newest finished jobs (memory is bounded by jobs, not by time). */
  forgetOld() {
    const finished = [...this.jobs.values()].filter((j) => j.state !== 'queued' && j.state !== 'training');
    for (const j of finished.slice(0, Math.max(0, finished.length - this.keep))) this.jobs.delete(j.id);
  }
}

const pick = (o, keys) => Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));

module.exports = { Jobs, jobOptions };
