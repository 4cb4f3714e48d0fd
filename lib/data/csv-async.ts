// readCsvAsync: readCsv without blocking the event loop. The file is read and gunzipped on libuv's
// thread pool; the parse runs on the event loop in slices of a few milliseconds, handing the loop
// back between them (setImmediate), so timers, sockets and other requests keep their latency
// while a large file parses. Slicing keeps one parser (CsvParse), so the result is readCsv's to
// the bit; a worker thread would add a copy of the input and of X and a second module load for
// no gain in what the caller waits (the parse itself is the same work either way).
import { performance } from 'node:perf_hooks';
import * as v from '../validate';
import { CSV_OPTION_KEYS, type CsvDataset, type CsvOptions, CsvParse, csvSettings } from './csv';
import { type CsvAsyncSource, sourceBytesAsync } from './csv-source';

/** What onProgress receives after each slice of parsing (and once at the end). */
export interface CsvProgress {
  /** Bytes of the (gunzipped) input parsed so far. */
  bytes: number;
  /** Bytes of the (gunzipped) input in all. */
  totalBytes: number;
  /** Data rows parsed so far. */
  rows: number;
}

export interface CsvAsyncOptions extends CsvOptions {
  /** Called after each slice of parsing, and once with bytes = totalBytes at the end. */
  onProgress?: (progress: CsvProgress) => void;
  /** Stops the read or the parse: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** The longest the parse holds the event loop at a time, in ms (default 4). */
  sliceMs?: number;
}

const SLICE_MS = 4;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Reads a CSV as readCsv does (the same sources, options, result and errors, to the bit), without
 * blocking the event loop: the file is read and gunzipped off the main thread, and the parse runs
 * in slices of opts.sliceMs between which other work runs. `source` may also be a stream of
 * chunks (a Readable such as an http.IncomingMessage, or any async iterable of Uint8Array or
 * string), taken up to opts.maxBytes. Bytes passed in are copied first.
 *
 * @returns a promise of `{ X [n,D], y [n], D, C, featureNames, labelName, classNames?, header }`
 * @throws (rejects) what readCsv throws; a TypeError for an onProgress that is not a function or a
 *   signal that is not an AbortSignal; the signal's reason when it aborts; what onProgress throws;
 *   an ERR_FILE for a stream longer than opts.maxBytes
 */
export async function readCsvAsync(source: CsvAsyncSource, opts: CsvAsyncOptions = {}): Promise<CsvDataset> {
  const oo = v.options('opts', opts, [...CSV_OPTION_KEYS, 'onProgress', 'signal', 'sliceMs']);
  const settings = csvSettings(oo);
  const { onProgress, signal } = oo;
  if (onProgress !== undefined && typeof onProgress !== 'function') v.fail(TypeError, 'a function', 'opts.onProgress', onProgress);
  if (signal !== undefined && !(signal instanceof AbortSignal)) v.fail(TypeError, 'an AbortSignal', 'opts.signal', signal);
  const sliceMs = oo.sliceMs === undefined ? SLICE_MS : oo.sliceMs; // null is refused, as by every option
  if (typeof sliceMs !== 'number') v.fail(TypeError, 'a number of milliseconds', 'opts.sliceMs', sliceMs);
  if (!(sliceMs > 0 && sliceMs <= 1000)) v.fail(RangeError, 'a number of milliseconds in (0, 1000]', 'opts.sliceMs', sliceMs);
  const report = onProgress as ((p: CsvProgress) => void) | undefined;
  const abort = signal as AbortSignal | undefined;
  abort?.throwIfAborted();

  const { bytes, source: name } = await sourceBytesAsync(source, settings.maxBytes, abort);
  await nextTurn(); // the copy or the gunzip's hand-back was this turn's work
  abort?.throwIfAborted();
  const parse = new CsvParse(bytes, settings, name);
  for (;;) {
    const until = performance.now() + sliceMs;
    const done = parse.run(() => performance.now() >= until);
    report?.({ bytes: parse.position, totalBytes: bytes.length, rows: parse.rowCount });
    if (done) return parse.result();
    await nextTurn();
    abort?.throwIfAborted();
  }
}
