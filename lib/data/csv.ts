// CSV files of numeric features and one label column, as a Dataset.
//
// Minimal RFC 4180: a field that starts with a double quote (after optional spaces) runs to the
// next lone quote, may hold delimiters and line breaks, and writes a quote as "". Records end at
// \n, \r\n or a lone \r; empty (or blank) lines are skipped; a UTF-8 byte order mark is dropped.
//
// The parser walks the bytes once: cells are spans of the input, decoded one at a time (a quote,
// a delimiter or a line break is one ASCII byte, never part of a multi-byte UTF-8 character), and
// numbers go straight into a Float64Array. Memory is the input plus the output, whatever the
// file's size; no string grows.
//
// A file is untrusted input, and what it costs follows from what it holds, never from a count it
// declares: X grows with the rows actually parsed (doubling, capped by what the bytes can hold:
// blank lines and a wide header cost nothing), a record's cells are stored up to the width of the
// first row only (a longer row is counted, not stored), and three limits with defaults bound the
// rest: opts.maxBytes (what gzip may inflate to), opts.maxColumns and opts.maxClasses (distinct labels).
import * as v from '../validate';
import type { Dataset } from './dataset';
import { fileFail, gunzip, hex, isGzip, MAX_BUFFER_BYTES, MAX_GUNZIPPED_BYTES, readFile } from './files';
import { limit } from './options';

export interface CsvOptions {
  /**
   * The label column: a header name, or a 0-based column index (negative counts from the end).
   * Default: the last column.
   */
  label?: string | number;
  /**
   * Whether the first row names the columns. 'auto' (default): it does when the label is given by
   * name, or when one of its feature cells is not a number, or when its label cell is not a number
   * but the next row's is.
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
  /** Present when the labels are names: classNames[id] is the name of class id, in order of first appearance. */
  classNames?: string[];
  /** Whether the first row was read as a header. */
  header: boolean;
}

const [QUOTE, LF, CR, SP, TAB] = [0x22, 0x0a, 0x0d, 0x20, 0x09];
const [MINUS, PLUS, DOT, ZERO] = [0x2d, 0x2b, 0x2e, 0x30];
// Linear on any text: each digit can be matched one way only (\d+\.?\d* could split a run of
// digits n ways, and backtracked quadratically on "1111…1x": 2 s for 40,000 digits).
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
const MAX_ID = 2 ** 31 - 2; // class ids must leave C = max + 1 within an int32
/** Rows X holds before it first grows (small files are read with no copy). */
const FIRST_ROWS = 4096;

/** The records of a CSV file, one at a time; the cells of the current one are spans of the bytes. */
class Records {
  pos = 0;
  line = 1;
  recordLine = 1; // the line (1-based) on which the current record starts
  n = 0; // cells in the current record (only the first `stored` of them are kept)
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private readonly quoted: boolean[] = [];
  readonly lines: number[] = []; // the line on which each cell starts (a quoted cell may span lines)

  constructor(private readonly b: Buffer, private readonly delim: number, private readonly source: string | undefined) {
    if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) this.pos = 3;
  }

  private isSpace(c: number): boolean {
    return (c === SP || c === TAB) && c !== this.delim;
  }

  /** The position after the line break (\n, \r\n or \r) at p, counted; p when there is none. */
  private skipBreak(p: number): number {
    const b = this.b;
    if (b[p] !== LF && b[p] !== CR) return p;
    this.line++;
    return p + (b[p] === CR && b[p + 1] === LF ? 2 : 1);
  }

  /**
   * Reads the next record that is not blank; false at the end of the input. Cells past `stored`
   * are counted in n but not kept: a row far wider than expected costs no memory.
   */
  next(stored = Infinity): boolean {
    const b = this.b;
    const len = b.length;
    const d = this.delim;
    let p = this.pos;
    for (;;) {
      let q = p;
      while (q < len && this.isSpace(b[q])) q++;
      if (q >= len) {
        this.pos = len;
        return false;
      }
      const after = this.skipBreak(q);
      if (after === q) break;
      p = after;
    }
    this.recordLine = this.line;
    let n = 0;
    for (;;) {
      let q = p;
      while (q < len && this.isSpace(b[q])) q++;
      const cellLine = this.line;
      const quoted = q < len && b[q] === QUOTE;
      const s = quoted ? q + 1 : p;
      let e: number;
      if (quoted) {
        for (let r = s; ; r = e + 2) { // past "", a quote inside the field
          e = b.indexOf(QUOTE, r);
          if (e < 0) {
            fileFail('a closing quote', `the field opened on line ${cellLine} (column ${n + 1})`, 'the end of the file', this.source);
          }
          this.countLines(r, e);
          if (b[e + 1] !== QUOTE) break;
        }
        p = e + 1;
        while (p < len && this.isSpace(b[p])) p++;
        if (p < len && b[p] !== d && b[p] !== LF && b[p] !== CR) {
          let z = p;
          while (z < len && b[z] !== d && b[z] !== LF && b[z] !== CR) z++;
          const got = v.describe(b.toString('utf8', p, z));
          fileFail('the delimiter or the end of the line after a closing quote', `column ${n + 1} on line ${this.line}`, got, this.source);
        }
      } else {
        while (p < len && b[p] !== d && b[p] !== LF && b[p] !== CR) p++;
        e = p;
      }
      if (n < stored) {
        this.starts[n] = s;
        this.ends[n] = e;
        this.quoted[n] = quoted;
        this.lines[n] = cellLine;
      }
      n++;
      if (p < len && b[p] === d) {
        p++;
        continue;
      }
      p = this.skipBreak(p);
      break;
    }
    this.n = n;
    this.pos = p;
    return true;
  }

  private countLines(from: number, to: number): void {
    const b = this.b;
    for (let i = from; i < to; i++) {
      if (b[i] === LF || (b[i] === CR && b[i + 1] !== LF)) this.line++;
    }
  }

  /** The text of cell i: a quoted cell as written (with "" undone), another cell trimmed of spaces. */
  text(i: number): string {
    const t = this.b.toString('utf8', this.starts[i], this.ends[i]);
    if (this.quoted[i]) return t.includes('"') ? t.replaceAll('""', '"') : t;
    return t.trim();
  }

  /** Cell i as a number: NaN when it is not one (±Infinity when it overflows). */
  number(i: number): number {
    if (this.quoted[i]) return parseNumber(this.text(i));
    const b = this.b;
    let s = this.starts[i];
    let e = this.ends[i];
    while (s < e && (b[s] === SP || b[s] === TAB)) s++;
    while (e > s && (b[e - 1] === SP || b[e - 1] === TAB)) e--;
    // Fast path, no string: [sign] digits [. digits] [e [sign] digits] with at most 15 digits, so
    // the digits M are an exact integer and M·10^k (|k| ≤ 22, 10^k exact) is one correctly rounded
    // operation: the same double as Number(text) (Clinger's fast path).
    let p = s;
    const neg = p < e && b[p] === MINUS;
    if (p < e && (b[p] === MINUS || b[p] === PLUS)) p++;
    let m = 0;
    let digits = 0;
    let frac = -1; // digits after the point; -1 before one
    for (; p < e; p++) {
      if (b[p] === DOT && frac < 0) {
        frac = 0;
        continue;
      }
      const c = b[p] - ZERO;
      if (c < 0 || c > 9) break;
      m = m * 10 + c;
      digits++;
      if (frac >= 0) frac++;
    }
    let exp = 0;
    if (p < e && digits > 0 && (b[p] === 0x65 || b[p] === 0x45)) {
      p++;
      const eneg = p < e && b[p] === MINUS;
      if (p < e && (b[p] === MINUS || b[p] === PLUS)) p++;
      const e0 = p;
      for (; p < e && p - e0 < 4; p++) {
        const c = b[p] - ZERO;
        if (c < 0 || c > 9) break;
        exp = exp * 10 + c;
      }
      if (p === e0) return NaN;
      if (eneg) exp = -exp;
    }
    if (p === e && digits > 0 && digits <= 15) {
      const k = exp - Math.max(frac, 0);
      if (k >= -22 && k <= 22) {
        const v = k === 0 ? m : k > 0 ? m * POW10[k] : m / POW10[-k];
        return neg ? -v : v;
      }
    }
    return parseNumber(this.text(i));
  }
}

function parseNumber(t: string): number {
  return NUMBER.test(t) ? Number(t) : NaN;
}

/** A copy of `a` in a longer array of its kind (the rest zero). */
function grown<T extends Float64Array | Int32Array>(a: T, length: number): T {
  const out = new (a.constructor as new (n: number) => T)(length);
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

function inputBytes(input: unknown, maxBytes: number): { bytes: Buffer; source?: string } {
  if (input instanceof Uint8Array) {
    const b = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    return { bytes: isGzip(b) ? gunzip(b, 'the CSV bytes', maxBytes) : b };
  }
  if (typeof input !== 'string') return v.fail(TypeError, 'CSV text, a file path or a Uint8Array', 'input', input);
  if (input === '' || /[\r\n]/.test(input)) return { bytes: Buffer.from(input, 'utf8') };
  const raw = readFile(input, 'CSV file', ' (a string without a line break is read as a path)');
  if (input.toLowerCase().endsWith('.gz') && !isGzip(raw)) {
    fileFail('gzip data (the path ends in .gz)', input, `bytes starting ${hex(raw.subarray(0, 2)) || '(empty file)'}`);
  }
  return { bytes: isGzip(raw) ? gunzip(raw, input, maxBytes) : raw, source: input };
}

/**
 * Reads a CSV of numeric features and one label column.
 *
 * `input` is CSV text (a string holding a line break), the bytes of a CSV file (gzip detected by
 * its magic bytes), or a path (any other string); a path ending in `.gz`, or whose content is
 * gzip, is gunzipped. Every column but the label must hold finite numbers (spaces around them
 * are fine). Labels that are all integers in [0, 2^31 − 1) are class ids (C = the largest + 1,
 * at most opts.maxClasses); otherwise every label is a class name, numbered in order of first
 * appearance (classNames).
 *
 * @returns `{ X [n,D], y [n], D, C, featureNames, labelName, classNames?, header }`
 * @throws {TypeError|RangeError} a bad argument or option (label neither a name nor an integer,
 *   a delimiter that is not one ASCII character, a label name with `header: false`, a limit that
 *   is not a positive integer in range, unknown options)
 * @throws {HandgradError} code ERR_FILE, with the 1-based line number where there is one: an
 *   unreadable file, corrupt gzip or gzip inflating past opts.maxBytes, an empty file or a header
 *   alone, fewer than 2 columns or more than opts.maxColumns, a row with another number of cells
 *   than the first, a cell that is not a finite number (naming the column and the cell), an empty
 *   label, more distinct labels than opts.maxClasses or a class id at or above it, an unknown
 *   label column, an unclosed quote
 */
export function readCsv(input: string | Uint8Array, opts: CsvOptions = {}): CsvDataset {
  const oo = v.options('opts', opts, ['label', 'header', 'delimiter', 'maxBytes', 'maxColumns', 'maxClasses']);
  const label = oo.label;
  if (label !== undefined && typeof label !== 'string') {
    if (typeof label !== 'number') v.fail(TypeError, 'a column name or a 0-based column index', 'opts.label', label);
    if (!Number.isInteger(label)) v.fail(RangeError, 'an integer column index', 'opts.label', label);
  }
  const headerOpt = oo.header ?? 'auto';
  if (headerOpt !== 'auto' && typeof headerOpt !== 'boolean') v.fail(TypeError, "'auto', true or false", 'opts.header', headerOpt);
  if (typeof label === 'string' && headerOpt === false) {
    v.fail(RangeError, "true or 'auto' when opts.label is a column name", 'opts.header', false);
  }
  const delimiter = oo.delimiter ?? ',';
  if (typeof delimiter !== 'string') v.fail(TypeError, 'a one-character string', 'opts.delimiter', delimiter);
  const dc = delimiter.charCodeAt(0);
  if (delimiter.length !== 1 || dc > 0x7f || dc === QUOTE || dc === LF || dc === CR) {
    v.fail(RangeError, 'one ASCII character other than a quote or a line break', 'opts.delimiter', delimiter);
  }
  const limits: Limits = {
    maxColumns: limit('opts.maxColumns', oo.maxColumns, MAX_COLUMNS, 2 ** 31 - 1),
    maxClasses: limit('opts.maxClasses', oo.maxClasses, MAX_CLASSES, 2 ** 31 - 1),
  };
  const maxBytes = limit('opts.maxBytes', oo.maxBytes, MAX_GUNZIPPED_BYTES, MAX_BUFFER_BYTES);
  const { bytes, source } = inputBytes(input, maxBytes);
  return parse(bytes, dc, label as string | number | undefined, headerOpt as 'auto' | boolean, limits, source);
}

interface Limits { maxColumns: number; maxClasses: number }

function parse(bytes: Buffer, delim: number, label: string | number | undefined, headerOpt: 'auto' | boolean, limits: Limits, source?: string): CsvDataset {
  const rec = new Records(bytes, delim, source);
  const begin = { pos: rec.pos, line: rec.line };
  if (!rec.next(limits.maxColumns)) fileFail('at least one row of data', 'the CSV', 'an empty file', source);
  const ncols = rec.n;
  const firstLine = rec.recordLine;
  if (ncols < 2) fileFail('at least 2 columns (the features and a label)', `line ${firstLine}`, '1 column', source);
  if (ncols > limits.maxColumns) fileFail(`at most ${limits.maxColumns} columns (opts.maxColumns)`, `line ${firstLine}`, `${ncols}`, source);
  const first = Array.from({ length: ncols }, (_, j) => rec.text(j));
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

  // Header: given, or decided from the first row; when its features are numbers and its label is
  // not, from the second row's label (a second row of another width is refused below either way).
  let header: boolean;
  if (headerOpt !== 'auto') header = headerOpt;
  else if (typeof label === 'string' || firstNums.some((v, j) => j !== li && !Number.isFinite(v))) header = true;
  else if (Number.isFinite(firstNums[li])) header = false;
  else header = rec.next(ncols) && (rec.n !== ncols || Number.isFinite(rec.number(li)));
  Object.assign(rec, header ? afterFirst : begin); // a first row that is data is read again, as any other

  const D = ncols - 1;
  const columnName = (j: number) => (header ? `column ${JSON.stringify(first[j])} (column ${j + 1})` : `column ${j + 1}`);
  // Data rows the bytes can hold: no more than the lines (less the header's), and no more than
  // one per ncols bytes (a row spends ncols − 1 delimiters and a line break). X starts small and
  // doubles up to that as rows are parsed, so a file that claims rows (blank lines, a wide header)
  // costs what it holds.
  const bound = Math.max(1, Math.min(recordBound(bytes) - (header ? 1 : 0), Math.floor((bytes.length + 1) / ncols)));
  let rows = Math.min(bound, FIRST_ROWS);
  let X = new Float64Array(rows * D);
  let ids = new Int32Array(rows); // index of the row's label text in `texts`
  const seen = new Map<string, number>();
  const texts: string[] = [];
  const textLines: number[] = []; // the line on which each label text first appears
  let r = 0;
  while (rec.next(ncols)) {
    if (rec.n !== ncols) fileFail(`${ncols} cells (as on line ${firstLine})`, `line ${rec.recordLine}`, `${rec.n}`, source);
    if (r === rows) {
      rows = Math.max(r + 1, Math.min(bound, 2 * rows)); // past the bound only if it were wrong: never a row dropped
      X = grown(X, rows * D);
      ids = grown(ids, rows);
    }
    let k = r * D;
    for (let j = 0; j < ncols; j++) {
      if (j === li) continue;
      const x = rec.number(j);
      if (!Number.isFinite(x)) {
        const text = rec.text(j);
        const actual = text === '' ? '"" (an empty cell)' : v.describe(text);
        fileFail(Number.isNaN(x) ? 'a number' : 'a finite number', `${columnName(j)} on line ${rec.lines[j]}`, actual, source);
      }
      X[k++] = x;
    }
    const t = rec.text(li);
    if (t === '') fileFail('a label', `${columnName(li)} on line ${rec.lines[li]}`, '"" (an empty cell)', source);
    let id = seen.get(t);
    if (id === undefined) {
      if (texts.length === limits.maxClasses) {
        const what = `at most ${limits.maxClasses} distinct labels (opts.maxClasses)`;
        fileFail(what, `${columnName(li)} on line ${rec.lines[li]}`, `${limits.maxClasses + 1} distinct labels, the last ${v.describe(t)}`, source);
      }
      seen.set(t, (id = texts.length));
      texts.push(t);
      textLines.push(rec.lines[li]);
    }
    ids[r++] = id;
  }
  if (r === 0) fileFail('at least one row of data', 'the CSV', `only a header (line ${firstLine})`, source);

  // Class ids when every label is an integer in range; otherwise names in order of first appearance.
  const values = texts.map(parseNumber);
  const areIds = values.every((v) => Number.isInteger(v) && v >= 0 && v <= MAX_ID);
  const tooBig = areIds ? values.findIndex((v) => v >= limits.maxClasses) : -1;
  if (tooBig >= 0) {
    const what = `class ids below ${limits.maxClasses} (opts.maxClasses)`;
    fileFail(what, `${columnName(li)} on line ${textLines[tooBig]}`, v.describe(texts[tooBig]), source);
  }
  const y = areIds ? Int32Array.from(ids.subarray(0, r), (id) => values[id]) : r === rows ? ids : ids.slice(0, r);
  const C = areIds ? values.reduce((c, v) => Math.max(c, v + 1), 0) : texts.length;
  const all = header ? first : first.map((_, j) => `col${j + 1}`);
  const X_ = r * D === X.length ? X : X.slice(0, r * D);
  return { X: X_, y, D, C, featureNames: all.filter((_, j) => j !== li), labelName: all[li], ...(areIds ? {} : { classNames: texts }), header };
}
