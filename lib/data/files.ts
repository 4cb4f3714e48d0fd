// File reading shared by the loaders: every problem with a file or its content is a HandgradError
// with code ERR_FILE, worded as the rest of the library (Expected {what} for {name} but received {actual}).
import { constants } from 'node:buffer';
import { gunzip as zlibGunzip, gunzipSync } from 'node:zlib';
import { HandgradError } from '../errors';
import { readRegularFile, readRegularFileAsync } from '../io/regular-file';

/** A HandgradError (code ERR_FILE) in the library's wording, naming the file when there is one. */
export function fileFail(what: string, name: string, actual: string, source?: string): never {
  const where = source === undefined ? '' : ` (${source})`;
  throw new HandgradError('ERR_FILE', `Expected ${what} for ${name} but received ${actual}${where}`);
}

export const isGzip = (b: Uint8Array) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

/** Bytes as hex pairs, for messages: '1f 8b'. */
export const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');

/** A path ending in .gz must hold gzip: anything else there is a wrong or half-written file, refused. */
export function checkGzPath(path: string, raw: Uint8Array): void {
  if (path.toLowerCase().endsWith('.gz') && !isGzip(raw)) {
    fileFail('gzip data (the path ends in .gz)', path, `bytes starting ${hex(raw.subarray(0, 2)) || '(empty file)'}`);
  }
}

/** fn(), or what it threw as an ERR_FILE: Expected {what} for {name} but received {its message}{hint}. */
export function fileTry<T>(fn: () => T, what: string, name: string, hint = ''): T {
  try {
    return fn();
  } catch (cause) {
    throw new HandgradError('ERR_FILE', `Expected ${what} for ${name} but received ${(cause as Error).message}${hint}`, { cause });
  }
}

/**
 * The default cap on what gzip input may inflate to: 1 GiB. gzip inflates up to 1032:1, so a 1 MB
 * file can claim a gigabyte; the largest IDX set in common use (EMNIST ByClass images, 547 MB)
 * still fits. opts.maxBytes raises or lowers it.
 */
export const MAX_GUNZIPPED_BYTES = 2 ** 30;
/** What opts.maxBytes may be: the largest Buffer Node can make. */
export const MAX_BUFFER_BYTES = constants.MAX_LENGTH;

/**
 * Gunzips bytes, stopping as soon as the output passes `maxBytes` (zlib's maxOutputLength is
 * checked chunk by chunk while inflating, so memory never holds much more than the cap): a gzip
 * bomb costs at most the cap, not what it claims. A corrupt, truncated or too large stream is an ERR_FILE.
 */
export function gunzip(b: Uint8Array, source: string, maxBytes: number = MAX_GUNZIPPED_BYTES): Buffer {
  try {
    return gunzipSync(b, { maxOutputLength: maxBytes });
  } catch (cause) {
    throw gunzipError(cause, source, maxBytes);
  }
}

/** gunzip() on libuv's thread pool: the event loop stays free while a large file inflates. */
export function gunzipAsync(b: Uint8Array, source: string, maxBytes: number = MAX_GUNZIPPED_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zlibGunzip(b, { maxOutputLength: maxBytes }, (cause, out) => (cause ? reject(gunzipError(cause, source, maxBytes)) : resolve(out)));
  });
}

function gunzipError(cause: unknown, source: string, maxBytes: number): HandgradError {
  if ((cause as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
    const what = `gzip data of at most ${maxBytes} bytes once gunzipped (opts.maxBytes)`;
    return new HandgradError('ERR_FILE', `Expected ${what} for ${source} but received more (a gzip bomb, or raise opts.maxBytes)`, { cause });
  }
  return new HandgradError('ERR_FILE', `Expected valid gzip data for ${source} but received ${(cause as Error).message}`, { cause });
}

/** Reads a whole regular file (lib/io/regular-file.ts: /dev/zero or a FIFO never end); a missing, unreadable or other one is an ERR_FILE. */
export const readFile = (path: string, what: string, hint = ''): Buffer => readRegularFile(path, what, hint);

/** readFile() without blocking the event loop; an abort rejects with the signal's reason. */
export const readFileAsyncOrFail = (path: string, what: string, signal?: AbortSignal): Promise<Buffer> => readRegularFileAsync(path, what, signal);
