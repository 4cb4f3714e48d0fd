// The first row of a CSV file as the command line sees it, so that `handgrad train` and `handgrad
// predict` can choose columns (and refuse a duplicated, missing or ambiguous one) in terms of the
// flag the user typed (--label, --data, --header) before readCsv runs: readCsv's own errors name
// its options (opts.label), which a user of the command line never wrote.
import { MAX_COLUMNS } from '../data/csv';
import { Records } from '../data/csv-records';
import { sourceBytes } from '../data/csv-source';
import { fileFail, MAX_GUNZIPPED_BYTES } from '../data/files';
import * as v from '../validate';

/** The cells of a CSV's first record and the line it is on. */
export interface FirstRow {
  cells: string[];
  line: number;
}

/**
 * The first record of the CSV at `path`, tokenized by the same Records readCsv uses (quotes, BOM,
 * gzip, blank lines alike); undefined for a file with no records (readCsv then says so itself).
 * The file is read a second time by readCsv: a command line reads one file once per run, and the
 * path keeps readCsv's errors naming the file.
 * @throws {HandgradError} ERR_FILE: unreadable file, corrupt gzip, a header cell that is not UTF-8
 */
export function firstRow(path: string): FirstRow | undefined {
  const { bytes, source } = sourceBytes(path, MAX_GUNZIPPED_BYTES);
  const rec = new Records(bytes, 0x2c, source); // the commands read comma-separated files only
  if (!rec.next(MAX_COLUMNS)) return undefined;
  const n = Math.min(rec.n, MAX_COLUMNS); // a wider row is readCsv's error to report
  return { cells: Array.from({ length: n }, (_, j) => rec.text(j)), line: rec.recordLine };
}

/** The 0-based columns of `cells` spelled exactly `name`. */
export const columnsNamed = (cells: readonly string[], name: string): number[] => cells.flatMap((c, j) => (c === name ? [j] : []));

/** A header for messages: its first 8 names, quoted, and the line. */
export const shownHeader = ({ cells, line }: FirstRow): string =>
  `the header ${cells.slice(0, 8).map((s) => JSON.stringify(s)).join(', ')}${cells.length > 8 ? `, … (${cells.length} columns)` : ''} (line ${line})`;

/** 1-based column numbers for messages: "2 and 3", "1, 4 and 5". */
export const columnList = (at: readonly number[]): string => {
  const n = at.map((j) => String(j + 1));
  return n.length < 2 ? n.join('') : `${n.slice(0, -1).join(', ')} and ${n[n.length - 1]}`;
};

/** --header true|false|auto, as readCsv's opts.header. @throws {RangeError} naming --header */
export function headerFlag(text: string): 'auto' | boolean {
  const h = v.oneOf('--header', text, ['auto', 'true', 'false'] as const, 'auto');
  return h === 'auto' ? 'auto' : h === 'true';
}

/** train's made-up name for file column k (0-based) of a CSV without a header: col1, col2, … */
const MADE_UP = /^col([1-9]\d{0,9})$/;

/** The 0-based file column a made-up name colK stands for; -1 for any other name. */
export function madeUpColumn(name: string): number {
  const m = MADE_UP.exec(name);
  return m ? Number(m[1]) - 1 : -1;
}

/**
 * Column j of the CSV at `path` as numbers, by the very rule readCsv reads a feature column with
 * (Records.number: ASCII spaces and tabs trimmed from an unquoted cell, nothing else): for the
 * one column `handgrad predict` has readCsv take in the label's place when a file has no label
 * column, whose cells readCsv only kept as text. readCsv has read the file first (its widths,
 * its header), so the records here are its `n` data rows.
 * @throws {HandgradError} ERR_FILE: a cell that is not a finite number, in readCsv's words
 */
export function columnNumbers(path: string, j: number, header: boolean, n: number): Float64Array {
  const { bytes, source } = sourceBytes(path, MAX_GUNZIPPED_BYTES);
  const rec = new Records(bytes, 0x2c, source);
  const name = header && rec.next(j + 1) ? `column ${JSON.stringify(rec.text(j))} (column ${j + 1})` : `column ${j + 1}`;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (!rec.next(j + 1)) throw new Error(`unreachable: readCsv read ${n} data rows of ${path}`);
    const x = rec.number(j);
    if (!Number.isFinite(x)) {
      const text = rec.text(j);
      fileFail(Number.isNaN(x) ? 'a number' : 'a finite number', `${name} on line ${rec.lines[j]}`, text === '' ? '"" (an empty cell)' : v.describe(text), source);
    }
    out[i] = x;
  }
  return out;
}
