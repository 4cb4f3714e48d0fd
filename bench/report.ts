// Everything the run prints and saves: the machine, the GEMM peak, one table row per case (printed
// as it is measured), the ratios, the issue's targets, and the same figures as JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BackendName, Dims, Dtype } from '../lib/types';
import type { Availability } from './backends';
import type { MemoryRow } from './memory';
import type { PeerAvailability } from './peers';
import type { Machine } from './machine';
import type { Peak } from './peak';
import type { ProductsBound } from './products';
import { BEFORE_REPORTED, ENGINE_TARGETS, type EngineRow, type NetRow } from './sequential';
import { SIZES, sizeLabel } from './sizes';
import type { Row } from './step';

const short = (d: Dtype) => (d === 'float64' ? 'f64' : 'f32');

/** 3 significant figures, without exponent notation. */
function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toPrecision(3);
}

/** OpenBLAS 0.3.21's kernel families that use AVX-512 (driver/others/dynamic.c's names, lower-cased). */
const AVX512_KERNELS = new Set(['skylakex', 'cooperlake', 'sapphirerapids']);

export function machineLines(m: Machine): string[] {
  return [
    `handgrad ${m.handgrad}${m.gitCommit ? ` (${m.gitCommit})` : ''} · node ${m.node} · mitata ${m.mitata}`,
    `${m.cpuModel} · ${m.cores} cores · ${m.memoryGiB} GiB · ${m.platform}-${m.arch} ${m.kernel}`,
    `OpenBLAS: ${m.openblasThreads === null ? 'unavailable' : `${m.openblasThreads} thread(s), ${m.openblasKernels} kernels`}${m.openblasLibrary ? ` · ${m.openblasLibrary}` : ''}`,
    ...(m.blasLanes === null ? [] : [m.blasLanes === '' ? 'float64 products on BLAS lanes (README, "getBlasLanes"); float32 on OpenBLAS\'s threads' : `BLAS lanes off: ${m.blasLanes}`]),
    ...(m.kernelSet === null ? [] : [`handgrad's loops over a layer's values (scans, activations, the sparse first layer): ${m.kernelSet} (README, "getSparseInput")`]),
    ...(m.avx512 && !AVX512_KERNELS.has(m.openblasKernels?.toLowerCase() ?? '')
      ? [`note: this CPU runs AVX-512 but OpenBLAS picked its ${m.openblasKernels} kernels; OPENBLAS_CORETYPE=SkylakeX selects the AVX-512 ones (README, "OpenBLAS's kernels"), for every figure here and the C program alike`]
      : []),
    ...(m.loadAverage > 0.5
      ? [`warning: load average ${m.loadAverage} at start: other processes are running, figures will be low and noisy`]
      : []),
  ];
}

export function peakLines(peaks: readonly Peak[], threads: number | null): string[] {
  if (peaks.length === 0) return ['GEMM peak: skipped (the native addon is unavailable), so "% peak" is n/a'];
  return peaks.map((p) => {
    const pass = (which: string) =>
      p.sizes.filter((s) => s.pass === which).map((s) => `${s.n}³ ${fmt(s.medianGflops)}/${fmt(s.bestGflops)}`).join(', ');
    return `${p.routine} peak ${fmt(p.gflops)} GFLOP/s, ${threads ?? '?'} threads (median/best: before ${pass('before')}; after ${pass('after')})`;
  });
}

export function availabilityLines(av: readonly (Availability | PeerAvailability)[]): string[] {
  const byBackend = new Map<string, (Availability | PeerAvailability)[]>();
  for (const a of av) byBackend.set(a.backend, [...(byBackend.get(a.backend) ?? []), a]);
  const lines: string[] = [];
  for (const [backend, list] of byBackend) {
    const ok = list.filter((a) => a.available).map((a) => short(a.dtype));
    const missing = list.filter((a) => !a.available);
    if (ok.length > 0) lines.push(`backend ${backend}: ${ok.join(', ')}`);
    // One note per distinct reason (usually the same for both dtypes).
    for (const note of new Set(missing.map((a) => a.note ?? 'unavailable'))) {
      const dts = missing.filter((a) => (a.note ?? 'unavailable') === note).map((a) => short(a.dtype));
      lines.push(`backend ${backend} ${dts.join(', ')}: skipped: ${note}`);
    }
  }
  return lines;
}

const COLUMNS: readonly [string, number][] = [
  ['size (B,D,H,C)', 18], ['backend', 9], ['dtype', 5], ['µs/step', 10], ['p25–p75 µs', 17],
  ['GFLOP/s', 8], ['% peak', 7], ['samples', 12],
];

/** The first `left` cells padded on the right (names), the others on the left (figures). */
function lineOf(columns: readonly [string, number][], cells: readonly string[], left = 3): string {
  return cells.map((c, i) => (i < left ? c.padEnd(columns[i][1]) : c.padStart(columns[i][1]))).join('  ').trimEnd();
}

function line(cells: readonly string[]): string {
  return lineOf(COLUMNS, cells);
}

export function tableHeader(): string[] {
  const head = line(COLUMNS.map(([name]) => name));
  return [head, '-'.repeat(head.length)];
}

export function tableRow(r: Row): string {
  const first = [r.size, r.backend, short(r.dtype)];
  if (r.skipped !== undefined || r.timing === undefined) return `${line(first)}  skipped: ${r.skipped ?? 'not measured'}`;
  const t = r.timing;
  const warning = r.warning ? `\n${' '.repeat(COLUMNS[0][1] + 2)}warning: ${r.warning}` : '';
  const calls = t.calls > t.samples ? `${t.samples}×${Math.round(t.calls / t.samples)}` : `${t.samples}`;
  return line([
    ...first, fmt(t.medianUs), `${fmt(t.p25Us)}–${fmt(t.p75Us)}`, fmt(r.gflops ?? NaN),
    r.pctPeak == null ? 'n/a' : `${r.pctPeak.toFixed(1)}%`, calls,
  ]) + warning;
}

export interface Ratio {
  size: string;
  what: string;
  /** How many times faster the first named is than the second (median µs ratio). */
  speedup: number;
}

function find(rows: readonly Row[], size: string, backend: Row['backend'], dtype: Dtype): Row | undefined {
  return rows.find((r) => r.size === size && r.backend === backend && r.dtype === dtype && r.timing !== undefined);
}

/** Each handgrad backend against its like-for-like peer, with the issue's minimum speedup. */
const PEER_PAIRS: readonly [BackendName, Row['backend'], number][] = [
  ['wasm', 'tfjs-wasm', 2],
  ['ts', 'tfjs-cpu', 1],
];

/** native vs every other backend in each dtype, and f32 vs f64 for every backend, at every size. */
export function ratios(rows: readonly Row[]): Ratio[] {
  const out: Ratio[] = [];
  const backends = [...new Set(rows.map((r) => r.backend))];
  for (const d of SIZES) {
    const size = sizeLabel(d);
    const add = (what: string, fast: Row | undefined, slow: Row | undefined) => {
      if (fast?.timing && slow?.timing) out.push({ size, what, speedup: slow.timing.medianUs / fast.timing.medianUs });
    };
    for (const b of backends.filter((b) => b !== 'native')) {
      for (const dt of ['float64', 'float32'] as const) add(`native ${short(dt)} vs ${b} ${short(dt)}`, find(rows, size, 'native', dt), find(rows, size, b, dt));
    }
    for (const b of backends) add(`${b} f32 vs f64`, find(rows, size, b, 'float32'), find(rows, size, b, 'float64'));
    // handgrad against the peers (issue: wasm f32 ≥ 2× tfjs-wasm, ts ≥ tfjs-cpu).
    for (const [ours, peer] of PEER_PAIRS) add(`${ours} f32 vs ${peer}`, find(rows, size, ours, 'float32'), find(rows, size, peer, 'float32'));
  }
  return out;
}

export function ratioLines(rs: readonly Ratio[]): string[] {
  const whats = [...new Set(rs.map((r) => r.what))];
  const sizes = SIZES.map(sizeLabel);
  const w = Math.max(...whats.map((s) => s.length), 10);
  const lines = [`${'speedup (×)'.padEnd(w)}  ${sizes.map((s) => s.padStart(16)).join('  ')}`];
  for (const what of whats) {
    const cells = sizes.map((s) => {
      const r = rs.find((x) => x.what === what && x.size === s);
      return (r ? `${fmt(r.speedup)}×` : '—').padStart(16);
    });
    lines.push(`${what.padEnd(w)}  ${cells.join('  ')}`);
  }
  return lines;
}

/** A "% peak" over 100 means the peak was measured while something else ran. */
export function sanityLines(rows: readonly { pctPeak?: number | null }[]): string[] {
  const over = rows.filter((r) => (r.pctPeak ?? 0) > 100);
  return over.length === 0
    ? []
    : [`warning: ${over.length} row(s) above 100% of peak: the GEMM peak was measured while the machine was busy; run again when it is idle`];
}

export interface Target {
  what: string;
  goal: string;
  measured: string;
  met: boolean | null;
}

/** The issue's targets, reported (not asserted) against this run. */
export function targets(rows: readonly Row[]): Target[] {
  const big = sizeLabel(SIZES[SIZES.length - 1]);
  const toy = sizeLabel(SIZES[0]);
  const out: Target[] = [];
  for (const [dt, routine] of [['float64', 'dgemm'], ['float32', 'sgemm']] as const) {
    const r = find(rows, big, 'native', dt);
    const pct = r?.pctPeak ?? null;
    out.push({ what: `native ${short(dt)} at ${big}`, goal: `≥ 85% of ${routine} peak`, measured: pct === null ? 'n/a' : `${pct.toFixed(1)}%`, met: pct === null ? null : pct >= 85 });
  }
  for (const dt of ['float64', 'float32'] as const) {
    const r = find(rows, toy, 'native', dt);
    const us = r?.timing?.medianUs ?? null;
    out.push({ what: `native ${short(dt)} at ${toy}`, goal: '< 2 µs per call', measured: us === null ? 'n/a' : `${fmt(us)} µs`, met: us === null ? null : us < 2 });
  }
  for (const [ours, peer, min] of PEER_PAIRS) {
    for (const d of SIZES) {
      const size = sizeLabel(d);
      const a = find(rows, size, ours, 'float32');
      const b = find(rows, size, peer, 'float32');
      const x = a?.timing && b?.timing ? b.timing.medianUs / a.timing.medianUs : null;
      out.push({ what: `${ours} f32 vs ${peer} at ${size}`, goal: `≥ ${min}× faster`, measured: x === null ? 'n/a' : `${fmt(x)}×`, met: x === null ? null : x >= min });
    }
  }
  return out;
}

export function targetLines(ts: readonly Target[]): string[] {
  const w = Math.max(...ts.map((t) => t.what.length));
  const g = Math.max(...ts.map((t) => t.goal.length));
  return ts.map((t) => `${t.what.padEnd(w)}  ${t.goal.padEnd(g)}  ${t.measured.padStart(9)}  ${t.met === null ? 'not measured' : t.met ? 'met' : 'not met'}`);
}

// --- The layer stack (bench/sequential.ts) ------------------------------------------------------

const NET_COLUMNS: readonly [string, number][] = [
  ['net (B: widths)', 27], ['backend', 9], ['dtype', 5], ['µs/step', 10], ['p25–p75 µs', 17],
  ['GFLOP/s', 8], ['% peak', 7], ['samples', 8], ['Δ vs native', 11],
];

const exp1 = (x: number) => (x === 0 ? '0' : x.toExponential(1));

export function netHeader(): string[] {
  const head = lineOf(NET_COLUMNS, NET_COLUMNS.map(([name]) => name));
  return [head, '-'.repeat(head.length)];
}

/** Like tableRow; the last column is the check against native (max of the loss's and the gradients' relative error). */
export function netRow(r: NetRow): string {
  const first = [r.net, r.backend, short(r.dtype)];
  if (r.skipped !== undefined || r.timing === undefined) return `${lineOf(NET_COLUMNS, first)}  skipped: ${r.skipped ?? 'not measured'}`;
  if (r.check && !r.check.ok) {
    return `${lineOf(NET_COLUMNS, first)}  rejected: loss/gradients differ from ${r.check.against}'s by ` +
      `${exp1(r.check.lossRelErr)}/${exp1(r.check.gradRelErr)} relative (its time, ${fmt(r.timing.medianUs)} µs, is not reported)`;
  }
  const t = r.timing;
  const calls = t.calls > t.samples ? `${t.samples}×${Math.round(t.calls / t.samples)}` : `${t.samples}`;
  const check = r.check ? exp1(Math.max(r.check.lossRelErr, r.check.gradRelErr)) : 'reference';
  return lineOf(NET_COLUMNS, [
    ...first, fmt(t.medianUs), `${fmt(t.p25Us)}–${fmt(t.p75Us)}`, fmt(r.gflops ?? NaN),
    r.pctPeak == null ? 'n/a' : `${r.pctPeak.toFixed(1)}%`, calls, check,
  ]);
}

/** A deep-net row that was measured and passed its check (native, the reference, always does). */
function validNet(rows: readonly NetRow[], backend: BackendName, dtype: Dtype): NetRow | undefined {
  return rows.find((r) => r.backend === backend && r.dtype === dtype && r.timing !== undefined && r.check?.ok !== false);
}

/** The deep net: native vs each other backend, wasm vs ts (per dtype), f32 vs f64 per backend. */
export function netRatios(rows: readonly NetRow[]): Ratio[] {
  const out: Ratio[] = [];
  const size = rows[0]?.net ?? '';
  const add = (what: string, fast: NetRow | undefined, slow: NetRow | undefined) => {
    if (fast?.timing && slow?.timing) out.push({ size, what, speedup: slow.timing.medianUs / fast.timing.medianUs });
  };
  const backends = [...new Set(rows.map((r) => r.backend))];
  const pairs: [BackendName, BackendName][] = [
    ...backends.filter((b) => b !== 'native').map((b): [BackendName, BackendName] => ['native', b]),
    ['wasm', 'ts'],
  ];
  for (const [a, b] of pairs) {
    for (const dt of ['float64', 'float32'] as const) add(`${a} ${short(dt)} vs ${b} ${short(dt)}`, validNet(rows, a, dt), validNet(rows, b, dt));
  }
  for (const b of backends) add(`${b} f32 vs f64`, validNet(rows, b, 'float32'), validNet(rows, b, 'float64'));
  return out;
}

export function netRatioLines(rs: readonly Ratio[]): string[] {
  if (rs.length === 0) return [];
  const w = Math.max(...rs.map((r) => r.what.length), 'speedup (×)'.length);
  return [`${'speedup (×)'.padEnd(w)}  ${rs[0].size}`, ...rs.map((r) => `${r.what.padEnd(w)}  ${`${fmt(r.speedup)}×`.padStart(8)}`)];
}

/** The deep net's native step against its products alone (bench/products.ts), a line per dtype. */
export function productsLines(bounds: ReadonlyArray<ProductsBound & { dtype: Dtype }>, skipped: readonly string[]): string[] {
  if (bounds.length === 0 && skipped.length === 0) return [];
  const rounds = bounds[0]?.rounds;
  return [
    `the native step against its products alone (the step's 3·L GEMMs at its shapes through the addon's gemm, the step's own BLAS path; ${rounds ?? '?'} alternated round(s), lowest medians):`,
    ...bounds.map((b) => `  ${short(b.dtype)}: step ${fmt(b.stepUs)} µs, products ${fmt(b.productsUs)} µs (${fmt(b.productsGflops)} GFLOP/s, ` +
      `${b.pctPeak == null ? 'n/a' : `${b.pctPeak.toFixed(1)}%`} of the peak); step ÷ products ${fmt(b.stepOverProducts)}× (median of the rounds)`),
    ...skipped.map((s) => `  ${s}`),
  ];
}

const ENGINE_COLUMNS: readonly [string, number][] = [
  ['size (B,D,H,C)', 18], ['dtype', 5], ['step', 22], ['µs median', 10], ['µs min', 9], ['C µs median', 11], ['C µs min', 9],
  ['÷ C median', 10], ['÷ C min', 8],
];

/** The C program's figures of a row, or why there are none. */
function cCells(r: EngineRow): [string, string] {
  return r.c.medianUs !== undefined && r.c.minUs !== undefined ? [fmt(r.c.medianUs), fmt(r.c.minUs)] : ['—', '—'];
}

/** The one-engine table: each step and the C program per size and dtype, then the targets. */
export function engineLines(rows: readonly EngineRow[], quick: boolean): string[] {
  if (rows.length === 0) return [];
  const r0 = rows[0];
  const lines = [
    `one engine: step time vs the C program (bench/peers/c-openblas: the same step in C on OpenBLAS, preallocated buffers, ${r0.threads} OpenBLAS thread(s) like handgrad's; wasm on ${r0.wasmThreads ?? '?'} thread(s)),`,
    quick
      ? 'measured one after the other (the full run alternates them in three rounds); µs: median and minimum of the window'
      : `measured alternately in ${r0.rounds} rounds (order reversed every other round); µs: the lowest of the rounds' medians, and the lowest sample`,
  ];
  const head = lineOf(ENGINE_COLUMNS, ENGINE_COLUMNS.map(([name]) => name), 3);
  lines.push(head, '-'.repeat(head.length));
  for (const r of rows) {
    const first = [r.size, short(r.dtype)];
    const c = cCells(r);
    for (const s of r.steps) {
      if (s.medianUs === undefined || s.minUs === undefined) {
        lines.push(`${lineOf(ENGINE_COLUMNS, [...first, s.name], 3)}  skipped: ${s.skipped ?? 'not measured'}`);
        continue;
      }
      lines.push(lineOf(ENGINE_COLUMNS, [
        ...first, s.name, fmt(s.medianUs), fmt(s.minUs), ...c,
        s.vsC ? `${fmt(s.vsC.median)}×` : '—', s.vsC ? `${fmt(s.vsC.min)}×` : '—',
      ], 3));
      if (s.warning) lines.push(`${' '.repeat(ENGINE_COLUMNS[0][1] + 2)}warning: ${s.warning}`);
    }
    if (r.c.skipped !== undefined && !rows.slice(0, rows.indexOf(r)).some((x) => x.c.skipped === r.c.skipped)) {
      lines.push(`${lineOf(ENGINE_COLUMNS, [...first, 'c-openblas'], 3)}  skipped: ${r.c.skipped}`);
    }
  }
  const calls = new Map<string, string>();
  for (const s of rows.flatMap((r) => r.steps)) if (s.call && !calls.has(s.name)) calls.set(s.name, s.call);
  const w = Math.max(...[...calls.keys()].map((k) => k.length));
  lines.push('', ...[...calls].map(([name, call]) => `${name.padEnd(w)}  ${call}`));
  const before = BEFORE_REPORTED;
  lines.push(
    `before, as the issue reports it (not this run): the fused two-layer step at ${before.commit} on the 2-core VM, ${before.toyUs} µs at ${sizeLabel(SIZES[0])} f64; ` +
      `÷ C ${Object.entries(before.vsC).map(([size, x]) => `${x}× at ${size}`).join(', ')}`,
  );
  lines.push('', 'targets (from the issue; reported, not asserted):', ...targetLines(engineTargets(rows)));
  return lines;
}

/** The one-engine targets: at the toy size, f64, native, the lowest median of the rounds. */
export function engineTargets(rows: readonly EngineRow[]): Target[] {
  const toy = rows.find((r) => r.size === sizeLabel(SIZES[0]) && r.dtype === 'float64');
  return ENGINE_TARGETS.map(({ step, label, us }) => {
    const s = toy?.steps.find((x) => x.name === step);
    const m = s?.medianUs;
    return {
      what: `${label} at ${sizeLabel(SIZES[0])}`,
      goal: `< ${us} µs per call`,
      measured: m === undefined ? 'n/a' : `${fmt(m)} µs`,
      met: m === undefined ? null : m < us,
    };
  });
}

export interface Results {
  date: string;
  quick: boolean;
  command: string;
  durationS: number;
  machine: Machine;
  peaks: Peak[];
  backends: Availability[];
  rows: Row[];
  ratios: Ratio[];
  targets: Target[];
  /** tfjs peers found (or not) in this run. */
  peers: PeerAvailability[];
  /** RSS over a long loop at the toy size, per backend. */
  memory: MemoryRow[];
  /** The layer stack: the deep net on every backend (rows, ratios). */
  sequential: {
    durationS: number; net: { B: number; widths: number[]; flopPerStep: number }; rows: NetRow[]; ratios: Ratio[];
    /** The native step against its products alone, per dtype (bench/products.ts). */
    products: Array<ProductsBound & { dtype: Dtype }>;
  };
  /**
   * One engine against the C program: per size and dtype, the steps and the C program measured
   * alternately (rows), the targets, and the --before tree when one was given.
   */
  engine: { durationS: number; cPeer: { path: string | null; skipped?: string }; before: { dir: string; commit: string | null } | null; rows: EngineRow[]; targets: Target[] };
  /** The chart written next to the JSON, when it could be drawn. */
  chart: string | null;
}

export function writeJson(path: string, results: Results): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(results, null, 2)}\n`);
}

// --- The README's performance table ---------------------------------------------------------------

/**
 * One markdown table from this run for the README's performance section: per size and dtype,
 * native's µs per step, GFLOP/s and % of the same run's peak, the C program's µs and native ÷ C
 * (all from the one-engine section: the lowest of the rounds' medians), the prepared step at the
 * toy size, and the 4-layer net (its own table's median); then the peaks. Cells not measured read '—'.
 */
export function readmeTableLines(
  rows: readonly Row[], netRows: readonly NetRow[], engineRows: readonly EngineRow[],
  products: ReadonlyArray<ProductsBound & { dtype: Dtype }>, peaks: readonly Peak[], sizes: readonly Dims[],
  command: string, threads: number | null,
): string[] {
  const pct = (p: number | null | undefined) => (p == null ? '—' : `${p.toFixed(1)}%`);
  const lines = [
    `README table (\`${command}\`; ${threads ?? '?'} OpenBLAS thread(s); ÷ C: native's step over the C program's, measured alternately):`,
    '',
    '| size (B,D,H,C) | dtype | native µs/step | GFLOP/s | % peak | C program µs | native ÷ C |',
    '|---|---|---|---|---|---|---|',
  ];
  const engineStep = (size: string, dtype: Dtype, name: string) => {
    const e = engineRows.find((r) => r.size === size && r.dtype === dtype);
    return { e, s: e?.steps.find((x) => x.name === name) };
  };
  for (const d of sizes) {
    const size = sizeLabel(d);
    for (const dtype of ['float64', 'float32'] as const) {
      const { e, s } = engineStep(size, dtype, 'native');
      // The one-engine section's native median (measured alternately with the C program, so µs and
      // ÷ C come from the same windows); the step table's where that section did not run.
      const r = find(rows, size, 'native', dtype);
      const us = s?.medianUs ?? r?.timing?.medianUs;
      const gflops = us === undefined ? undefined : (e?.flopPerStep ?? r?.flopPerStep ?? NaN) / (us * 1e3);
      const peak = peaks.find((p) => p.dtype === dtype)?.gflops;
      const c = e?.c.medianUs;
      if (us === undefined && c === undefined) continue;
      const ofPeak = gflops !== undefined && peak !== undefined ? (100 * gflops) / peak : null;
      lines.push(`| ${size} | ${short(dtype)} | ${us !== undefined ? fmt(us) : '—'} | ${gflops !== undefined ? fmt(gflops) : '—'} | ${pct(ofPeak)} | ${c !== undefined ? fmt(c) : '—'} | ${s?.vsC ? `${fmt(s.vsC.median)}×` : '—'} |`);
      const prepared = engineStep(size, dtype, 'native prepared').s;
      if (prepared?.medianUs !== undefined) {
        lines.push(`| ${size} | ${short(dtype)} prepared | ${fmt(prepared.medianUs)} | — | — | ${c !== undefined ? fmt(c) : '—'} | ${prepared.vsC ? `${fmt(prepared.vsC.median)}×` : '—'} |`);
      }
    }
  }
  for (const dtype of ['float64', 'float32'] as const) {
    const n = validNet(netRows, 'native', dtype);
    if (n?.timing) lines.push(`| ${n.net} | ${short(dtype)} | ${fmt(n.timing.medianUs)} | ${fmt(n.gflops ?? NaN)} | ${pct(n.pctPeak)} | — | — |`);
  }
  const peakText = peaks.map((p) => `${p.routine} ${fmt(p.gflops)} GFLOP/s`).join(', ');
  lines.push('', `Peaks in the same run: ${peakText || 'not measured'}.`);
  if (products.length > 0) {
    const net = validNet(netRows, 'native', products[0].dtype)?.net ?? 'the deep net';
    lines.push(`The ${net} step's products alone (its GEMMs through the same BLAS path, alternated with the step): ` +
      products.map((b) => `${short(b.dtype)} ${fmt(b.productsUs)} µs, ${b.pctPeak == null ? 'n/a' : `${b.pctPeak.toFixed(1)}%`} of the peak, the step ${fmt(b.stepOverProducts)}× them`).join('; ') + '.');
  }
  return lines;
}
