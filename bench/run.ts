// `npm run bench` (node dist/bench/run.js [--quick] [--threads=N] [--out=FILE] [--before=DIR]): the
// GEMM peak, then forwardBackward at each size on every backend and dtype available here, then the
// layer stack (bench/sequential.ts: a 4-layer Sequential per backend; the step on native and wasm
// against the C program in bench/peers/c-openblas, alternately), in one process.
import { writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { benchChartSvg } from '../lib/plot';
import { packageRoot } from '../lib/binding';
import { getNumThreads, setNumThreads } from '../lib/threads';
import type { BackendName, Dims, Dtype } from '../lib/types';
import { discoverBackends } from './backends';
import { startBefore, type Before } from './before';
import { buildCPeer, type CPeer } from './cpeer';
import { memoryLines, memoryOfBackend, memoryOfPeer, type MemoryRow } from './memory';
import { discoverPeers, makePeerStep, type PeerName } from './peers';
import { describeMachine } from './machine';
import { parseOptions, USAGE, type BenchOptions } from './options';
import { peakOf, timeGemms, type GemmTiming } from './peak';
import { measureProducts, type ProductsBound } from './products';
import * as report from './report';
import { DEEP, makeNetCase, measureEngine, measureNet, netFlop, netLabel, type EngineRow, type NetCase, type NetRow } from './sequential';
import { LARGE, SIZES, sizeLabel, stepFlop } from './sizes';
import { measureCase, measureStep, type Row } from './step';

function print(lines: string | readonly string[]): void {
  process.stdout.write(`${([] as string[]).concat(lines).join('\n')}\n`);
}

// A transient "measuring …" line on a terminal; nothing in a log (the table comes at the end).
function status(what: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${what ? `measuring ${what} …` : ''}`);
}

/**
 * One call at this size from the two previous sizes of the same case, as time = overhead + FLOP/rate
 * (a line through both points): lets a hopeless case be skipped untried. Undefined when unknown.
 */
function estimateMs(previous: readonly Row[], dims: Dims): number | undefined {
  return estimateMsAt(previous, stepFlop(dims));
}

/** The same line, evaluated at `flop` FLOP per step (the deep net's, from the two-layer rows). */
function estimateMsAt(previous: readonly Row[], flop: number): number | undefined {
  const [p, q] = previous.filter((r) => r.timing).slice(-2);
  if (!p?.timing || !q?.timing || q.flopPerStep <= p.flopPerStep) return undefined;
  const perFlop = Math.max(0, (q.timing.medianUs - p.timing.medianUs) / (q.flopPerStep - p.flopPerStep));
  const overhead = Math.max(0, p.timing.medianUs - perFlop * p.flopPerStep);
  return (overhead + perFlop * flop) / 1e3;
}

/** tfjs-cpu at a size whose one step is estimated over this is skipped (it would only cost time). */
const TFJS_CPU_MAX_STEP_MS = 5_000;
/** A peer's loss must match handgrad's f32 loss on the same data within this (relative). */
const LOSS_RTOL = 1e-4;

function emptyMemory(backend: MemoryRow['backend'], dtype: MemoryRow['dtype']): MemoryRow {
  return { size: sizeLabel(SIZES[0]), backend, dtype, steps: 0, rssBefore: 0, rssAfter: 0, rssPeak: 0, growth: 0 };
}

/** One peer at one size: skipped when hopeless, else timed like handgrad's rows, with a loss check. */
async function measurePeer(peer: PeerName, dims: Dims, rows: readonly Row[], reference: Row | undefined, opts: BenchOptions): Promise<Row> {
  const row: Row = { size: sizeLabel(dims), dims, backend: peer, dtype: 'float32', flopPerStep: stepFlop(dims) };
  const expectedMs = estimateMs(rows.filter((r) => r.backend === peer), dims);
  if (peer === 'tfjs-cpu' && expectedMs !== undefined && expectedMs > TFJS_CPU_MAX_STEP_MS) {
    return { ...row, skipped: `one step estimated at ~${(expectedMs / 1e3).toFixed(1)} s (> ${TFJS_CPU_MAX_STEP_MS / 1e3} s, extrapolated from the smaller sizes)` };
  }
  let s: Awaited<ReturnType<typeof makePeerStep>> | undefined;
  try {
    s = await makePeerStep(peer, dims);
    const t0 = performance.now();
    const loss = s.step();
    const firstMs = performance.now() - t0;
    if (peer === 'tfjs-cpu' && firstMs > TFJS_CPU_MAX_STEP_MS) return { ...row, loss, skipped: `one step took ${(firstMs / 1e3).toFixed(1)} s (> ${TFJS_CPU_MAX_STEP_MS / 1e3} s)` };
    const measured = await measureCase(row, s.step, opts);
    const ref = reference?.loss;
    if (ref !== undefined && !(Math.abs(loss - ref) <= LOSS_RTOL * Math.abs(ref))) {
      measured.warning = `loss ${loss} differs from ${reference!.backend} f32's ${ref} by more than ${LOSS_RTOL} relative`;
    }
    return measured;
  } catch (e) {
    return { ...row, skipped: `failed: ${e instanceof Error ? e.message : String(e)}` };
  } finally {
    s?.dispose();
  }
}

function today(): string {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

async function main(): Promise<void> {
  const started = performance.now();
  const opts = parseOptions(process.argv.slice(2), process.env);
  if (opts === 'help') {
    print(USAGE);
    return;
  }
  if (opts.threads !== undefined) setNumThreads(opts.threads);

  // The C program first: a compile error is a note, never a failed run.
  status('building bench/peers/c-openblas');
  const cPeer: CPeer = buildCPeer();
  const available = discoverBackends();
  const peers = await discoverPeers();
  const machine = describeMachine();
  const runnable = available.filter((a) => a.available);
  const native = runnable.some((a) => a.backend === 'native');
  const dtypes = ['float64', 'float32'] as const;
  const gemms: GemmTiming[] = [];
  const gemmPass = async (pass: GemmTiming['pass']) => {
    if (!native) return;
    for (const dtype of dtypes) {
      status(`${dtype === 'float64' ? 'dgemm' : 'sgemm'} peak (${pass})`);
      gemms.push(...(await timeGemms(dtype, opts.peakSizes, opts.peakReps, pass)));
    }
  };

  await gemmPass('before');
  const rows: Row[] = [];
  for (const dims of SIZES) {
    for (const a of runnable) {
      status(`${sizeLabel(dims)} ${a.backend} ${a.dtype}`);
      const expectedMs = estimateMs(rows.filter((r) => r.backend === a.backend && r.dtype === a.dtype), dims);
      try {
        rows.push(await measureStep(dims, a.backend, a.dtype, opts, expectedMs));
      } catch (e) {
        // A backend that ran the probe but fails at this size: noted, and the run goes on.
        const skipped = `failed: ${e instanceof Error ? e.message : String(e)}`;
        rows.push({ size: sizeLabel(dims), dims, backend: a.backend, dtype: a.dtype, flopPerStep: stepFlop(dims), skipped });
      }
    }
    // The peers, on the same data, next to handgrad's rows at this size.
    const reference = rows.find((r) => r.size === sizeLabel(dims) && r.dtype === 'float32' && r.backend === 'native' && r.loss !== undefined)
      ?? rows.find((r) => r.size === sizeLabel(dims) && r.dtype === 'float32' && r.loss !== undefined);
    for (const peer of peers.filter((p) => p.available)) {
      status(`${sizeLabel(dims)} ${peer.backend}`);
      rows.push(await measurePeer(peer.backend, dims, rows, reference, opts));
    }
  }

  // The layer stack. The deep net on every backend, native first in each dtype (the reference the
  // others are checked against), the slow ones last; then the step against the C program.
  const sequentialStarted = performance.now();
  const netRows: NetRow[] = [];
  const netCases = new Map<Dtype, NetCase>();
  const order: BackendName[] = ['native', 'torch', 'wasm', 'ts'];
  const byOrder = (b: BackendName) => (order.indexOf(b) < 0 ? order.length : order.indexOf(b));
  for (const a of [...runnable].sort((p, q) => byOrder(p.backend) - byOrder(q.backend))) {
    status(`${netLabel(DEEP)} ${a.backend} ${a.dtype}`);
    try {
      if (!netCases.has(a.dtype)) netCases.set(a.dtype, makeNetCase(DEEP, a.dtype));
      const expectedMs = estimateMsAt(rows.filter((r) => r.backend === a.backend && r.dtype === a.dtype), netFlop(DEEP));
      netRows.push(await measureNet(netCases.get(a.dtype)!, a.backend, opts, expectedMs));
    } catch (e) {
      const skipped = `failed: ${e instanceof Error ? e.message : String(e)}`;
      netRows.push({ net: netLabel(DEEP), B: DEEP.B, widths: [...DEEP.widths], backend: a.backend, dtype: a.dtype, flopPerStep: netFlop(DEEP), skipped });
    }
  }
  // The native step against its products alone, per dtype whose native row passed (bench/products.ts).
  const products: Array<ProductsBound & { dtype: Dtype }> = [];
  const productsSkipped: string[] = [];
  for (const [dtype, c] of netCases) {
    if (!netRows.some((r) => r.backend === 'native' && r.dtype === dtype && r.timing !== undefined)) continue;
    status(`${netLabel(DEEP)} native ${dtype}: its products alone`);
    try {
      products.push({ dtype, ...(await measureProducts(c, opts)) });
    } catch (e) {
      productsSkipped.push(`${dtype}: failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  netCases.clear();
  const sequentialS = Math.round((performance.now() - sequentialStarted) / 100) / 10;

  // One engine: the public step on native and wasm (and the prepared step at the toy size), the
  // --before tree's step, and the C program, alternately at each size and dtype.
  const engineStarted = performance.now();
  const engineRows: EngineRow[] = [];
  let before: Before | undefined;
  let beforeNote = '';
  if (native && opts.before !== undefined) {
    try {
      before = startBefore(opts.before, getNumThreads());
    } catch (e) {
      beforeNote = `--before skipped: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  if (native) {
    for (const dims of opts.quick ? SIZES : [...SIZES, LARGE]) {
      for (const dtype of dtypes) {
        status(`${sizeLabel(dims)} ${dtype} vs the C program`);
        // The large case on native only: a wasm step there takes tens of seconds.
        const backends = runnable.filter((a) => a.dtype === dtype && (a.backend === 'native' || (a.backend === 'wasm' && dims !== LARGE))).map((a) => a.backend);
        try {
          engineRows.push(await measureEngine(dims, dtype, backends, cPeer, before, opts));
        } catch (e) {
          const skipped = `failed: ${e instanceof Error ? e.message : String(e)}`;
          engineRows.push({
            size: sizeLabel(dims), dims, dtype, flopPerStep: stepFlop(dims), rounds: 0, threads: getNumThreads(), c: { windows: [] },
            steps: backends.map((b) => ({ name: b, call: '', windows: [], skipped })),
          });
        }
      }
    }
  }
  before?.close();
  const engineS = Math.round((performance.now() - engineStarted) / 100) / 10;
  await gemmPass('after');

  // Memory: RSS over a long loop at the toy size, one backend after another.
  const memory: MemoryRow[] = [];
  for (const a of runnable) {
    status(`memory ${a.backend} ${a.dtype}`);
    try {
      memory.push(memoryOfBackend(a.backend, a.dtype));
    } catch (e) {
      memory.push({ ...emptyMemory(a.backend, a.dtype), skipped: `failed: ${e instanceof Error ? e.message : String(e)}` });
    }
  }
  for (const p of peers.filter((x) => x.available)) {
    status(`memory ${p.backend}`);
    try {
      memory.push(await memoryOfPeer(p.backend));
    } catch (e) {
      memory.push({ ...emptyMemory(p.backend, 'float32'), skipped: `failed: ${e instanceof Error ? e.message : String(e)}` });
    }
  }
  status('');

  const peaks = native ? dtypes.map((d) => peakOf(d, gemms.filter((g) => g.dtype === d))) : [];
  for (const r of [...rows, ...netRows]) {
    const peak = peaks.find((p) => p.dtype === r.dtype);
    if (r.gflops !== undefined) r.pctPeak = peak ? (100 * r.gflops) / peak.gflops : null;
  }
  for (const b of products) {
    const peak = peaks.find((p) => p.dtype === b.dtype);
    b.pctPeak = peak ? (100 * b.productsGflops) / peak.gflops : null;
  }
  const netRatios = report.netRatios(netRows);
  const ratios = report.ratios(rows);
  const targets = report.targets(rows);
  print([
    ...report.machineLines(machine),
    ...(opts.quick ? ['quick run (--quick / HANDGRAD_BENCH_QUICK=1): small budgets, figures are rough'] : []),
    '',
    ...report.availabilityLines([...available, ...peers]),
    '',
    ...report.peakLines(peaks, machine.openblasThreads),
    '',
    ...report.tableHeader(),
    ...rows.map(report.tableRow),
    ...report.sanityLines(rows),
    '',
    ...report.ratioLines(ratios),
    '',
    'targets (from the issue; reported, not asserted):',
    ...report.targetLines(targets),
    '',
    `${DEEP.widths.length - 1}-layer net: Sequential.mlp([${DEEP.widths.join(', ')}]), ReLU between, B = ${DEEP.B}, with dX: ` +
      `${(netFlop(DEEP) / 1e9).toFixed(3)} GFLOP per step (6·B·Σ in·out); Δ vs native: max relative error of the loss and gradients`,
    ...report.netHeader(),
    ...netRows.map(report.netRow),
    ...report.sanityLines(netRows),
    '',
    ...report.netRatioLines(netRatios),
    '',
    ...report.productsLines(products, productsSkipped),
    '',
    ...(native ? report.engineLines(engineRows, opts.quick) : ['one engine vs the C program: skipped (the native addon is unavailable)']),
    ...(beforeNote ? [beforeNote] : []),
    '',
    ...memoryLines(memory),
    '',
    ...report.readmeTableLines(rows, netRows, engineRows, products, peaks, [...SIZES, LARGE], ['node', 'dist/bench/run.js', ...process.argv.slice(2)].join(' '), machine.openblasThreads),
  ]);

  const date = today();
  const out = opts.out ?? join(packageRoot, 'bench', 'results', `${date}${opts.quick ? '.quick' : ''}.json`);
  // The chart, next to the JSON (same name, .svg).
  const chartPath = out.replace(/\.json$/, '') + '.svg';
  let chart: string | null = null;
  let chartNote = '';
  try {
    const points = [
      ...rows.filter((r) => r.timing).map((r) => ({ size: r.size, backend: r.backend, dtype: r.backend.startsWith('tfjs') ? undefined : r.dtype === 'float64' ? 'f64' : 'f32', medianUs: r.timing!.medianUs })),
      // The deep net as one more point on the x axis, its rows that passed the check only.
      ...netRows.filter((r) => r.timing && r.check?.ok !== false).map((r) => ({ size: r.net, backend: r.backend, dtype: r.dtype === 'float64' ? 'f64' : 'f32', medianUs: r.timing!.medianUs })),
      // The C program, from the one-engine section (the lowest median of its windows).
      ...engineRows.filter((r) => r.c.medianUs !== undefined && r.dims !== LARGE).map((r) => ({ size: r.size, backend: 'c-openblas', dtype: r.dtype === 'float64' ? 'f64' : 'f32', medianUs: r.c.medianUs! })),
    ];
    writeFileSync(chartPath, await benchChartSvg(points, `one training step, µs (median)${opts.quick ? ', quick run' : ''}`));
    chart = chartPath;
  } catch (e) {
    chartNote = `chart not written: ${e instanceof Error ? e.message : String(e)}`;
  }
  const durationS = Math.round((performance.now() - started) / 100) / 10;
  report.writeJson(out, {
    date, quick: opts.quick, command: ['node', relative(packageRoot, process.argv[1] ?? 'dist/bench/run.js'), ...process.argv.slice(2)].join(' '),
    durationS, machine, peaks, backends: available, rows, ratios, targets, peers, memory,
    sequential: { durationS: sequentialS, net: { B: DEEP.B, widths: [...DEEP.widths], flopPerStep: netFlop(DEEP) }, rows: netRows, ratios: netRatios, products },
    engine: {
      durationS: engineS, cPeer: { path: cPeer.path ? relative(packageRoot, cPeer.path) : null, ...(cPeer.skipped ? { skipped: cPeer.skipped } : {}) },
      before: before ? { dir: before.dir, commit: before.commit } : null, rows: engineRows, targets: report.engineTargets(engineRows),
    },
    chart: chart === null ? null : relative(dirname(out), chart),
  });
  const shownPath = (p: string) => {
    const s = relative(process.cwd(), p);
    return s === '' || s.startsWith('..') ? p : s;
  };
  print(['', `wrote ${shownPath(out)}${chart ? ` and ${shownPath(chart)}` : ''} · ${durationS} s (the layer stack: ${sequentialS} s; vs the C program: ${engineS} s)`, ...(chartNote ? [chartNote] : [])]);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
