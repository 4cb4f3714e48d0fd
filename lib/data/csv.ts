// CSV files of numeric features and one label column, as a Dataset: readCsv parses on the calling
// thread, readCsvAsync (csv-async.ts) in slices between which the event loop runs. Both drive one
// CsvParse, so they give the same bits.
//
// The parser walks the bytes once (csv-records.ts): cells are spans of the input, and numbers go
// straight into a Float64Array. Memory is the input plus the output, whatever the file's size; no
// string grows.
//
// A file is untrusted input, and what it costs follows from what it holds, never from a count it
// declares: X grows with the rows actually parsed (doubling, capped by what the bytes can hold:
// blank lines and a wide header cost nothing), a record's cells are stored up to the width of the
// first row only (a longer row is counted, not stored), and three limits with defaults bound the
// rest: opts.maxBytes (what gzip may inflate to), opts.maxColumns and opts.maxClasses (distinct labels).
import * as v from '../validate';
import { CR, LF, parseNumber, QUOTE, Records } from './csv-records';
import { type CsvSource, sourceBytes } from './csv-source';
import type { Dataset } from './dataset';
import { fileFail, MAX_BUFFER_BYTES, MAX_GUNZIPPED_BYTES } from './files';
import { limit } from './options';

export interface CsvOptions {
  /**
   * The label column: a header name, or a 0-based column index (negative counts from the end).
   * Default: the last column.
   */
  label?: string | number;
  /**
   * Whether the first row names the columns. 'auto' (default): it does when the label is given by
   * name, or when one of its feature cells is text other than a number (an empty cell, 1e999, NaN
   * or inf is a number, refused: that row is data, and an error), or when its label cell is not a
   * number but the next row's is.
   */
  header?: 'auto' | boolean;
  /** One ASCII character other than a quote or a line break (default ','). */
  delimiter?: string;
  /** The most bytes gzipped input may inflate to (default 1 GiB): a gzip bomb is refused at this size. */
  maxBytes?: number;
  /**
   * The most columns (features and the label) a row may have (default 2^20 = 1,048,576): a wider
   * first row is refused before its names and numbers are kept.
   */
  maxColumns?: number;
  /**
   * The most classes: distinct labels, and class ids below it (default 65,536). More is refused at
   * the first label past it (the logits and W2 grow with C, and a label column of free text would
   * otherwise make one class per row).
   */
  maxClasses?: number;
  /**
   * The class names in order: the label `classes[i]` is class i, whatever order the file holds
   * its rows in, so two files of one problem number their classes alike (C = classes.length; a
   * label not in the list is an ERR_FILE naming its line). Labels are then names even when they
   * look like integers. Default: labels that are all integers are class ids, other labels are
   * numbered in order of first appearance.
   */
  classes?: readonly string[];
}

/** opts.maxColumns' default: wider than any image flattened for an MLP (224×224×3 = 150,528). */
export const MAX_COLUMNS = 2 ** 20;
/** opts.maxClasses' default: above ImageNet-21k's 21,841 classes. */
export const MAX_CLASSES = 2 ** 16;

export interface CsvDataset extends Dataset {
  /** Names of the D feature columns, in order: from the header, else `col1`, `col2`, … (1-based file column). */
  featureNames: string[];
  /** Name of the label column (from the header, else `col<k>`). */
  labelName: string;
  /**
   * Present when the labels are names: classNames[id] is the name of class id (opts.classes when
   * given, else in order of first appearance).
   */
  classNames?: string[];
  /** Whether the first row was read as a header. */
  header: boolean;
}

const MAX_ID = 2 ** 31 - 2; // class ids must leave C = max + 1 within an int32
/** Rows X holds before it first grows (small files are read with no copy). */
const FIRST_ROWS = 4096;
/** Rows parsed between two questions to `pause` (a clock read costs about what one row does). */
const ROWS_PER_CHECK = 256;

/** The options readCsv takes (readCsvAsync adds its own). */
export const CSV_OPTION_KEYS = ['label', 'header', 'delimiter', 'maxBytes', 'maxColumns', 'maxClasses', 'classes'] as const;

/** The options, checked. */
export interface CsvSettings {
  label: string | number | undefined;
  header: 'auto' | boolean;
  delimiter: number;
  maxBytes: number;
  maxColumns: number;
  maxClasses: number;
  classes: string[] | undefined;
}

/** Checks what v.options returned for CSV_OPTION_KEYS (shared by readCsv and readCsvAsync). */
export function csvSettings(oo: { readonly [K in (typeof CSV_OPTION_KEYS)[number]]?: unknown }): CsvSettings {
  const label = oo.label;
  if (label !== undefined && typeof label !== 'string') {
    if (typeof label !== 'number') v.fail(TypeError, 'a column name or a 0-based column index', 'opts.label', label);
    if (!Number.isInteger(label)) v.fail(RangeError, 'an integer column index', 'opts.label', label);
  }
  // undefined alone means the default: null is refused as every other option refuses it (?? took
  // it for the default, and delimiter: null read a ';' file as one column).
  const header = oo.header === undefined ? 'auto' : oo.header;
  if (header !== 'auto' && typeof header !== 'boolean') v.fail(TypeError, "'auto', true or false", 'opts.header', header);
  if (typeof label === 'string' && header === false) {
    // Received: describe() names a boolean's type, and here the value is what is wrong.
    v.fail(RangeError, "true or 'auto' when opts.label is a column name", 'opts.header', new v.Received(`false (opts.label ${JSON.stringify(label)})`));
  }
  const delimiter = oo.delimiter === undefined ? ',' : oo.delimiter;
  if (typeof delimiter !== 'string') v.fail(TypeError, 'a one-character string', 'opts.delimiter', delimiter);
  const dc = delimiter.charCodeAt(0);
  if (delimiter.length !== 1 || dc > 0x7f || dc === QUOTE || dc === LF || dc === CR) {
    v.fail(RangeError, 'one ASCII character other than a quote or a line break', 'opts.delimiter', delimiter);
  }
  const maxClasses = limit('opts.maxClasses', oo.maxClasses, MAX_CLASSES, 2 ** 31 - 1);
  return {
    label: label as string | number | undefined,
    header: header as 'auto' | boolean,
    delimiter: dc,
    maxBytes: limit('opts.maxBytes', oo.maxBytes, MAX_GUNZIPPED_BYTES, MAX_BUFFER_BYTES),
    maxColumns: limit('opts.maxColumns', oo.maxColumns, MAX_COLUMNS, 2 ** 31 - 1),
    maxClasses,
    classes: classList(oo.classes, maxClasses),
  };
}

/** opts.classes as a copy (read once), or undefined: distinct, non-empty strings, at most maxClasses. */
function classList(classes: unknown, maxClasses: number): string[] | undefined {
  if (classes === undefined) return undefined;
  if (!Array.isArray(classes)) return v.fail(TypeError, 'an array of class names', 'opts.classes', classes);
  const names = Array.from(classes as unknown[]);
  if (names.length === 0) v.fail(RangeError, 'at least one class name', 'opts.classes', names);
  if (names.length > maxClasses) v.fail(RangeError, `at most ${maxClasses} class names (opts.maxClasses)`, 'opts.classes', names);
  const at = new Map<string, number>();
  names.forEach((name, i) => {
    if (typeof name !== 'string') v.fail(TypeError, 'a class name (a string, as the label cells are written)', `opts.classes[${i}]`, name);
    if (name === '') v.fail(RangeError, 'a non-empty class name (an empty label is refused)', `opts.classes[${i}]`, name);
    const before = at.get(name);
    if (before !== undefined) v.fail(RangeError, `a name not already at opts.classes[${before}]`, `opts.classes[${i}]`, name);
    at.set(name, i);
  });
  return names as string[];
}

/**
 * Reads a CSV of numeric features and one label column.
 *
 * `source` is a path (a `.gz` path, or a file whose content is gzip, is gunzipped), the bytes of a
 * CSV file (a Buffer, Uint8Array, ArrayBuffer or SharedArrayBuffer, shared memory copied first;
 * gzip detected by its magic bytes), or `{ text }`.
 * A string is always a path, never guessed to be text: one holding a line break is refused with a
 * TypeError that says to pass `{ text }`. Hand a request body over as its bytes (or the request
 * itself to readCsvAsync), never as a string: a one-line body would name a file.
 * Every column but the label must hold finite numbers (ASCII spaces and tabs around them are fine,
 * and are trimmed from unquoted labels and names; other white space is kept). With
 * opts.classes, the label `classes[i]` is class i; otherwise labels that are all integers in
 * [0, 2^31 − 1) are class ids (C = the largest + 1, at most opts.maxClasses), and any other labels
 * are class names numbered in order of first appearance (classNames).
 *
 * @returns `{ X [n,D], y [n], D, C, featureNames, labelName, classNames?, header }`
 * @throws {TypeError|RangeError} a bad argument or option (a source that is none of the above, a
 *   string with a line break, label neither a name nor an integer, a delimiter that is not one
 *   ASCII character, a label name with `header: false`, a limit that is not a positive integer in
 *   range, classes that are not distinct non-empty strings, unknown options)
 * @throws {HandgradError} code ERR_FILE, with the 1-based line number where there is one: an
 *   unreadable file, corrupt gzip or gzip inflating past opts.maxBytes, an empty file or a header
 *   alone, fewer than 2 columns or more than opts.maxColumns, a row with another number of cells
 *   than the first, a cell that is not a finite number (naming the column and the cell), a label
 *   or name that is not UTF-8 (naming its bytes), an empty
 *   label, a label not in opts.classes, more distinct labels than opts.maxClasses or a class id at
 *   or above it, an unknown label column, an unclosed quote
 */
export function readCsv(source: CsvSource, opts: CsvOptions = {}): CsvDataset {
  const settings = csvSettings(v.options('opts', opts, CSV_OPTION_KEYS));
  const { bytes, source: name } = sourceBytes(source, settings.maxBytes);
  const parse = new CsvParse(bytes, settings, name);
  parse.run(() => false);
  return parse.result();
}

// NaN and infinity as files spell them: JavaScript, Python (nan, inf), R (NaN, Inf), C (INF)…
const NAN_OR_INF = /^[+-]?(?:nan|inf|infinity)$/i;

/**
 * Whether a cell that did not read as a finite number is still written as one: empty, a numeral
 * that overflows (1e999), NaN or an infinity, with spaces or tabs around it (a quoted " 1" too).
 * Only other text makes a first row a header.
 */
function refusedNumber(text: string): boolean {
  let s = 0;
  let e = text.length;
  while (s < e && (text[s] === ' ' || text[s] === '\t')) s++;
  while (e > s && (text[e - 1] === ' ' || text[e - 1] === '\t')) e--;
  const t = text.slice(s, e);
  return t === '' || !Number.isNaN(parseNumber(t)) || NAN_OR_INF.test(t);
}

/** A grown copy of `a` (the rest zero); `name` is the array, for the error when memory runs out. */
function grown<T extends Float64Array | Int32Array>(a: T, length: number, name: string): T {
  const out = v.allocate(a.constructor as (new (n: number) => T) & { readonly BYTES_PER_ELEMENT: number }, length, name);
  out.set(a);
  return out;
}

/** Records in the bytes: line breaks, plus one for a last line without a break. */
function recordBound(b: Buffer): number {
  let n = b.length > 0 && b[b.length - 1] !== LF && b[b.length - 1] !== CR ? 1 : 0;
  for (let i = b.indexOf(LF); i >= 0; i = b.indexOf(LF, i + 1)) n++;
  for (let i = b.indexOf(CR); i >= 0; i = b.indexOf(CR, i + 1)) if (b[i + 1] !== LF) n++;
  return n;
}

/**
 * One CSV being parsed: the constructor reads the first row (or two) and decides the header and
 * the label column; run() parses data rows until the end or until `pause` says to stop (so the
 * async reader can hand the event loop back between slices); result() is the data set.
 */
export class CsvParse {
  private readonly rec: Records;
  private readonly ncols: number;
  private readonly firstLine: number;
  private readonly li: number;
  private readonly D: number;
  private readonly header: boolean;
  private readonly first: string[];
  private readonly bound: number;
  private rows: number;
  private X: Float64Array;
  private ids: Int32Array; // index of the row's label text in `texts`
  private readonly seen = new Map<string, number>();
  private readonly texts: string[] = [];
  private readonly textLines: number[] = []; // the line on which each label text first appears
  private r = 0;
  private done = false;

  constructor(private readonly bytes: Buffer, private readonly o: CsvSettings, private readonly source?: string) {
    const rec = (this.rec = new Records(bytes, o.delimiter, source));
    const { label, maxColumns } = o;
    const begin = { pos: rec.pos, line: rec.line };
    if (!rec.next(maxColumns)) fileFail('at least one row of data', 'the CSV', 'an empty file', source);
    const ncols = (this.ncols = rec.n);
    const firstLine = (this.firstLine = rec.recordLine);
    if (ncols < 2) fileFail('at least 2 columns (the features and a label)', `line ${firstLine}`, '1 column', source);
    if (ncols > maxColumns) fileFail(`at most ${maxColumns} columns (opts.maxColumns)`, `line ${firstLine}`, `${ncols}`, source);
    const first = (this.first = Array.from({ length: ncols }, (_, j) => rec.text(j)));
    const firstNums = Array.from({ length: ncols }, (_, j) => rec.number(j));
    const afterFirst = { pos: rec.pos, line: rec.line };

    let li: number;
    if (typeof label === 'string') {
      const at = first.flatMap((name, j) => (name === label ? [j] : []));
      if (at.length === 0) {
        const shown = first.slice(0, 8).map((s) => JSON.stringify(s)).join(', ') + (ncols > 8 ? `, … (${ncols} columns)` : '');
        fileFail(`a column named ${JSON.stringify(label)}`, 'opts.label', `the header ${shown} (line ${firstLine})`, source);
      }
      if (at.length > 1) {
        fileFail(`one column named ${JSON.stringify(label)}`, 'opts.label', `columns ${at.map((j) => j + 1).join(', ')} of the header (line ${firstLine})`, source);
      }
      li = at[0];
    } else if (typeof label === 'number') {
      li = label < 0 ? ncols + label : label;
      if (li < 0 || li >= ncols) {
        fileFail(`a column index in [${-ncols}, ${ncols})`, 'opts.label', `${label} (the file has ${ncols} columns)`, source);
      }
    } else {
      li = ncols - 1;
    }
    this.li = li;

    // Header: given, or decided from the first row; when its features are numbers and its label is
    // not, from the second row's label (a second row of another width is refused below either way).
    // A feature cell that is empty, overflows (1e999) or spells NaN or Infinity is a number the
    // parser refuses, not a name: such a first row is data, refused as it would be on line 2
    // (taken as a header, a headerless file lost its first row and got numbers as feature names).
    let header: boolean;
    if (o.header !== 'auto') header = o.header;
    else if (typeof label === 'string' || first.some((t, j) => j !== li && !Number.isFinite(firstNums[j]) && !refusedNumber(t))) header = true;
    else if (Number.isFinite(firstNums[li])) header = false;
    else header = rec.next(ncols) && (rec.n !== ncols || Number.isFinite(rec.number(li)));
    this.header = header;
    Object.assign(rec, header ? afterFirst : begin); // a first row that is data is read again, as any other

    this.D = ncols - 1;
    // Data rows the bytes can hold: no more than the lines (less the header's), and no more than
    // one per ncols bytes (a row spends ncols − 1 delimiters and a line break). X starts small and
    // doubles up to that as rows are parsed, so a file that claims rows (blank lines, a wide header)
    // costs what it holds.
    this.bound = Math.max(1, Math.min(recordBound(bytes) - (header ? 1 : 0), Math.floor((bytes.length + 1) / ncols)));
    this.rows = Math.min(this.bound, FIRST_ROWS);
    this.X = v.allocate(Float64Array, this.rows * this.D, `X (${this.rows} rows of the CSV)`);
    this.ids = v.allocate(Int32Array, this.rows, `y (${this.rows} rows of the CSV)`);
    if (o.classes !== undefined) {
      o.classes.forEach((name, i) => this.seen.set(name, i));
      this.texts.push(...o.classes);
    }
  }

  /** The bytes parsed so far (the length of the input once done). */
  get position(): number {
    return this.done ? this.bytes.length : this.rec.pos;
  }

  /** Data rows parsed so far. */
  get rowCount(): number {
    return this.r;
  }

  private columnName(j: number): string {
    return this.header ? `column ${JSON.stringify(this.first[j])} (column ${j + 1})` : `column ${j + 1}`;
  }

  /** Parses rows until the end of the input (true) or until pause() answers true (false). */
  run(pause: () => boolean): boolean {
    const { rec, ncols, li, D, seen, texts, textLines, source } = this;
    const { maxClasses, classes } = this.o;
    let { r, X, ids, rows } = this;
    let k = r * D;
    try {
      for (let checked = 0; ; checked++) {
        if (checked === ROWS_PER_CHECK) {
          checked = 0;
          if (pause()) return false;
        }
        if (!rec.next(ncols)) break;
        if (rec.n !== ncols) fileFail(`${ncols} cells (as on line ${this.firstLine})`, `line ${rec.recordLine}`, `${rec.n}`, source);
        if (r === rows) {
          rows = Math.max(r + 1, Math.min(this.bound, 2 * rows)); // past the bound only if it were wrong: never a row dropped
          X = grown(X, rows * D, `X (${rows} rows of the CSV)`);
          ids = grown(ids, rows, `y (${rows} rows of the CSV)`);
        }
        for (let j = 0; j < ncols; j++) {
          if (j === li) continue;
          const x = rec.number(j);
          if (!Number.isFinite(x)) {
            const text = rec.text(j);
            const actual = text === '' ? '"" (an empty cell)' : v.describe(text);
            fileFail(Number.isNaN(x) ? 'a number' : 'a finite number', `${this.columnName(j)} on line ${rec.lines[j]}`, actual, source);
          }
          X[k++] = x;
        }
        const t = rec.text(li);
        if (t === '') fileFail('a label', `${this.columnName(li)} on line ${rec.lines[li]}`, '"" (an empty cell)', source);
        let id = seen.get(t);
        if (id === undefined) {
          if (classes !== undefined) {
            const shown = classes.slice(0, 8).map((c) => JSON.stringify(c)).join(', ') + (classes.length > 8 ? ', …' : '');
            fileFail(`one of the ${classes.length} classes in opts.classes (${shown})`, `${this.columnName(li)} on line ${rec.lines[li]}`, v.describe(t), source);
          }
          if (texts.length === maxClasses) {
            const what = `at most ${maxClasses} distinct labels (opts.maxClasses)`;
            fileFail(what, `${this.columnName(li)} on line ${rec.lines[li]}`, `${maxClasses + 1} distinct labels, the last ${v.describe(t)}`, source);
          }
          seen.set(t, (id = texts.length));
          texts.push(t);
          textLines.push(rec.lines[li]);
        }
        ids[r++] = id;
      }
    } finally {
      Object.assign(this, { r, X, ids, rows });
    }
    this.done = true;
    return true;
  }

  /** The data set, once run() has returned true. */
  result(): CsvDataset {
    if (!this.done) throw new Error('CsvParse.result() before run() finished');
    const { r, rows, ids, X, D, li, texts, textLines, source } = this;
    const { maxClasses, classes } = this.o;
    if (r === 0) fileFail('at least one row of data', 'the CSV', `only a header (line ${this.firstLine})`, source);

    // Class ids when every label is an integer in range (and no class list is given); otherwise names.
    const values = classes === undefined ? texts.map(parseNumber) : [];
    const areIds = classes === undefined && values.every((x) => Number.isInteger(x) && x >= 0 && x <= MAX_ID);
    const tooBig = areIds ? values.findIndex((x) => x >= maxClasses) : -1;
    if (tooBig >= 0) {
      const what = `class ids below ${maxClasses} (opts.maxClasses)`;
      fileFail(what, `${this.columnName(li)} on line ${textLines[tooBig]}`, v.describe(texts[tooBig]), source);
    }
    const y = areIds ? Int32Array.from(ids.subarray(0, r), (id) => values[id]) : r === rows ? ids : ids.slice(0, r);
    const C = areIds ? values.reduce((c, x) => Math.max(c, x + 1), 0) : texts.length;
    const all = this.header ? this.first : this.first.map((_, j) => `col${j + 1}`);
    const X_ = r * D === X.length ? X : X.slice(0, r * D);
    return { X: X_, y, D, C, featureNames: all.filter((_, j) => j !== li), labelName: all[li], ...(areIds ? {} : { classNames: [...texts] }), header: this.header };
  }
}
