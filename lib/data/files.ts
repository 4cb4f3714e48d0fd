// File reading shared by the loaders: every problem with a file or its content is a HandgradError
// with code ERR_FILE, worded as the rest of the library (Expected {what} for {name} but received {actual}).
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { HandgradError } from '../errors';

/** A HandgradError (code ERR_FILE) in the library's wording, naming the file when there is one. */
export function fileFail(what: string, name: string, actual: string, source?: string): never {
  const where = source === undefined ? '' : ` (${source})`;
  throw new HandgradError('ERR_FILE', `Expected ${what} for ${name} but received ${actual}${where}`);
}

export const isGzip = (b: Uint8Array) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

/** Bytes as hex pairs, for messages: '1f 8b'. */
export const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');

/** fn(), or what it threw as an ERR_FILE: Expected {what} for {name} but received {its message}{hint}. */
export function fileTry<T>(fn: () => T, what: string, name: string, hint = ''): T {
  try {
    return fn();
  } catch (cause) {
    throw new HandgradError('ERR_FILE', `Expected ${what} for ${name} but received ${(cause as Error).message}${hint}`, { cause });
  }
}

/** Gunzips bytes; a corrupt or truncated stream is an ERR_FILE. */
export const gunzip = (b: Uint8Array, source: string): Buffer => fileTry(() => gunzipSync(b), 'valid gzip data', source);

/** Reads a whole file; a missing or unreadable one is an ERR_FILE. */
export const readFile = (path: string, what: string, hint = ''): Buffer => fileTry(() => readFileSync(path), `a readable ${what}`, path, hint);
