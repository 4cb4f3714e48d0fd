// Where a CSV comes from: a path, the bytes of a file, `{ text }`, or (async only) a stream of
// chunks. A bare string is a path, always: text is never guessed from a line break (the old rule
// read a request body without one as a path, and opened a file on the server). A string that holds
// a line break is refused with the way to pass text, never read as something else; a body is
// passed as its bytes, as { text }, or (readCsvAsync) as the request stream itself.
import { HandgradError } from '../errors';
import * as v from '../validate';
import { checkGzPath, gunzip, gunzipAsync, isGzip, readFile, readFileAsyncOrFail } from './files';

/**
 * A CSV path, the bytes of a CSV file (a Buffer, a Uint8Array, or an ArrayBuffer as
 * `await response.arrayBuffer()` gives, or a SharedArrayBuffer, copied first; gzip detected by its
 * magic bytes), or CSV text as `{ text }`.
 */
export type CsvSource = string | Uint8Array | ArrayBuffer | SharedArrayBuffer | { readonly text: string };
/** What readCsvAsync also takes: a stream of chunks (a Readable, an http.IncomingMessage, any async iterable). */
export type CsvAsyncSource = CsvSource | AsyncIterable<Uint8Array | string>;

/** The bytes to parse, and the path to name in errors when there is one. */
export interface CsvBytes {
  bytes: Buffer;
  source?: string;
}

const WHAT = 'a file path, the bytes of a CSV file (a Buffer, Uint8Array or ArrayBuffer) or { text }';

type Resolved = { path: string } | { bytes: Buffer } | { stream: AsyncIterable<Uint8Array | string> };

function resolve(source: unknown, streams: boolean): Resolved {
  // Shared memory is copied once: another thread may write it while the parse reads a cell twice
  // (as text, then as a number). A SharedArrayBuffer is taken as an ArrayBuffer is.
  if (source instanceof Uint8Array) {
    const view = Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    return { bytes: source.buffer instanceof SharedArrayBuffer ? Buffer.from(view) : view };
  }
  if (source instanceof ArrayBuffer) return { bytes: Buffer.from(source) };
  if (source instanceof SharedArrayBuffer) return { bytes: Buffer.from(new Uint8Array(source)) };
  if (typeof source === 'string') {
    if (/[\r\n]/.test(source)) {
      const what = 'a file path (a string is always a path: pass { text } for CSV text, or its bytes)';
      v.fail(TypeError, what, 'source', new v.Received(`a string with a line break, ${v.describe(source)}`));
    }
    return { path: source };
  }
  if (source !== null && typeof source === 'object' && typeof (source as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
    if (!streams) v.fail(TypeError, `${WHAT} (a stream is read by readCsvAsync)`, 'source', source);
    return { stream: source as AsyncIterable<Uint8Array | string> };
  }
  if (source === null || typeof source !== 'object' || Array.isArray(source) || ArrayBuffer.isView(source)) {
    return v.fail(TypeError, streams ? `${WHAT} or an async iterable of chunks` : WHAT, 'source', source);
  }
  const { text } = v.options('source', source, ['text']);
  if (typeof text !== 'string') v.fail(TypeError, 'a string of CSV text', 'source.text', text);
  return { bytes: Buffer.from(text, 'utf8') };
}

/** The bytes of a source, read and gunzipped on the calling thread (readCsv). */
export function sourceBytes(source: unknown, maxBytes: number): CsvBytes {
  const r = resolve(source, false);
  if ('bytes' in r) return { bytes: isGzip(r.bytes) ? gunzip(r.bytes, 'the CSV bytes', maxBytes) : r.bytes };
  if (!('path' in r)) throw new Error('unreachable: streams are refused by resolve');
  const raw = readFile(r.path, 'CSV file');
  checkGzPath(r.path, raw);
  return { bytes: isGzip(raw) ? gunzip(raw, r.path, maxBytes) : raw, source: r.path };
}

/**
 * The bytes of a source, read and gunzipped off the event loop (fs and zlib on libuv's thread
 * pool). Bytes passed in are copied first, so a caller that reuses its buffer cannot change what is
 * parsed; a stream may deliver at most maxBytes.
 */
export async function sourceBytesAsync(source: unknown, maxBytes: number, signal?: AbortSignal): Promise<CsvBytes> {
  const r = resolve(source, true);
  let raw: Buffer;
  let name: string | undefined;
  if ('bytes' in r) raw = Buffer.from(r.bytes);
  else if ('path' in r) {
    raw = await readFileAsyncOrFail(r.path, 'CSV file', signal);
    checkGzPath(r.path, raw);
    name = r.path;
  } else raw = await collect(r.stream, maxBytes, signal);
  signal?.throwIfAborted();
  if (!isGzip(raw)) return { bytes: raw, source: name };
  return { bytes: await gunzipAsync(raw, name ?? 'the CSV bytes', maxBytes), source: name };
}

/**
 * The chunks of a stream, copied (a stream may reuse its buffers), at most maxBytes in all. An
 * abort is seen at once, also while the stream is stalled between chunks; leaving early (an abort,
 * too many bytes, a bad chunk) destroys a Node stream, as `for await` would.
 */
async function collect(stream: AsyncIterable<Uint8Array | string>, maxBytes: number, signal?: AbortSignal): Promise<Buffer> {
  const it = stream[Symbol.asyncIterator]();
  let onAbort: (() => void) | undefined;
  const aborted = signal && new Promise<never>((_, reject) => signal.addEventListener('abort', (onAbort = () => reject(signal.reason)), { once: true }));
  aborted?.catch(() => {}); // observed through the race below
  const chunks: Buffer[] = [];
  let total = 0;
  const add = (b: Buffer) => {
    total += b.length;
    if (total > maxBytes) {
      throw new HandgradError('ERR_FILE', `Expected at most ${maxBytes} bytes (opts.maxBytes) for the CSV stream but received more`);
    }
    chunks.push(b);
  };
  // A string chunk may end between the two halves of a surrogate pair (a stream decoding UTF-16
  // splits anywhere): its high half waits for the next chunk, since encoded alone each half would
  // be U+FFFD. Unpaired in the end (or before a chunk of bytes), it is encoded as readCsv encodes
  // { text } holding it, so both read the same string alike.
  let high = '';
  try {
    for (;;) {
      signal?.throwIfAborted();
      const r = await (aborted ? Promise.race([it.next(), aborted]) : it.next());
      if (r.done) break;
      const chunk: unknown = r.value;
      if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) v.fail(TypeError, 'chunks of bytes or strings', 'the CSV stream', chunk);
      if (typeof chunk === 'string') {
        const text = high + chunk;
        const last = text.charCodeAt(text.length - 1);
        high = last >= 0xd800 && last <= 0xdbff ? text.slice(-1) : '';
        add(Buffer.from(high === '' ? text : text.slice(0, -1), 'utf8'));
      } else {
        if (high !== '') add(Buffer.from(high, 'utf8'));
        high = '';
        add(Buffer.from(chunk));
      }
    }
    if (high !== '') add(Buffer.from(high, 'utf8'));
  } catch (e) {
    // A Node stream is destroyed at once (its iterator's return() would wait for the pending chunk,
    // forever when the sender stalls); another iterable is told to return, not waited for.
    const destroy = (stream as { destroy?: unknown }).destroy;
    if (typeof destroy === 'function') destroy.call(stream);
    else void Promise.resolve(it.return?.()).catch(() => {});
    throw e;
  } finally {
    if (onAbort) signal!.removeEventListener('abort', onAbort);
  }
  return Buffer.concat(chunks, total);
}
