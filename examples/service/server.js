// An HTTP training service on node:http, no framework:
//   POST   /jobs?epochs=&hidden=&lr=&optimizer=&classes=   CSV body (text/csv) → 202 { id }
//   GET    /jobs/:id           → { state, epoch, epochs, loss, accuracy, error? }
//   DELETE /jobs/:id           → aborts (the job ends 'aborted' with its last whole-step weights)
//   GET    /jobs/:id/model     → the model file (safetensors bytes; a snapshot while training)
//   POST   /jobs/:id/predict   CSV (text/csv) or JSON rows (application/json) → { predictions }
//   GET    /stats              → { training, queued, eventLoopDelayMs: { p50, p99, max } } (reset by ?reset=1)
// Every error is JSON { error } with its status; nothing a client sends crashes the process.
// Usage: node server.js [--port 8080] [--host 127.0.0.1] [--max-bytes N] [--max-training 2] [--max-queued 4]
// On start it prints one JSON line, { "url": "http://host:port" } (useful with --port 0).
'use strict';
const http = require('node:http');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { parseArgs } = require('node:util');
const { HttpError, mediaType, readBody, sendJson, statusOf } = require('./http');
const { Jobs } = require('./jobs');
const { csvRows, jsonRows } = require('./rows');

/** The routes: [method, pattern, handler(req, res, params, url)]. */
function routes(jobs, maxBytes, loop) {
  const csvBody = (req) => {
    if (mediaType(req) !== 'text/csv') throw new HttpError(415, `Expected Content-Type text/csv but received ${JSON.stringify(req.headers['content-type'] ?? 'none')}`);
    return readBody(req, maxBytes);
  };
  const ms = (ns) => ns / 1e6;
  return [
    ['GET', /^\/stats$/, (req, res, _, url) => {
      const states = [...jobs.jobs.values()].map((j) => j.state);
      const count = (state) => states.filter((s) => s === state).length;
      sendJson(res, 200, {
        training: count('training'), queued: count('queued'),
        // How long callbacks waited for the event loop since the last reset: what every request pays on top.
        eventLoopDelayMs: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max), samples: loop.count },
      });
      if (url.searchParams.get('reset') === '1') loop.reset();
    }],
    ['POST', /^\/jobs$/, async (req, res, _, url) => {
      const body = await csvBody(req);
      const job = await jobs.create(body, url.searchParams);
      sendJson(res, 202, { id: job.id }, { location: `/jobs/${job.id}` });
    }],
    ['GET', /^\/jobs\/([^/]+)$/, (req, res, [id]) => sendJson(res, 200, jobs.status(jobs.get(id)))],
    ['DELETE', /^\/jobs\/([^/]+)$/, (req, res, [id]) => {
      const job = jobs.get(id);
      jobs.abort(job);
      sendJson(res, 202, jobs.status(job));
    }],
    ['GET', /^\/jobs\/([^/]+)\/model$/, (req, res, [id]) => {
      const bytes = jobs.modelFile(jobs.get(id));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length, 'content-disposition': `attachment; filename="model-${id}.safetensors"` });
      res.end(bytes);
    }],
    ['POST', /^\/jobs\/([^/]+)\/predict$/, async (req, res, [id]) => {
      const job = jobs.get(id);
      const model = jobs.model(job); // 409 before reading a body it could not use
      const type = mediaType(req);
      if (type !== 'text/csv' && type !== 'application/json') throw new HttpError(415, `Expected Content-Type text/csv or application/json but received ${JSON.stringify(req.headers['content-type'] ?? 'none')}`);
      const body = await readBody(req, maxBytes);
      const X = type === 'application/json' ? jsonRows(body, model.inFeatures) : await csvRows(body, model, maxBytes);
      sendJson(res, 200, { predictions: model.predictClasses(X), steps: job.trainer.steps });
    }],
  ];
}

function createServer({ maxBytes = 64 * 2 ** 20, maxTraining = 2, maxQueued = 4 } = {}) {
  const jobs = new Jobs({ maxBytes, maxTraining, maxQueued });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const table = routes(jobs, maxBytes, loop);
  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://localhost');
      const matches = table.map(([method, re, fn]) => [method, url.pathname.match(re), fn]).filter(([, m]) => m);
      if (matches.length === 0) throw new HttpError(404, `No route ${url.pathname}`);
      const hit = matches.find(([method]) => method === req.method);
      if (!hit) throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}; use ${matches.map(([m]) => m).join(' or ')}`, { allow: matches.map(([m]) => m).join(', ') });
      await hit[2](req, res, hit[1].slice(1).map(decodeURIComponent), url);
    } catch (err) {
      const status = statusOf(err);
      if (status === 500) console.error(err);
      if (res.headersSent) return res.destroy();
      sendJson(res, status, { error: err.message ?? String(err) }, err.headers);
    }
  });
  server.requestTimeout = 60_000; // a body refused early is drained by Node, for at most this long
  server.jobs = jobs;
  return server;
}

if (require.main === module) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8080' }, host: { type: 'string', default: '127.0.0.1' },
      'max-bytes': { type: 'string', default: String(64 * 2 ** 20) }, 'max-training': { type: 'string', default: '2' }, 'max-queued': { type: 'string', default: '4' },
    },
  });
  const server = createServer({ maxBytes: Number(values['max-bytes']), maxTraining: Number(values['max-training']), maxQueued: Number(values['max-queued']) });
  server.listen(Number(values.port), values.host, () => {
    const { address, port } = server.address();
    console.log(JSON.stringify({ url: `http://${address}:${port}` }));
  });
  // Training runs in worker threads: stop them with the process.
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
}

module.exports = { createServer };
