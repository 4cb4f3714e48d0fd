// The example service (examples/service/) end to end, as a client sees it: started in a child
// process on 127.0.0.1 (port 0), requiring handgrad by its package name, every request bounded by
// a timeout and the child killed after 60 s whatever happens. The truths it is held to come from
// outside the service: the labels of a generated data set, the column statistics computed here,
// a forward pass written here in plain loops over the downloaded file's tensors, and the status
// codes HTTP gives each mistake. The request latency while two jobs train is measured and printed.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../lib';
import { readSafetensorsFile } from './helpers';

const ROOT = resolve(__dirname, '..');
const SERVER = join(ROOT, 'examples', 'service', 'server.js');
const MAX_BYTES = 8_000_000;
const REQUEST_MS = 10_000;

let child: ChildProcess;
let base = '';
let tmp = '';
let stderr = '';

/** A request with a timeout; the reply's status, headers and body (JSON parsed when it says so). */
async function request(method: string, path: string, body?: string | Uint8Array, type?: string): Promise<{ status: number; headers: Headers; json: any; bytes: Buffer }> {
  const res = await fetch(base + path, { method, body, headers: type ? { 'content-type': type } : {}, signal: AbortSignal.timeout(REQUEST_MS) });
  const bytes = Buffer.from(await res.arrayBuffer());
  const isJson = (res.headers.get('content-type') ?? '').startsWith('application/json');
  return { status: res.status, headers: res.headers, json: isJson ? JSON.parse(bytes.toString('utf8')) : undefined, bytes };
}

/** Polls GET /jobs/:id until `done` says so (bounded). */
async function until(id: string, done: (s: any) => boolean, ms = 40_000): Promise<any> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await request('GET', `/jobs/${id}`);
    expect(r.status).toBe(200);
    if (done(r.json)) return r.json;
    if (Date.now() > end) throw new Error(`job ${id} still ${JSON.stringify(r.json)} after ${ms} ms`);
    await new Promise((f) => setTimeout(f, 50));
  }
}

/** A seeded uniform stream (mulberry32) and normals from it (Box–Muller). */
function normals(seed: number): () => number {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

// Three medals as clusters in 4 features of very different scales (standardizing matters), the
// class names first seen in another order than the one the job fixes with ?classes=.
const CLASSES = ['bronze', 'silver', 'gold'];
const CENTRES = { silver: [0, 2, 0, -1], gold: [2, 0, 0, 1], bronze: [0, 0, 2, 0] } as Record<string, number[]>;
const SCALE = [1, 1000, 0.01, 1];
const OFFSET = [0, 500, -3, 10];
function medals(n: number, seed: number): { rows: number[][]; labels: string[] } {
  const g = normals(seed);
  const order = ['silver', 'gold', 'bronze'];
  const rows: number[][] = [];
  const labels: string[] = [];
  for (let i = 0; i < n; i++) {
    const label = order[i % 3];
    rows.push(CENTRES[label].map((c, j) => (c + 0.6 * g()) * SCALE[j] + OFFSET[j]));
    labels.push(label);
  }
  return { rows, labels };
}
const csv = (header: string[], rows: (number | string)[][]) => [header.join(','), ...rows.map((r) => r.join(','))].join('\n') + '\n';

beforeAll(async () => {
  // `require('handgrad')` as in a consumer's project: a folder named handgrad on NODE_PATH.
  tmp = mkdtempSync(join(tmpdir(), 'handgrad-service-'));
  symlinkSync(ROOT, join(tmp, 'handgrad'), 'dir');
  child = spawn(process.execPath, [SERVER, '--port', '0', '--host', '127.0.0.1', '--max-bytes', String(MAX_BYTES), '--max-training', '2', '--max-queued', '1'], {
    env: { ...process.env, NODE_PATH: tmp }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  setTimeout(() => child.kill('SIGKILL'), 60_000).unref();
  child.stderr!.on('data', (b) => (stderr += b));
  base = await new Promise<string>((ok, fail) => {
    let out = '';
    child.stdout!.on('data', (b) => {
      out += b;
      if (out.includes('\n')) ok(JSON.parse(out.split('\n')[0]).url);
    });
    child.on('exit', (code) => fail(new Error(`the service exited (${code}) before listening: ${stderr}`)));
    setTimeout(() => fail(new Error(`the service did not listen within 10 s: ${stderr}`)), 10_000).unref();
  });
}, 15_000);

afterAll(() => {
  child?.kill('SIGKILL');
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('examples/service: train, watch, download, predict', () => {
  const train = medals(600, 1);
  const held = medals(150, 2);
  const header = ['a', 'b', 'c', 'd', 'medal'];
  let id = '';

  it('trains a job on a CSV with string class names, reporting progress until done', async () => {
    const body = csv(header, train.rows.map((r, i) => [...r, train.labels[i]]));
    const r = await request('POST', '/jobs?epochs=30&hidden=16&optimizer=adam&lr=0.01&classes=bronze,silver,gold', body, 'text/csv');
    expect(r.status, JSON.stringify(r.json)).toBe(202);
    id = r.json.id;
    const seen = new Set<string>();
    const s = await until(id, (j) => (seen.add(j.state), j.state !== 'queued' && j.state !== 'training'));
    expect(s).toMatchObject({ state: 'done', epoch: 30, epochs: 30, rows: 600 });
    expect(seen.has('done')).toBe(true);
    expect(s.loss).toBeLessThan(0.3);
    expect(s.accuracy).toBeGreaterThan(0.9);
  });

  it('serves a model file that loads in this process and predicts on raw rows as a plain-loop forward does', async () => {
    const r = await request('GET', `/jobs/${id}/model`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/octet-stream');
    const model = loadModel(r.bytes);
    expect(model.classes).toEqual(CLASSES);
    expect(model.features).toEqual(['a', 'b', 'c', 'd']);
    expect(model.label).toBe('medal');
    // The standardizer: the training columns' mean and population std, computed here.
    const D = 4;
    const n = train.rows.length;
    for (let j = 0; j < D; j++) {
      const mean = train.rows.reduce((s, row) => s + row[j], 0) / n;
      const std = Math.sqrt(train.rows.reduce((s, row) => s + (row[j] - mean) ** 2, 0) / n);
      expect(Math.abs(model.preprocess!.mean[j] - mean)).toBeLessThanOrEqual(1e-12 * Math.abs(mean) + 1e-12 * std);
      expect(Math.abs(model.preprocess!.std[j] - std)).toBeLessThanOrEqual(1e-12 * std);
    }
    // The classes by a forward pass written here over the file's tensors (W [in,out] row-major).
    const path = join(tmp, 'model.safetensors');
    writeFileSync(path, r.bytes);
    const t = readSafetensorsFile(path).tensors;
    const H = t.b1.length;
    const byHand = held.rows.map((row) => {
      const x = row.map((v, j) => (v - t['preprocess.mean'][j]) / t['preprocess.std'][j]);
      const h = Array.from({ length: H }, (_, k) => Math.max(0, x.reduce((s, v, j) => s + v * t.W1[j * H + k], t.b1[k])));
      const z = CLASSES.map((_, c) => h.reduce((s, v, k) => s + v * t.W2[k * 3 + c], t.b2[c]));
      return CLASSES[z.indexOf(Math.max(...z))];
    });
    const mine = model.predictClasses(held.rows.flat());
    expect(mine).toEqual(byHand);
    const accuracy = mine.filter((c, i) => c === held.labels[i]).length / held.labels.length;
    expect(accuracy).toBeGreaterThan(0.9);
  });

  it('predicts through the service what the downloaded model predicts: JSON rows, CSV by header names, CSV without a header', async () => {
    const model = loadModel((await request('GET', `/jobs/${id}/model`)).bytes);
    const want = model.predictClasses(held.rows.flat());
    const json = await request('POST', `/jobs/${id}/predict`, JSON.stringify({ rows: held.rows }), 'application/json');
    expect(json.status, JSON.stringify(json.json)).toBe(200);
    expect(json.json.predictions).toEqual(want);
    // Columns in another order, no label column: read by the saved feature names.
    const shuffled = csv(['d', 'b', 'a', 'c'], held.rows.map((r) => [r[3], r[1], r[0], r[2]]));
    const byName = await request('POST', `/jobs/${id}/predict`, shuffled, 'text/csv');
    expect(byName.status, JSON.stringify(byName.json)).toBe(200);
    expect(byName.json.predictions).toEqual(want);
    // The label column present (ignored), and no header at all (the D features in order).
    const labelled = await request('POST', `/jobs/${id}/predict`, csv(header, held.rows.map((r, i) => [...r, held.labels[i]])), 'text/csv');
    expect(labelled.json.predictions).toEqual(want);
    const bare = await request('POST', `/jobs/${id}/predict`, held.rows.map((r) => r.join(',')).join('\n'), 'text/csv');
    expect(bare.status, JSON.stringify(bare.json)).toBe(200);
    expect(bare.json.predictions).toEqual(want);
  });

  it('answers GET /jobs/:id quickly while two jobs train; queues a third, refuses a fourth; aborts with a whole-step model', async () => {
    const digits = readFileSync(join(ROOT, 'data', 'digits.csv.gz')); // gzip bytes: readCsvAsync inflates them
    const post = () => request('POST', '/jobs?epochs=100000&hidden=256&optimizer=sgd&lr=0.05', digits, 'text/csv');
    const a = await post();
    const b = await post();
    expect([a.status, b.status]).toEqual([202, 202]);
    await until(a.json.id, (j) => j.state === 'training' && j.epoch >= 1);
    await until(b.json.id, (j) => j.state === 'training' && j.epoch >= 1);

    // The latency a client sees, sequential requests on one keep-alive connection; and the
    // server's own event-loop delay over the same time (what any request waits on top).
    expect((await request('GET', '/stats?reset=1')).json.training).toBe(2);
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      const r = await request('GET', `/jobs/${i % 2 ? a.json.id : b.json.id}`);
      times.push(performance.now() - t0);
      expect(r.json.state).toBe('training');
    }
    times.sort((x, y) => x - y);
    const p50 = times[99];
    const p99 = times[197];
    const loop = (await request('GET', '/stats?reset=1')).json.eventLoopDelayMs;
    console.log(`GET /jobs/:id while two jobs train: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${times[199].toFixed(2)} ms (200 requests); the service's event-loop delay p99 ${loop.p99.toFixed(2)} ms, max ${loop.max.toFixed(2)} ms`);
    expect(p99).toBeLessThan(250);
    expect(loop.max).toBeLessThan(250);

    // A snapshot mid-run is a model file like any other.
    const mid = await request('GET', `/jobs/${a.json.id}/model`);
    expect(mid.status).toBe(200);
    expect(loadModel(mid.bytes).classes).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);

    // A third job's CSV (a few MB) is parsed while two train: requests are answered meanwhile.
    const big = medals(60_000, 3);
    const bigCsv = Buffer.from(csv(header, big.rows.map((r, i) => [...r.map((x) => x.toFixed(6)), big.labels[i]])));
    expect(bigCsv.length).toBeLessThan(MAX_BYTES);
    let posted = false;
    const pending = request('POST', '/jobs?epochs=1', bigCsv, 'text/csv').finally(() => (posted = true));
    const during: number[] = [];
    const t1 = performance.now();
    while (!posted) {
      const t0 = performance.now();
      await request('GET', `/jobs/${a.json.id}`);
      during.push(performance.now() - t0);
    }
    const postMs = performance.now() - t1;
    const parseLoop = (await request('GET', '/stats?reset=1')).json.eventLoopDelayMs;
    during.sort((x, y) => x - y);
    console.log(`GET /jobs/:id while a ${(bigCsv.length / 1e6).toFixed(1)} MB CSV is posted and parsed (${postMs.toFixed(0)} ms) beside two training jobs: median ${during[during.length >> 1].toFixed(2)} ms, max ${during[during.length - 1].toFixed(2)} ms (${during.length} requests); the service's event-loop delay p99 ${parseLoop.p99.toFixed(2)} ms, max ${parseLoop.max.toFixed(2)} ms`);
    expect(during[during.length - 1]).toBeLessThan(250);
    expect(parseLoop.max).toBeLessThan(250);

    // Two training, one waiting (max-queued 1), the next refused.
    const c = await pending;
    expect(c.status).toBe(202);
    expect((await request('GET', `/jobs/${c.json.id}`)).json.state).toBe('queued');
    for (const path of [`/jobs/${c.json.id}/model`, `/jobs/${c.json.id}/predict`]) {
      const r = path.endsWith('model') ? await request('GET', path) : await request('POST', path, '[[0]]', 'application/json');
      expect(r.status, path).toBe(409);
      expect(typeof r.json.error).toBe('string');
    }
    const d = await post();
    expect(d.status).toBe(429);
    expect(d.json.error).toMatch(/training/);
    expect((await request('DELETE', `/jobs/${c.json.id}`)).status).toBe(202);
    expect((await request('GET', `/jobs/${c.json.id}`)).json.state).toBe('aborted');

    // Abort: the job ends 'aborted', its model that of the last whole step, and it stays put.
    for (const job of [a, b]) expect((await request('DELETE', `/jobs/${job.json.id}`)).status).toBe(202);
    const s = await until(a.json.id, (j) => j.state !== 'training');
    expect(s.state).toBe('aborted');
    expect(s.epoch).toBeLessThan(100000);
    const m1 = await request('GET', `/jobs/${a.json.id}/model`);
    const m2 = await request('GET', `/jobs/${a.json.id}/model`);
    expect(m1.status).toBe(200);
    expect(m1.bytes.equals(m2.bytes)).toBe(true);
    const digitsModel = loadModel(m1.bytes);
    const rows = [Array.from({ length: 64 }, (_, k) => k % 16)];
    const served = await request('POST', `/jobs/${a.json.id}/predict`, JSON.stringify({ rows }), 'application/json');
    expect(served.json.predictions).toEqual(digitsModel.predictClasses(rows.flat()));
    expect((await request('DELETE', `/jobs/${a.json.id}`)).status).toBe(409); // nothing left to abort
    await until(b.json.id, (j) => j.state === 'aborted');
  });

  it('answers every mistake with JSON { error } and its status, and keeps serving', async () => {
    const good = csv(header, train.rows.slice(0, 30).map((r, i) => [...r, train.labels[i]]));
    const cases: [string, string, string | Uint8Array | undefined, string | undefined, number, RegExp][] = [
      ['GET', '/jobs/no-such-job', undefined, undefined, 404, /no-such-job/],
      ['DELETE', '/jobs/no-such-job', undefined, undefined, 404, /no-such-job/],
      ['GET', '/jobs/no-such-job/model', undefined, undefined, 404, /no-such-job/],
      ['POST', '/jobs/no-such-job/predict', '[[1,2,3,4]]', 'application/json', 404, /no-such-job/],
      ['GET', '/nowhere', undefined, undefined, 404, /nowhere/],
      ['GET', '/jobs/%E0%A4%A', undefined, undefined, 400, /URI/],
      ['PUT', '/jobs', good, 'text/csv', 405, /POST/],
      ['POST', '/jobs?epochs=ten', good, 'text/csv', 400, /epochs/],
      ['POST', '/jobs?epochs=0', good, 'text/csv', 400, /epochs/],
      ['POST', '/jobs?epoch=5', good, 'text/csv', 400, /Unknown option "epoch"/],
      ['POST', '/jobs?optimizer=adamm', good, 'text/csv', 400, /optimizer/],
      ['POST', '/jobs?classes=gold,silver', good, 'text/csv', 400, /bronze/],
      ['POST', '/jobs', good, 'text/plain', 415, /text\/csv/],
      ['POST', '/jobs', 'a,b,medal\n1,2,gold\n3,x,silver\n', 'text/csv', 400, /line 3/],
      ['POST', '/jobs', 'data/digits.csv.gz', 'text/csv', 400, /column/], // a one-line body is data, never a path
      ['POST', '/jobs', 'x'.repeat(MAX_BYTES + 1), 'text/csv', 413, /8000000/],
      ['POST', `/jobs/${id}/predict`, '{"rows": [[1, 2]]}', 'application/json', 400, /4 numbers/],
      ['POST', `/jobs/${id}/predict`, '{"rows": [[1, 2, 3, "x"]]}', 'application/json', 400, /finite number/],
      ['POST', `/jobs/${id}/predict`, '{"rows":', 'application/json', 400, /not JSON/],
      ['POST', `/jobs/${id}/predict`, 'e,f\n1,2\n', 'text/csv', 400, /header naming the model's features \(a, b, c, d/],
      ['POST', `/jobs/${id}/predict`, '1,2\n3,4\n', 'text/csv', 400, /exactly 4 numeric columns, but received 2/],
      ['DELETE', `/jobs/${id}`, undefined, undefined, 409, /done/],
    ];
    for (const [method, path, body, type, status, message] of cases) {
      const r = await request(method, path, body, type);
      expect(r.status, `${method} ${path}: ${JSON.stringify(r.json)}`).toBe(status);
      expect(r.json.error, `${method} ${path}`).toMatch(message);
    }
    // A run that diverges ends 'failed' with the Trainer's error, and has no model to give.
    const diverging = await request('POST', '/jobs?epochs=5&hidden=64&optimizer=sgd&lr=10', readFileSync(join(ROOT, 'data', 'digits.csv.gz')), 'text/csv');
    expect(diverging.status).toBe(202);
    const failed = await until(diverging.json.id, (j) => j.state !== 'queued' && j.state !== 'training');
    expect(failed.state).toBe('failed');
    expect(failed.error).toMatch(/finite/);
    expect((await request('GET', `/jobs/${diverging.json.id}/model`)).status).toBe(409);
    // A gzip body that inflates past the limit is too large too (a gzip bomb is refused).
    const { gzipSync } = await import('node:zlib');
    const bomb = gzipSync(Buffer.from('1,2\n'.repeat(2_100_000)));
    expect(bomb.length).toBeLessThan(MAX_BYTES);
    const r = await request('POST', '/jobs', bomb, 'text/csv');
    expect(r.status).toBe(413);
    expect((await request('GET', `/jobs/${id}`)).json.state).toBe('done');
    expect(child.exitCode).toBe(null);
    expect(stderr).not.toMatch(/Error/); // the service logs only what it answers with a 500
  });
});
