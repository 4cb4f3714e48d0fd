// `handgrad predict`: a model file (handgrad train's, saveModel's, Trainer.save's) on a CSV of raw
// rows. The columns are found by the feature names the model file keeps (their order in the CSV
// is free; other numeric columns are left aside), the saved standardizer is applied, and one class
// name per row is written under the header `prediction` (with --probs, then one probability column
// per class). When the CSV has the label column, its labels are matched to the saved class names
// and the accuracy is printed.
import { readCsv } from '../data';
import type { CsvDataset } from '../data/csv';
import { fileFail } from '../data/files';
import { HandgradError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { loadModel, type Model } from '../model-file';
import * as v from '../validate';
import { type Command, flags, STRING } from './command';

// readCsv's number syntax (a label cell is read as text): a feature read through the label slot must meet it too.
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
/** The most distinct values a column read through the label slot may hold (readCsv's own cap is 2^31 − 1). */
const ANY_COUNT = 2 ** 31 - 1;

/** A CSV cell: quoted when it holds a delimiter, a quote or a line break (RFC 4180). */
const cell = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

/** The label text of row i (a class name, or the class id as written). */
const labelText = (d: CsvDataset, i: number) => (d.classNames ? d.classNames[d.y[i]] : String(d.y[i]));

/** Whether readCsv refused the label column as absent from the header. */
const noSuchColumn = (err: unknown) => err instanceof HandgradError && err.code === 'ERR_FILE' && /for opts\.label but received the header/.test(err.message);

export interface Rows {
  /** X [n,D] in the model's feature order (float64, raw). */
  X: Float64Array;
  /** The label texts, when the CSV has the label column. */
  labels?: string[];
  n: number;
}

/**
 * The rows of a CSV as the model takes them: by its feature names (a file without names: the CSV's
 * columns but the label, in order), and the label column when present.
 * @throws {HandgradError} ERR_FILE: a feature column missing, a cell that is not a finite number
 */
export function modelRows(model: Model, data: string, label: string | undefined): Rows {
  const D = model.inFeatures;
  const features = model.features;
  let d: CsvDataset | undefined;
  if (label !== undefined) {
    try {
      d = readCsv(data, { label, header: true });
    } catch (err) {
      if (!noSuchColumn(err)) throw err;
    }
  }
  if (features === undefined) {
    // No names saved: the columns by position, the label last (readCsv's default) unless named.
    d ??= readCsv(data, {});
    if (d.D !== D) fileFail(`${D} feature columns besides the label (the model's inputs; its file names none)`, '--data', `${d.D}`, data);
    return { X: Float64Array.from(d.X), labels: Array.from({ length: d.y.length }, (_, i) => labelText(d!, i)), n: d.y.length };
  }
  // No label column: the first feature takes the label's place in readCsv (every other column must
  // be a number), and its cells come back as label texts, read here as readCsv reads numbers.
  const viaLabel = d === undefined;
  d ??= readCsv(data, { label: features[0], header: true, maxClasses: ANY_COUNT });
  const n = d.y.length;
  const columns = new Map<string, number>();
  d.featureNames.forEach((name, j) => columns.set(name, j));
  const X = new Float64Array(n * D);
  for (let k = 0; k < D; k++) {
    const name = features[k];
    if (viaLabel && k === 0) {
      for (let i = 0; i < n; i++) {
        const t = labelText(d, i).trim();
        const x = NUMBER.test(t) ? Number(t) : NaN;
        if (!Number.isFinite(x)) fileFail('a finite number', `column ${JSON.stringify(name)} in data row ${i + 1}`, v.describe(t), data);
        X[i * D] = x;
      }
      continue;
    }
    const j = columns.get(name);
    if (j === undefined) {
      const shown = [...(viaLabel ? [features[0]] : [d.labelName]), ...d.featureNames].slice(0, 8).map((s) => JSON.stringify(s)).join(', ');
      fileFail(`a column named ${JSON.stringify(name)} (feature ${k + 1} of the ${D} the model was trained on)`, `--data ${data}`, `the header ${shown}${d.D + 1 > 8 ? ', …' : ''}`, undefined);
    }
    for (let i = 0; i < n; i++) X[i * D + k] = d.X[i * d.D + j];
  }
  return { X, labels: viaLabel ? undefined : Array.from({ length: n }, (_, i) => labelText(d!, i)), n };
}

/** The text of the output CSV: `prediction`, then (probs) one column per class. */
export function predictionCsv(model: Model, ids: Int32Array, probs?: ArrayLike<number>): string {
  const C = model.numClasses;
  const names = model.classes ?? Array.from({ length: C }, (_, c) => String(c));
  const lines = [['prediction', ...(probs ? names : [])].map(cell).join(',')];
  for (let i = 0; i < ids.length; i++) {
    const row = [cell(names[ids[i]])];
    // Shortest round-trip decimal: the file's numbers are the very doubles computed.
    if (probs) for (let c = 0; c < C; c++) row.push(String(probs[i * C + c]));
    lines.push(row.join(','));
  }
  return `${lines.join('\n')}\n`;
}

export async function runPredict(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s), err: (s: string) => void = (s) => process.stderr.write(s)): Promise<{ accuracy?: number; n: number }> {
  const { values } = flags('predict', argv, {
    model: STRING, data: STRING, output: { type: 'string', short: 'o' }, probs: { type: 'boolean', default: false }, label: STRING,
    backend: { type: 'string', default: 'native' },
  });
  if (values.model === undefined || values.model === '') v.fail(TypeError, 'a model file (handgrad train writes model.safetensors)', '--model', values.model);
  if (values.data === undefined || values.data === '') v.fail(TypeError, 'a CSV file of rows to classify', '--data', values.data);
  if (values.output === '') v.fail(RangeError, 'a file path', '--output', values.output);
  if (values.label === '') v.fail(RangeError, 'a column name', '--label', values.label);
  const backend = v.oneOf('--backend', values.backend, v.BACKENDS, 'native');
  const model = loadModel(values.model);
  const label = values.label ?? model.label;
  const rows = modelRows(model, values.data, label);
  const ids = model.predict(rows.X, { backend });
  const text = predictionCsv(model, ids, values.probs ? model.probs(rows.X, { backend }) : undefined);
  // The CSV goes to -o, or to stdout; the accuracy then to stderr, so the CSV stays clean.
  if (values.output !== undefined) writeFileAtomic(values.output, text);
  else out(text);
  if (rows.labels === undefined) return { n: rows.n };
  const names = model.classes ?? Array.from({ length: model.numClasses }, (_, c) => String(c));
  const idOf = new Map(names.map((s, c) => [s, c]));
  let correct = 0;
  rows.labels.forEach((t, i) => {
    const c = idOf.get(t);
    if (c === undefined) {
      const shown = names.slice(0, 8).map((s) => JSON.stringify(s)).join(', ') + (names.length > 8 ? ', …' : '');
      fileFail(`a class the model knows (${shown})`, `the label column ${JSON.stringify(label ?? 'last')} in data row ${i + 1}`, JSON.stringify(t), values.data);
    }
    if (c === ids[i]) correct++;
  });
  const accuracy = correct / rows.n;
  (values.output !== undefined ? out : err)(`accuracy ${(100 * accuracy).toFixed(2)}% (${correct} of ${rows.n} rows, label column ${JSON.stringify(label ?? 'last')})\n`);
  return { accuracy, n: rows.n };
}

export const predictCommand: Command = {
  summary: 'classify the rows of a CSV with a model file (its standardizer and class names); prints the accuracy when the CSV has labels',
  help: `usage: handgrad predict --model FILE --data FILE.csv [-o OUT.csv] [--probs]

Reads the CSV's columns by the feature names the model file keeps (any order; other numeric
columns are left aside), applies its standardizer, and writes one predicted class name per row
under the header \`prediction\` to OUT.csv (or stdout). When the CSV has the label column, its
labels are matched to the model's class names and the accuracy is printed (to stderr when the
predictions go to stdout).

  --model FILE        a model file: handgrad train's model.safetensors, saveModel's, Trainer.save's
  --data FILE.csv     the rows to classify (the label column optional)
  -o, --output FILE   where the predictions go (default stdout)
  --probs             also one column of probabilities per class, named by the class
  --label COL         the label column's name (default: the one the model file names)
  --backend native|ts|torch|wasm   (default native)
`,
  async run(argv) {
    await runPredict(argv);
    return 0;
  },
};
