// Staleness by modification time, shared by the build scripts (setup, build-wasm, sanitize).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The newest mtime (ms) of the files at `paths`, folders searched recursively; 0 if none exist. */
export function newestMtime(paths) {
  let newest = 0;
  for (const p of paths) {
    if (!existsSync(p)) continue;
    const st = statSync(p);
    if (st.isDirectory()) newest = Math.max(newest, newestMtime(readdirSync(p).map((e) => join(p, e))));
    else newest = Math.max(newest, st.mtimeMs);
  }
  return newest;
}
