// Plain-text rendering of verify and gradcheck reports (what `handgrad verify` prints).
import { shapeText } from '../io/safetensors';
import { formatNum } from './diagnose';
import type { GradcheckReport, SequentialGradcheckReport } from './gradcheck';
import type { SequentialVerifyReport, VerifyReport } from './verify';

type Report = VerifyReport | SequentialVerifyReport | GradcheckReport | SequentialGradcheckReport;

const fmt = (x: number) => (Number.isNaN(x) ? '—' : x.toExponential(2));

/** Columns padded to their widest cell; the second column (each tensor's layer) only when `layers`. */
function table(rows: string[][], layers: boolean): string {
  const kept = layers ? rows : rows.map((r) => [r[0], ...r.slice(2)]);
  const widths = kept[0].map((_, i) => Math.max(...kept.map((r) => r[i].length)));
  return kept.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

/** What was checked: the two-layer sizes and activation, or the Sequential's layers. */
function network(r: Report): string {
  if ('network' in r) return `${r.network}, B=${r.dims.B}, ${r.dtype}, reduction ${r.reduction}`;
  const { B, D, H, C } = r.dims;
  return `B=${B} D=${D} H=${H} C=${C}, ${r.dtype}, ${r.activation}, reduction ${r.reduction}`;
}

/** The report as a table, one row per tensor (with its layer, for a Sequential), then the diagnosis of each failure and the summary. */
export function formatVerifyReport(r: VerifyReport | SequentialVerifyReport): string {
  const layers = 'network' in r;
  const head = [
    `verify: ${network(r)}`,
    `candidate: ${r.candidate}    reference: ${r.reference} (${r.referenceNote})`,
    `tolerance: max|Δ|/max|ref| ≤ ${r.toleranceEps} eps = ${r.tolerance.toExponential(2)} (eps of ${r.dtype} = ${r.eps.toExponential(3)})`,
    '',
  ];
  const rows = r.tensors.map((t) => {
    const status = { pass: 'ok', fail: 'FAIL', missing: 'MISSING', skipped: 'skipped' }[t.status];
    const eps = Number.isNaN(t.epsUnits) ? '—' : t.epsUnits === Infinity ? 'inf' : t.epsUnits < 1e4 ? t.epsUnits.toFixed(2) : t.epsUnits.toExponential(2);
    const worst = t.worst ? shapeText(t.worst.index) : '—';
    const bits = t.bitIdentical === null ? '—' : `${(100 * t.bitIdentical).toFixed(t.bitIdentical === 1 || t.bitIdentical === 0 ? 0 : 1)}%`;
    return [t.name, t.layer ?? '', shapeText(t.shape), fmt(t.maxAbsDiff), fmt(t.maxAbsRef), fmt(t.relError), eps, bits, worst, status];
  });
  const notes: string[] = [];
  for (const t of r.tensors) {
    if (t.diagnosis.length === 0) continue;
    notes.push(t.layer ? `${t.name} (${t.layer}):` : `${t.name}:`);
    for (const d of t.diagnosis) notes.push(`  - [${d.kind}] ${d.message}`);
    if (t.worst && t.status === 'fail') notes.push(`    worst entry ${t.name}${shapeText(t.worst.index)}: candidate ${formatNum(t.worst.candidate)}, reference ${formatNum(t.worst.reference)}`);
  }
  const header = ['tensor', 'layer', 'shape', 'max|Δ|', 'max|ref|', 'rel err', 'eps', 'same bits', 'worst at', 'result'];
  return [...head, table([header, ...rows], layers), '', ...(notes.length ? [...notes, ''] : []), `${r.ok ? 'OK' : 'MISMATCH'}: ${r.summary}`].join('\n');
}

/** A gradcheck report as a table (with each input's layer, for a Sequential), then its failure messages. */
export function formatGradcheckReport(r: GradcheckReport | SequentialGradcheckReport): string {
  const layers = 'network' in r;
  const head = [
    ...(layers ? [`gradcheck: ${network(r)}`] : []),
    `gradcheck (${r.mode} mode): step ${r.eps}, atol ${r.atol}, rtol ${r.rtol}; analytical: ${r.analytical}; numerical: central differences in float64`,
  ].join('\n');
  const rows = r.tensors.map((t) => {
    const counts = [t.checked, t.failures, t.kinks].map(String);
    return [t.name, t.layer ?? '', shapeText(t.shape), ...counts, fmt(t.maxRelError), t.pass ? 'ok' : 'FAIL'];
  });
  rows.unshift(['input', 'layer', 'shape', 'checked', 'failures', 'kinks', 'max rel err', 'result']);
  const nondet = r.nondeterminism.checked ? (r.nondeterminism.ok ? 'backward twice: bit-identical' : `backward twice: ${r.nondeterminism.message}`) : 'backward twice: not checked';
  return [head, table(rows, layers), nondet, ...r.warnings.map((w) => `warning: ${w}`), ...r.failures, r.ok ? 'OK' : 'FAILED'].join('\n');
}
