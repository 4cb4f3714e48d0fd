// The one way the file readers (safetensors, optimizer, CSV and IDX files) read a file from a path: a
// path is data (a user's argument, or a name read from another file), and /dev/zero, a FIFO or a
// terminal never end — readFileSync on one reads until memory runs out, or waits forever. So the
// file is opened once, without waiting for a FIFO's writer (O_NONBLOCK), fstat'ed on that very
// descriptor (no window between a check by name and the read), refused unless it is a regular
// file within the caller's limit, and exactly its size is read from that descriptor. A file that
// another writer shortens or lengthens meanwhile is refused: its bytes are no state the file was
// ever in (a cut row, a made-up label), and both readers, sync and async, say so alike.
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { MAX_BUFFER_BYTES } from '../data/files';
import { HandgradError } from '../errors';

/** O_NONBLOCK where the platform has it (not on Windows, which has no FIFOs to wait on). */
const NONBLOCK = (constants as { O_NONBLOCK?: number }).O_NONBLOCK ?? 0;

/**
 * The bytes of the regular file at `path`, at most `maxBytes` of them.
 * @param what the file's role, for messages ('safetensors file', 'optimizer state file')
 * @param hint appended to the message of a file that cannot be read (the way out)
 * @throws {HandgradError} code ERR_FILE: missing or unreadable, not a regular file (a folder, a
 *   device, a FIFO, a socket), larger than maxBytes, or changed size while read (fewer bytes than
 *   its size said, or a byte past it)
 */
export function readRegularFile(path: string, what: string, hint = '', maxBytes: number = MAX_BUFFER_BYTES): Buffer {
  const fail = failure(path, hint);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | NONBLOCK);
  } catch (cause) {
    return fail(`a readable ${what}`, (cause as Error).message, cause);
  }
  try {
    const st = fstatSync(fd);
    checkStat(st, what, maxBytes, fail);
    const out = Buffer.allocUnsafe(st.size);
    let at = 0;
    while (at < st.size) {
      const n = readSync(fd, out, at, st.size - at, at);
      if (n === 0) shrank(st.size, at, what, fail);
      at += n;
    }
    if (readSync(fd, Buffer.allocUnsafe(1), 0, 1, st.size) !== 0) grew(st.size, what, fail);
    return out;
  } catch (cause) {
    if (cause instanceof HandgradError) throw cause;
    return fail(`a readable ${what}`, (cause as Error).message, cause);
  } finally {
    closeSync(fd);
  }
}

type Fail = (expected: string, got: string, cause?: unknown) => never;

const failure = (path: string, hint: string): Fail => (expected, got, cause) => {
  throw new HandgradError('ERR_FILE', `Expected ${expected} for ${path} but received ${got}${hint}`, cause === undefined ? undefined : { cause });
};

/** The file ended at `at`, before the `size` bytes its fstat said: another writer cut it. */
const shrank = (size: number, at: number, what: string, fail: Fail): never => fail(`the ${size} bytes its size said (the ${what})`, `${at} (the file shrank while read)`);

/** A byte past the `size` its fstat said: another writer lengthened (or rewrote) it, and the first `size` bytes may end mid-record. */
const grew = (size: number, what: string, fail: Fail): never => fail(`the ${size} bytes its size said (the ${what})`, 'more (the file grew while read)');

/** A regular file within maxBytes, by the fstat of the open descriptor; else fail names what it is. */
function checkStat(st: Stats, what: string, maxBytes: number, fail: Fail): void {
  if (!st.isFile()) {
    const kind = st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a FIFO (named pipe)' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'something else';
    fail(`a regular file (the ${what})`, kind);
  }
  if (st.size > maxBytes) fail(`a file of at most ${maxBytes} bytes (the ${what})`, `${st.size} bytes`);
}

/** What the async reader asks of the thread pool at a time: an abort is seen between two reads. */
const CHUNK_BYTES = 8 * 2 ** 20;

/**
 * readRegularFile without blocking the event loop (the CSV reader's async path): the same checks on
 * the open descriptor, then exactly its size read on libuv's thread pool, and the same refusal of a
 * file that shrank or grew meanwhile (FileHandle.readFile would read whatever is there then: a file
 * cut after the check came back as a shorter file); an abort rejects with the signal's reason.
 */
export async function readRegularFileAsync(path: string, what: string, signal?: AbortSignal, maxBytes: number = MAX_BUFFER_BYTES): Promise<Buffer> {
  const fail = failure(path, '');
  let file: FileHandle;
  try {
    file = await open(path, constants.O_RDONLY | NONBLOCK);
  } catch (cause) {
    if (signal?.aborted) throw signal.reason;
    return fail(`a readable ${what}`, (cause as Error).message, cause);
  }
  try {
    const st = await file.stat();
    checkStat(st, what, maxBytes, fail);
    const out = Buffer.allocUnsafe(st.size);
    let at = 0;
    while (at < st.size) {
      signal?.throwIfAborted();
      const { bytesRead } = await file.read(out, at, Math.min(CHUNK_BYTES, st.size - at), at);
      if (bytesRead === 0) shrank(st.size, at, what, fail);
      at += bytesRead;
    }
    if ((await file.read(Buffer.allocUnsafe(1), 0, 1, st.size)).bytesRead !== 0) grew(st.size, what, fail);
    signal?.throwIfAborted();
    return out;
  } catch (cause) {
    if (signal?.aborted) throw signal.reason;
    if (cause instanceof HandgradError) throw cause;
    return fail(`a readable ${what}`, (cause as Error).message, cause);
  } finally {
    await file.close();
  }
}
