// `npm run bench` (node dist/bench/run.js [--quick] [--threads=N] [--out=FILE]): the GEMM peak,
// then forwardBackward at each size on every backend and dtype available here, in one process.
import { join, relative } from 'node:path';
import { packageRoot } from '../lib/binding';
import { setNumThreads } from '../lib/threads';
import type { Dims } from '../lib/types';
import { discoverBackends } from './backends';
import { describeMachine } from './machine';
import { parseOptions, USAGE } from './options';
import { peakOf, timeGemms, type GemmTiming } from './peak';
import * as report from './report';
import { SIZES, sizeLabel, stepFlop } from './sizes';
import { measureStep, type Row } from './step';

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
  const [p, q] = previous.filter((r) => r.timing).slice(-2);
  if (!p?.timing || !q?.timing || q.flopPerStep <= p.flopPerStep) return undefined;
  const perFlop = Math.max(0, (q.timing.medianUs - p.timing.medianUs) / (q.flopPerStep - p.flopPerStep));
  const overhead = Math.max(0, p.timing.medianUs - perFlop * p.flopPerStep);
  return (overhead + perFlop * stepFlop(dims)) / 1e3;
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

  const available = discoverBackends();
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
  }
  await gemmPass('after');
  status('');

  const peaks = native ? dtypes.map((d) => peakOf(d, gemms.filter((g) => g.dtype === d))) : [];
  for (const r of rows) {
    const peak = peaks.find((p) => p.dtype === r.dtype);
    if (r.gflops !== undefined) r.pctPeak = peak ? (100 * r.gflops) / peak.gflops : null;
  }
  const ratios = report.ratios(rows);
  const targets = report.targets(rows);
  print([
    ...report.machineLines(machine),
    ...(opts.quick ? ['quick run (--quick / HANDGRAD_BENCH_QUICK=1): small budgets, figures are rough'] : []),
    '',
    ...report.availabilityLines(available),
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
  ]);

  const date = today();
  const out = opts.out ?? join(packageRoot, 'bench', 'results', `${date}${opts.quick ? '.quick' : ''}.json`);
  const durationS = Math.round((performance.now() - started) / 100) / 10;
  report.writeJson(out, {
    date, quick: opts.quick, command: ['node', relative(packageRoot, process.argv[1] ?? 'dist/bench/run.js'), ...process.argv.slice(2)].join(' '),
    durationS, machine, peaks, backends: available, rows, ratios, targets,
  });
  const shown = relative(process.cwd(), out);
  print(['', `wrote ${shown === '' || shown.startsWith('..') ? out : shown} · ${durationS} s`]);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
