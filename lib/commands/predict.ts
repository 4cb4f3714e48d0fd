// `handgrad predict`: a model file (handgrad train's, saveModel's, Trainer.save's) on a CSV of raw
// rows. The columns are found by the feature names the model file keeps (their order in the CSV
// is free; other numeric columns are left aside), the saved standardizer is applied, and one class
// name per row is written under the header `prediction` (with --probs, then one probability column
// per class). When the CSV has the label column, its labels are matched to the saved class names
// and the accuracy is printed.
import { readCsv } from '../data';
import type { CsvDataset, CsvOptions } from '../data/csv';
import { fileFail } from '../data/files';
import { HandgradError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { loadModel, type Model } from '../model-file';
import * as v from '../validate';
import { type Command, flags, STRING } from './command';
import { columnList, columnsNamed, firstRow, headerFlag, madeUpColumn, shownHeader } from './csv-columns';

// readCsv's number syntax (a label cell is read as text): a feature read through the label slot must meet it too.
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
/** The most distinct values a column read through the label slot may hold (readCsv's own cap is 2^31 − 1). */
const ANY_COUNT = 2 ** 31 - 1;

/** A CSV cell: quoted when it holds a delimiter, a quote or a line break (RFC 4180). */
const cell = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

/** The label text of row i (a class name, or the class id as written). */
const labelText = (d: CsvDataset, i: number) => (d.classNames ? d.classNames[d.y[i]] : String(d.y[i]));

/**
 * readCsv, with its one message that would mislead here reworded: when the first feature is read
 * through the label slot (the file has no label column), an empty cell of it is a missing number
 * for that feature column, not a missing label.
 */
function readFeatureViaLabel(data: string, opts: CsvOptions): CsvDataset {
  try {
    return readCsv(data, { ...opts, maxClasses: ANY_COUNT });
  } catch (err) {
    if (err instanceof HandgradError && err.code === 'ERR_FILE' && err.message.startsWith('Expected a label for ')) {
      err.message = `Expected a number for ${err.message.slice('Expected a label for '.length)}`;
    }
    throw err;
  }
}

export interface Rows {
  /** X [n,D] in the model's feature order (float64, raw). */
  X: Float64Array;
  /** The label texts, when the CSV has the label column. */
  labels?: string[];
  /** The label column read (its header name, or train's colK for a file without a header). */
  labelName?: string;
  n: number;
}

export interface RowsOptions {
  /** --label: the label column; it must exist (without it, the model's label column, which may be absent). */
  label?: string;
  /** --header: whether the first row names the columns ('auto': see modelRows). */
  header?: 'auto' | boolean;
}

/**
 * The rows of a CSV as the model takes them, and the label column when present.
 *
 * Columns are found by the feature names the model keeps, in a header: each name (and the label's)
 * must be spelled by exactly one column. A model trained on a CSV without a header keeps train's
 * made-up names col1…colN, which stand for file columns 1…N: such a file is read by position, as
 * it was trained (with --header false, or 'auto' when the first row does not hold every feature
 * name). A model file without names takes the CSV's columns but the label, in order.
 * @throws {HandgradError} ERR_FILE: a column missing or duplicated, a cell that is not a finite number
 * @throws {RangeError|TypeError} naming --label or --header
 */
export function modelRows(model: Model, data: string, opts: RowsOptions = {}): Rows {
  const D = model.inFeatures;
  const features = model.features;
  const header = opts.header ?? 'auto';
  const explicit = opts.label;
  const first = firstRow(data);
  if (first === undefined) readCsv(data, {}); // no records: readCsv's own error (an empty file) is thrown
  const { cells } = first!;
  const ncols = cells.length;
  const named = (name: string) => columnsNamed(cells, name);
  const inData = `--data ${data}`;
  // An explicit --label must name a column; the model's own label may be absent (then: no accuracy).
  const noSuchLabel = (name: string): never => fileFail(`a column named ${JSON.stringify(name)}`, '--label', shownHeader(first!), data);

  if (features === undefined) {
    // No names saved: the columns by position, the label last unless named (and present).
    const label = explicit ?? (model.label !== undefined && header !== false && named(model.label).length === 1 ? model.label : undefined);
    if (label !== undefined && header === false) v.fail(RangeError, 'true or auto with --label (a column name needs a header)', '--header', 'false');
    if (explicit !== undefined && named(explicit).length === 0) noSuchLabel(explicit);
    if (label !== undefined && named(label).length > 1) fileFail(`one column named ${JSON.stringify(label)} (the label)`, inData, `columns ${columnList(named(label))} of ${shownHeader(first!)}`, undefined);
    const d = readCsv(data, { ...(label !== undefined ? { label } : {}), header });
    if (d.D !== D) fileFail(`${D} feature columns besides the label (the model's inputs; its file names none)`, '--data', `${d.D}`, data);
    return { X: Float64Array.from(d.X), labels: Array.from({ length: d.y.length }, (_, i) => labelText(d, i)), labelName: d.labelName, n: d.y.length };
  }

  const madeUp = features.every((f) => madeUpColumn(f) >= 0);
  if (header === false && !madeUp) {
    const shown = features.slice(0, 4).map((f) => JSON.stringify(f)).join(', ') + (D > 4 ? ', …' : '');
    v.fail(RangeError, 'true or auto for this model (only a model trained on a CSV without a header, whose features are col1…colN, reads one by position)', '--header', new v.Received(`false; the model's features are ${shown}`));
  }
  const byPosition = header === false || (header === 'auto' && madeUp && !features.every((f) => named(f).length > 0));

  let label: string | undefined; // the label column read, when there is one
  let d: CsvDataset;
  if (byPosition) {
    // train named column k of a file without a header `col${k + 1}`: the same names find them here.
    const at = features.map(madeUpColumn);
    const missing = features.filter((_, k) => at[k] >= ncols);
    if (missing.length > 0) {
      fileFail(`columns ${missing.map((f) => JSON.stringify(f)).join(', ')} (a CSV without a header is read by position: colK is column K, as train named them)`, inData, `${ncols} columns on line ${first!.line}`, undefined);
    }
    const k = madeUpColumn(explicit ?? model.label ?? '');
    const labelAt = k >= 0 && k < ncols && !at.includes(k) ? k : undefined;
    if (explicit !== undefined && labelAt === undefined) {
      v.fail(RangeError, `a column of the CSV without a header that is not a feature, named as train names them (col1…col${ncols})`, '--label', explicit);
    }
    if (labelAt !== undefined) label = `col${labelAt + 1}`;
    d = labelAt !== undefined ? readCsv(data, { header: false, label: labelAt }) : readFeatureViaLabel(data, { header: false, label: at[0] });
  } else {
    const wanted = explicit ?? model.label;
    if (wanted !== undefined) {
      const at = named(wanted);
      const flag = explicit !== undefined ? '--label' : `the label column (the model's) in ${inData}`;
      if (explicit !== undefined && at.length === 0) noSuchLabel(explicit);
      if (at.length > 1) fileFail(`one column named ${JSON.stringify(wanted)}`, flag, `columns ${columnList(at)} of ${shownHeader(first!)}`, undefined);
      if (explicit !== undefined && features.includes(explicit)) v.fail(RangeError, 'the label column, not one of the model\'s features', '--label', explicit);
      if (at.length === 1) label = wanted;
    }
    // Each name must be one column: with two, which one the model meant cannot be told.
    features.forEach((f, k) => {
      const at = named(f);
      if (at.length > 1) fileFail(`one column named ${JSON.stringify(f)} (feature ${k + 1} of the ${D} the model was trained on)`, inData, `columns ${columnList(at)} of ${shownHeader(first!)}`, undefined);
    });
    const missing = features.flatMap((f, k) => (named(f).length === 0 ? [`${JSON.stringify(f)} (feature ${k + 1})`] : []));
    if (missing.length > 0) {
      const hint = madeUp ? '; the model was trained on a CSV without a header: --header false reads one by position' : '';
      fileFail(`${missing.length === 1 ? 'a column' : 'columns'} named ${missing.join(', ')} of the ${D} the model was trained on`, inData, `${shownHeader(first!)}${hint}`, undefined);
    }
    d = label !== undefined ? readCsv(data, { header: true, label }) : readFeatureViaLabel(data, { header: true, label: features[0] });
  }

  // No label column: the first feature took the label's place in readCsv (every other column must
  // be a number), and its cells came back as label texts, read here as readCsv reads numbers.
  const viaLabel = label === undefined;
  const n = d.y.length;
  const columns = new Map<string, number>();
  d.featureNames.forEach((name, j) => columns.set(name, j)); // unique: duplicates were refused above
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
    if (j === undefined) throw new Error(`unreachable: feature ${JSON.stringify(name)} was found in the first row`);
    for (let i = 0; i < n; i++) X[i * D + k] = d.X[i * d.D + j];
  }
  return { X, labels: viaLabel ? undefined : Array.from({ length: n }, (_, i) => labelText(d, i)), labelName: label, n };
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
    backend: { type: 'string', default: 'native' }, header: { type: 'string', default: 'auto' },
  });
  if (values.model === undefined || values.model === '') v.fail(TypeError, 'a model file (handgrad train writes model.safetensors)', '--model', values.model);
  if (values.data === undefined || values.data === '') v.fail(TypeError, 'a CSV file of rows to classify', '--data', values.data);
  if (values.output === '') v.fail(RangeError, 'a file path', '--output', values.output);
  if (values.label === '') v.fail(RangeError, 'a column name', '--label', values.label);
  const backend = v.oneOf('--backend', values.backend, v.BACKENDS, 'native');
  const header = headerFlag(values.header);
  const model = loadModel(values.model);
  const rows = modelRows(model, values.data, { label: values.label, header });
  const label = rows.labelName;
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
columns are left aside; a name, or the label's, spelled by two columns is an error). A model
trained on a CSV without a header keeps train's names col1, col2, … and reads such a file by
position (colK is column K, the label column may be left off the end). Applies its
standardizer and writes one predicted class name per row under the header \`prediction\` to
OUT.csv (or stdout). When the CSV has the label column, its labels are matched to the model's
class names and the accuracy is printed (to stderr when the predictions go to stdout).

  --model FILE        a model file: handgrad train's model.safetensors, saveModel's, Trainer.save's
  --data FILE.csv     the rows to classify (the label column optional)
  -o, --output FILE   where the predictions go (default stdout)
  --probs             also one column of probabilities per class, named by the class
  --label COL         the label column's name, which must be in the header (default: the one
                      the model file names; when the CSV lacks it, no accuracy is printed)
  --header true|false|auto   whether the first row names the columns (default auto: it does
                      unless the model's features are col1…colN and the row lacks those names)
  --backend native|ts|torch|wasm   (default native)
`,
  async run(argv) {
    await runPredict(argv);
    return 0;
  },
};
