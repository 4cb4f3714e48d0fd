// The records of a CSV file, one at a time, and its cells as text or numbers: the tokenizer under
// readCsv and readCsvAsync (both drive the same Records, so they give the same bits).
//
// Minimal RFC 4180: a field that starts with a double quote (after optional spaces) runs to the
// next lone quote, may hold delimiters and line breaks, and writes a quote as "". Records end at
// \n, \r\n or a lone \r; empty (or blank) lines are skipped; a UTF-8 byte order mark is dropped.
// Cells are spans of the input, decoded one at a time (a quote, a delimiter or a line break is one
// ASCII byte, never part of a multi-byte UTF-8 character).
import { isUtf8 } from 'node:buffer';
import * as v from '../validate';
import { fileFail, hex } from './files';

export const [QUOTE, LF, CR, SP, TAB] = [0x22, 0x0a, 0x0d, 0x20, 0x09];
const [MINUS, PLUS, DOT, ZERO] = [0x2d, 0x2b, 0x2e, 0x30];
// Linear on any text: each digit can be matched one way only (\d+\.?\d* could split a run of
// digits n ways, and backtracked quadratically on "1111…1x": 2 s for 40,000 digits).
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const TWO_53 = 2 ** 53;
const POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];

/** The records of a CSV file, one at a time; the cells of the current one are spans of the bytes. */
export class Records {
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

  /**
   * The text of cell i: a quoted cell as written (with "" undone), another cell trimmed of ASCII
   * spaces and tabs only (String.prototype.trim would also drop a no-break space, a vertical tab or
   * a stray BOM: "1\u00a0" would read as 1, and the labels "cat" and "cat\u00a0" as one class).
   * Bytes that are not UTF-8 are an ERR_FILE: decoded, they would become U+FFFD, and the Latin-1
   * labels "café" and "cafè" one class.
   */
  text(i: number): string {
    const b = this.b;
    let s = this.starts[i];
    let e = this.ends[i];
    if (!this.quoted[i]) {
      while (s < e && (b[s] === SP || b[s] === TAB)) s++;
      while (e > s && (b[e - 1] === SP || b[e - 1] === TAB)) e--;
    }
    const t = b.toString('utf8', s, e);
    // Only text holding U+FFFD can come from bad bytes (a file may also hold U+FFFD itself, as EF BF BD).
    if (t.includes('\uFFFD') && !isUtf8(b.subarray(s, e))) {
      const shown = hex(b.subarray(s, Math.min(e, s + 16))) + (e - s > 16 ? ' …' : '');
      fileFail('UTF-8 text (convert a Latin-1 or other file to UTF-8)', `column ${i + 1} on line ${this.lines[i]}`, `bytes ${shown}, not valid UTF-8`, this.source);
    }
    return this.quoted[i] && t.includes('"') ? t.replaceAll('""', '"') : t;
  }

  /** Cell i as a number: NaN when it is not one (±Infinity when it overflows). */
  number(i: number): number {
    if (this.quoted[i]) return parseNumber(this.text(i));
    const b = this.b;
    let s = this.starts[i];
    let e = this.ends[i];
    while (s < e && (b[s] === SP || b[s] === TAB)) s++;
    while (e > s && (b[e - 1] === SP || b[e - 1] === TAB)) e--;
    // Fast path, no string: [sign] digits [. digits] [e [sign] digits] whose digits M stay below
    // 2^53 (every partial M·10 + c is then an exact integer: were one rounded, it and all after it
    // would be ≥ 2^53), so M·10^k (|k| ≤ 22, 10^k exact) is one correctly rounded operation: the
    // same double as Number(text) (Clinger's fast path; 16-digit doubles qualify, not only 15).
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
    if (p === e && digits > 0) {
      const k = exp - Math.max(frac, 0);
      if (m < TWO_53 && k >= -22 && k <= 22) {
        const v = k === 0 ? m : k > 0 ? m * POW10[k] : m / POW10[-k];
        return neg ? -v : v;
      }
      // The scan above accepted exactly NUMBER's grammar (a sign, digits with at most one point,
      // an exponent of at most 4 digits), all ASCII: Number() of the span as latin1 is the same
      // double as parseNumber(text()), without the UTF-8 decode, the trim and the regex (17-digit
      // doubles as pandas and numpy write them land here: half the time of the file went there).
      return Number(b.toString('latin1', s, e));
    }
    return parseNumber(this.text(i));
  }
}

export function parseNumber(t: string): number {
  return NUMBER.test(t) ? Number(t) : NaN;
}
