// Every file the package writes goes through here, so that a crash, a kill or a full disk in the
// middle of a write leaves the old file or the new one, never a truncated mix of the two:
//   write a temporary file in the target's folder, fsync it, rename it over the target, fsync the folder.
// rename(2) within one file system replaces the name atomically; the first fsync makes the bytes
// durable before the name points at them, the second makes the rename itself durable. The temporary
// file lives in the same folder because a rename across file systems is a copy, not atomic.
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fsyncSync, openSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { HandgradError } from '../errors';

/**
 * Writes `content` to `path` atomically (see above). A symbolic link is followed (its target is
 * replaced, as writeFileSync would write through it), and an existing file keeps its permissions.
 * @throws {HandgradError} code ERR_FILE: the folder is missing or not writable, the path is under a
 *   regular file or is a folder, the disk is full, … — the old file is then left as it was, and the
 *   temporary file is removed
 */
export function writeFileAtomic(path: string, content: Uint8Array | string): void {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  let target = path;
  let mode: number | undefined;
  try {
    target = realpathSync(path);
    mode = statSync(target).mode & 0o7777;
  } catch {
    // No file there yet (or a dangling link: written where it is): created with the default mode.
  }
  const dir = dirname(target);
  // Unique per process, thread and call, hidden, and named after the target so that a leftover
  // (the process killed between open and rename) says where it came from.
  const temp = join(dir, `.${basename(target)}.${process.pid}-${threadId}-${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  let created = false;
  try {
    fd = openSync(temp, 'wx');
    created = true;
    if (mode !== undefined) fchmodSync(fd, mode);
    for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at, bytes.length - at);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(temp, target);
    created = false;
    syncFolder(dir);
  } catch (cause) {
    if (fd !== undefined) closeQuietly(fd);
    if (created) removeQuietly(temp);
    throw new HandgradError('ERR_FILE', `Expected a writable path for ${path} but received ${reason(cause)}`, { cause });
  }
}

/** 'ENOENT: no such file or directory': Node's message without the syscall and the temporary file's name. */
function reason(cause: unknown): string {
  const e = cause as NodeJS.ErrnoException;
  return e.code !== undefined && e.syscall !== undefined ? e.message.replace(new RegExp(`, ${e.syscall}( .*)?$`, 's'), '') : String(e?.message ?? e);
}

/** fsync of a folder makes a rename in it durable; Windows cannot open a folder, and has no need to. */
function syncFolder(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already failing: the first error is the one reported.
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already failing: the first error is the one reported.
  }
}
