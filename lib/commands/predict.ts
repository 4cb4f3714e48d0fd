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
import { columnList, columnNumbers, columnsNamed, firstRow, headerFlag, madeUpColumn, shownHeader } from './csv-columns';

/** readCsv's maxClasses here: the model's classes (or C) bound the labels, and a column read in the label's place may hold any number of values. */
const ANY_COUNT = 2 ** 31 - 1;

/** A CSV cell: quoted when it holds a delimiter, a quote or a line break (RFC 4180). */
const cell = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

/** The model's class names (its class ids as text for a file that names none). */
const classNames = (model: Model) => model.classes ?? Array.from({ length: model.numClasses }, (_, c) => String(c));

/**
 * The CSV with its label column: the labels as the model's class ids, every one checked here (so
 * that nothing is written for a file that fails). A model with class names reads the labels as
 * those names (opts.classes), so a label "1.0" is the class "1.0", never the class id 1; a model
 * without names takes the labels as class ids in [0, C).
 * @throws {HandgradError} ERR_FILE: a label the model does not know, naming its line
 */
function readLabelled(model: Model, data: string, opts: CsvOptions): CsvDataset {
  const classes = model.classes;
  if (classes === undefined) {
    const d = readCsv(data, { ...opts, maxClasses: ANY_COUNT });
    const C = model.numClasses;
    const bad = d.classNames !== undefined ? 0 : d.y.findIndex((c) => c >= C);
    if (bad >= 0) {
      const t = d.classNames ? d.classNames[d.y[bad]] : String(d.y[bad]);
      fileFail(`a class id the model knows (0 to ${C - 1}: its file names no classes)`, `the label column ${JSON.stringify(d.labelName)} in data row ${bad + 1}`, JSON.stringify(t), data);
    }
    return d;
  }
  try {
    return readCsv(data, { ...opts, classes, maxClasses: ANY_COUNT });
  } catch (err) {
    // readCsv names its option; the list is the model's.
    if (err instanceof HandgradError && err.code === 'ERR_FILE') err.message = err.message.replace(/^Expected one of the \d+ classes in opts\.classes \(/, 'Expected a class the model knows (');
    throw err;
  }
}

/** Every column of a CSV, as numbers, and the names of all of them. */
interface Table {
  /** [n, names.length], in file order but the label's column. */
  X: Float64Array;
  names: string[];
  n: number;
  /** The label column's class ids (the model's), when the CSV has one. */
  y?: Int32Array;
  labelName?: string;
}

/**
 * A CSV without a label column, every column a number. readCsv always takes one column as the
 * label: column 0 goes there (its cells checked by readCsv's own header and width rules), and its
 * numbers are then read by readCsv's number rule (columnNumbers), so no column is read by another
 * rule than the rest. An empty cell in it is a missing number, not a missing label.
 */
function readUnlabelled(data: string, header: 'auto' | boolean): Table {
  let d: CsvDataset;
  try {
    d = readCsv(data, { header, label: 0, maxClasses: ANY_COUNT });
  } catch (err) {
    if (err instanceof HandgradError && err.code === 'ERR_FILE' && err.message.startsWith('Expected a label for ')) {
      err.message = `Expected a number for ${err.message.slice('Expected a label for '.length)}`;
    }
    throw err;
  }
  const n = d.y.length;
  const w = d.D + 1;
  const first = columnNumbers(data, 0, d.header, n);
  const X = new Float64Array(n * w);
  for (let i = 0; i < n; i++) {
    X[i * w] = first[i];
    X.set(d.X.subarray(i * d.D, (i + 1) * d.D), i * w + 1);
  }
  return { X, names: [d.labelName, ...d.featureNames], n };
}

/** The CSV with the label column `label` (a name or a 0-based index), or without one. */
function readTable(model: Model, data: string, header: 'auto' | boolean, label: string | number | undefined): Table {
  if (label === undefined) return readUnlabelled(data, header);
  const d = readLabelled(model, data, { header, label });
  return { X: d.X, names: d.featureNames, n: d.y.length, y: d.y, labelName: d.labelName };
}

export interface Rows {
  /** X [n,D] in the model's feature order (float64, raw). */
  X: Float64Array;
  /** The labels as the model's class ids, when the CSV has the label column. */
  y?: Int32Array;
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
 * name). A model file without names takes the CSV's columns but the label, in order: D columns are
 * all features, D + 1 the features and the label (last, or the column --label or the model's
 * label name spells). Every feature cell is read by readCsv's one number rule, and every label is
 * checked against the model's classes, before anything is predicted or written.
 * @throws {HandgradError} ERR_FILE: a column missing or duplicated, a cell that is not a finite number, a label the model does not know
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

  let t: Table;
  let at: (k: number) => number; // the Table column of the model's feature k
  if (features === undefined) {
    // No names saved: the columns by position; the label is the column named (and present), else
    // the last when there is one column more than the model's inputs.
    const byName = explicit ?? (model.label !== undefined && header !== false && named(model.label).length === 1 ? model.label : undefined);
    if (byName !== undefined && header === false) v.fail(RangeError, 'true or auto with --label (a column name needs a header)', '--header', 'false');
    if (explicit !== undefined && named(explicit).length === 0) noSuchLabel(explicit);
    if (byName !== undefined && named(byName).length > 1) fileFail(`one column named ${JSON.stringify(byName)} (the label)`, inData, `columns ${columnList(named(byName))} of ${shownHeader(first!)}`, undefined);
    if (byName === undefined && ncols !== D && ncols !== D + 1) {
      fileFail(`${D} columns (the model's inputs; its file names none) or ${D + 1} (and the label last)`, inData, `${ncols} columns on line ${first!.line}`, undefined);
    }
    const label = byName ?? (ncols === D + 1 ? -1 : undefined);
    t = readTable(model, data, byName !== undefined ? true : header, label);
    if (t.names.length !== D) fileFail(`${D} feature columns besides the label (the model's inputs; its file names none)`, '--data', `${t.names.length}`, data);
    at = (k) => k;
  } else {
    const madeUp = features.every((f) => madeUpColumn(f) >= 0);
    if (header === false && !madeUp) {
      const shown = features.slice(0, 4).map((f) => JSON.stringify(f)).join(', ') + (D > 4 ? ', …' : '');
      v.fail(RangeError, 'true or auto for this model (only a model trained on a CSV without a header, whose features are col1…colN, reads one by position)', '--header', new v.Received(`false; the model's features are ${shown}`));
    }
    const byPosition = header === false || (header === 'auto' && madeUp && !features.every((f) => named(f).length > 0));
    if (byPosition) {
      // train named column k of a file without a header `col${k + 1}`: the same names find them here.
      const cols = features.map(madeUpColumn);
      const missing = features.filter((_, k) => cols[k] >= ncols);
      if (missing.length > 0) {
        fileFail(`columns ${missing.map((f) => JSON.stringify(f)).join(', ')} (a CSV without a header is read by position: colK is column K, as train named them)`, inData, `${ncols} columns on line ${first!.line}`, undefined);
      }
      const k = madeUpColumn(explicit ?? model.label ?? '');
      const labelAt = k >= 0 && k < ncols && !cols.includes(k) ? k : undefined;
      if (explicit !== undefined && labelAt === undefined) {
        v.fail(RangeError, `a column of the CSV without a header that is not a feature, named as train names them (col1…col${ncols})`, '--label', explicit);
      }
      t = readTable(model, data, false, labelAt);
    } else {
      const wanted = explicit ?? model.label;
      let label: string | undefined;
      if (wanted !== undefined) {
        const where = named(wanted);
        const flag = explicit !== undefined ? '--label' : `the label column (the model's) in ${inData}`;
        if (explicit !== undefined && where.length === 0) noSuchLabel(explicit);
        if (where.length > 1) fileFail(`one column named ${JSON.stringify(wanted)}`, flag, `columns ${columnList(where)} of ${shownHeader(first!)}`, undefined);
        if (explicit !== undefined && features.includes(explicit)) v.fail(RangeError, 'the label column, not one of the model\'s features', '--label', explicit);
        if (where.length === 1) label = wanted;
      }
      // Each name must be one column: with two, which one the model meant cannot be told.
      features.forEach((f, k) => {
        const where = named(f);
        if (where.length > 1) fileFail(`one column named ${JSON.stringify(f)} (feature ${k + 1} of the ${D} the model was trained on)`, inData, `columns ${columnList(where)} of ${shownHeader(first!)}`, undefined);
      });
      const missing = features.flatMap((f, k) => (named(f).length === 0 ? [`${JSON.stringify(f)} (feature ${k + 1})`] : []));
      if (missing.length > 0) {
        const hint = madeUp ? '; the model was trained on a CSV without a header: --header false reads one by position' : '';
        fileFail(`${missing.length === 1 ? 'a column' : 'columns'} named ${missing.join(', ')} of the ${D} the model was trained on`, inData, `${shownHeader(first!)}${hint}`, undefined);
      }
      t = readTable(model, data, true, label);
    }
    // By name: unique, since duplicates were refused above (and colK names are unique by construction).
    const columns = new Map(t.names.map((name, j) => [name, j]));
    at = (k) => {
      const j = columns.get(features[k]);
      if (j === undefined) throw new Error(`unreachable: feature ${JSON.stringify(features[k])} was found in the first row`);
      return j;
    };
  }

  const { n } = t;
  const w = t.names.length;
  const X = new Float64Array(n * D);
  for (let k = 0; k < D; k++) {
    const j = at(k);
    for (let i = 0; i < n; i++) X[i * D + k] = t.X[i * w + j];
  }
  return { X, y: t.y, labelName: t.labelName, n };
}

/** The text of the output CSV: `prediction`, then (probs) one column per class. */
export function predictionCsv(model: Model, ids: Int32Array, probs?: ArrayLike<number>): string {
  const C = model.numClasses;
  const names = classNames(model);
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
  // Every cell and label is checked here, before a prediction is computed or written.
  const rows = modelRows(model, values.data, { label: values.label, header });
  const ids = model.predict(rows.X, { backend });
  const text = predictionCsv(model, ids, values.probs ? model.probs(rows.X, { backend }) : undefined);
  // The CSV goes to -o, or to stdout; the accuracy then to stderr, so the CSV stays clean.
  if (values.output !== undefined) writeFileAtomic(values.output, text);
  else out(text);
  if (rows.y === undefined) return { n: rows.n };
  let correct = 0;
  for (let i = 0; i < rows.n; i++) if (rows.y[i] === ids[i]) correct++;
  const accuracy = correct / rows.n;
  (values.output !== undefined ? out : err)(`accuracy ${(100 * accuracy).toFixed(2)}% (${correct} of ${rows.n} rows, label column ${JSON.stringify(rows.labelName)})\n`);
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
