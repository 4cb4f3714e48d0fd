// Pictures of a training run, as SVG, drawn by Vega-Lite (rendered headless by Vega: no canvas,
// no browser). Loaded lazily: only the CLI's `train` and the benchmarks need them, so vega and
// vega-lite (27 MB of a 45 MB install) are optionalDependencies: where they are absent
// (npm install --omit=optional, or a failed optional install) the plots are skipped, saying so.
import { HandgradError } from './errors';
import type { EpochRecord } from './train/loop';

type Spec = Record<string, unknown>;

const PLOT_MODULES = ['vega', 'vega-lite'] as const;

/**
 * Why plots cannot be drawn here, in one line (vega or vega-lite not installed, and how to get
 * them), or null when they can.
 */
export function plotsUnavailable(): string | null {
  const missing = PLOT_MODULES.filter((m) => {
    try {
      require.resolve(m);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return null;
  return `plots skipped: ${missing.join(' and ')} (optional dependencies of handgrad, only for plots) ${missing.length > 1 ? 'are' : 'is'} not installed; \`npm install vega vega-lite\` to draw them`;
}

/** @throws {HandgradError} ERR_NOT_BUILT when vega or vega-lite is not installed (plotsUnavailable says which) */
async function render(spec: Spec): Promise<string> {
  const why = plotsUnavailable();
  if (why !== null) throw new HandgradError('ERR_NOT_BUILT', why);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vega = require('vega') as typeof import('vega');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vl = require('vega-lite') as typeof import('vega-lite');
  const compiled = vl.compile({ $schema: 'https://vega.github.io/schema/vega-lite/v5.json', ...spec } as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  return view.toSVG();
}

/** Loss and accuracy per epoch, train and (when present) validation, side by side. */
export function trainingCurvesSvg(history: EpochRecord[], title: string): Promise<string> {
  const rows = history.flatMap((r) => [
    { epoch: r.epoch, metric: 'loss', split: 'train', value: r.loss },
    { epoch: r.epoch, metric: 'accuracy', split: 'train', value: r.accuracy },
    ...(r.valLoss === undefined ? [] : [{ epoch: r.epoch, metric: 'loss', split: 'validation', value: r.valLoss }]),
    ...(r.valAccuracy === undefined ? [] : [{ epoch: r.epoch, metric: 'accuracy', split: 'validation', value: r.valAccuracy }]),
  ]);
  const chart = (metric: string, scale: Spec) => ({
    title: metric, width: 320, height: 220,
    transform: [{ filter: `datum.metric === '${metric}'` }],
    mark: { type: 'line', point: history.length <= 30 },
    encoding: {
      x: { field: 'epoch', type: 'quantitative' },
      y: { field: 'value', type: 'quantitative', title: metric, scale },
      color: { field: 'split', type: 'nominal' },
    },
  });
  return render({ title, data: { values: rows }, hconcat: [chart('loss', { type: 'log' }), chart('accuracy', { zero: false })] });
}

/**
 * The classifier's regions over the plane of 2-D data, with the points on top.
 * `classify` maps a [n,2] grid to class ids.
 */
export function decisionBoundarySvg(X: ArrayLike<number>, y: ArrayLike<number>, classify: (grid: Float64Array) => Int32Array, title: string): Promise<string> {
  const n = y.length;
  // The data's range along coordinate k, padded by a tenth (a whole unit when all points agree).
  const range = (k: number) => {
    let [lo, hi] = [Infinity, -Infinity];
    for (let i = 0; i < n; i++) [lo, hi] = [Math.min(lo, X[2 * i + k]), Math.max(hi, X[2 * i + k])];
    const pad = 0.1 * (hi - lo || 1);
    return [lo - pad, hi + pad];
  };
  const [[x0, x1], [y0, y1]] = [range(0), range(1)];
  const steps = 80;
  const grid = new Float64Array(2 * steps * steps);
  for (let i = 0; i < steps; i++) {
    for (let j = 0; j < steps; j++) {
      grid[2 * (i * steps + j)] = x0 + ((j + 0.5) / steps) * (x1 - x0);
      grid[2 * (i * steps + j) + 1] = y0 + ((i + 0.5) / steps) * (y1 - y0);
    }
  }
  const [hx, hy] = [(x1 - x0) / steps / 2, (y1 - y0) / steps / 2];
  const cells = Array.from(classify(grid), (c, k) => {
    const [x, y] = [grid[2 * k], grid[2 * k + 1]];
    return { xa: x - hx, xb: x + hx, ya: y - hy, yb: y + hy, class: String(c) };
  });
  const points = Array.from({ length: n }, (_, i) => ({ x: X[2 * i], y: X[2 * i + 1], class: String(y[i]) }));
  const color = { field: 'class', type: 'nominal' };
  return render({
    title, width: 420, height: 420,
    layer: [
      {
        data: { values: cells },
        mark: { type: 'rect', opacity: 0.3 },
        encoding: {
          x: { field: 'xa', type: 'quantitative', scale: { domain: [x0, x1], nice: false }, title: 'x₁' },
          x2: { field: 'xb' },
          y: { field: 'ya', type: 'quantitative', scale: { domain: [y0, y1], nice: false }, title: 'x₂' },
          y2: { field: 'yb' },
          color,
        },
      },
      {
        data: { values: points },
        mark: { type: 'circle', size: 30, stroke: 'black', strokeWidth: 0.5, opacity: 1 },
        encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative' }, color },
      },
    ],
  });
}

/** One benchmark figure: the median µs of one step for a backend (and dtype) at a size. */
export interface BenchPoint {
  size: string;
  backend: string;
  dtype?: string;
  medianUs: number;
}

/** µs per step by size (x, in the order given) and backend (colour), on a log-scale y. */
export function benchChartSvg(rows: readonly BenchPoint[], title = 'one training step'): Promise<string> {
  const sizes = [...new Set(rows.map((r) => r.size))];
  const values = rows.map((r) => ({ size: r.size, backend: r.dtype ? `${r.backend} ${r.dtype}` : r.backend, us: r.medianUs }));
  return render({
    title, width: 420, height: 320,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'size', type: 'ordinal', sort: sizes, title: 'size (B,D,H,C)', axis: { labelAngle: 0 } },
      y: { field: 'us', type: 'quantitative', scale: { type: 'log' }, title: 'µs per step (median)' },
      color: { field: 'backend', type: 'nominal', title: 'backend' },
      tooltip: [{ field: 'backend' }, { field: 'size' }, { field: 'us', format: '.3~s' }],
    },
  });
}
