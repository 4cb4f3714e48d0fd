// Everything the run prints and saves: the machine, the GEMM peak, one table row per case (printed
// as it is measured), the ratios, the issue's targets, and the same figures as JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BackendName, Dtype } from '../lib/types';
import type { Availability } from './backends';
import type { MemoryRow } from './memory';
import type { PeerAvailability } from './peers';
import type { Machine } from './machine';
import type { Peak } from './peak';
import { SIZES, sizeLabel } from './sizes';
import type { Row } from './step';

const short = (d: Dtype) => (d === 'float64' ? 'f64' : 'f32');

/** 3 significant figures, without exponent notation. */
function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toPrecision(3);
}

export function machineLines(m: Machine): string[] {
  return [
    `handgrad ${m.handgrad}${m.gitCommit ? ` (${m.gitCommit})` : ''} · node ${m.node} · mitata ${m.mitata}`,
    `${m.cpuModel} · ${m.cores} cores · ${m.memoryGiB} GiB · ${m.platform}-${m.arch} ${m.kernel}`,
    `OpenBLAS: ${m.openblasThreads === null ? 'unavailable' : `${m.openblasThreads} thread(s)`}${m.openblasLibrary ? ` · ${m.openblasLibrary}` : ''}`,
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

function line(cells: readonly string[]): string {
  return cells.map((c, i) => (i < 3 ? c.padEnd(COLUMNS[i][1]) : c.padStart(COLUMNS[i][1]))).join('  ').trimEnd();
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
export function sanityLines(rows: readonly Row[]): string[] {
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
  /** The chart written next to the JSON, when it could be drawn. */
  chart: string | null;
}

export function writeJson(path: string, results: Results): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(results, null, 2)}\n`);
}
