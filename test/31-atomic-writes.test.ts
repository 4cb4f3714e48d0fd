// Every file the package writes is atomic (issue 12): a crash, a kill or a failed write leaves the
// old file or the new one, never a truncated mix, never neither. The kill runs a child process
// that re-saves a checkpoint in a loop, SIGKILLed at moments spread over the save; the failed
// write fills a file-size limit (ulimit -f) half way through the new content.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HandgradError, loadParams, saveSafetensors } from '../lib';
import { thrown } from './helpers';

const ROOT = join(__dirname, '..');
const DIST = join(ROOT, 'dist', 'lib', 'index.js');
const dir = mkdtempSync(join(tmpdir(), 'handgrad-atomic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The names in a folder other than `keep`: a temporary file left behind would show here. */
const others = (folder: string, ...keep: string[]) => readdirSync(folder).filter((n) => !keep.includes(n));

// Re-saves one of two parameter sets (4 MB each) over one path, forever; first writes each to a
// reference file, then says "ready" once the target holds one of them.
const RESAVE_CHILD = `
const lib = require(process.env.HG_DIST);
const [D, H, C] = [500, 1000, 10];
const net = (v) => ({ W1: new Float64Array(D * H).fill(v), b1: new Float64Array(H).fill(v), W2: new Float64Array(H * C).fill(v), b2: new Float64Array(C).fill(v) });
const sets = [net(1), net(2)];
const target = process.env.HG_TARGET;
lib.saveParams(target + '.a', sets[0]);
lib.saveParams(target + '.b', sets[1]);
lib.saveParams(target, sets[0]);
process.stdout.write('ready\\n');
for (let i = 1; ; i++) lib.saveParams(target, sets[i % 2]);
`;

/** Starts the re-saving child, kills it (SIGKILL) `delayMs` after it is ready, and resolves once it is gone. */
function resaveAndKill(target: string, delayMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', RESAVE_CHILD], { env: { ...process.env, HG_DIST: DIST, HG_TARGET: target } });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) setTimeout(() => child.kill('SIGKILL'), delayMs);
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve(err) : reject(new Error(`the child ended with ${code ?? signal}: ${err}`))));
  });
}

describe('a checkpoint re-saved in a loop and SIGKILLed at any moment is always the old or the new file', () => {
  it('12 kills: the file loads and is byte for byte one of the two saves', async () => {
    const folder = join(dir, 'kill');
    mkdirSync(folder);
    const target = join(folder, 'model.safetensors');
    const torn: string[] = [];
    for (let round = 0; round < 12; round++) {
      // Delays spread over several saves (one save of 4 MB takes some milliseconds to tens of them).
      await resaveAndKill(target, 5 + ((round * 37) % 120));
      const got = readFileSync(target);
      const which = [readFileSync(`${target}.a`), readFileSync(`${target}.b`)].findIndex((ref) => ref.equals(got));
      if (which < 0) {
        torn.push(`round ${round}: ${got.length} bytes, neither save`);
        continue;
      }
      const p = loadParams(target);
      expect(p.W1[0]).toBe(which + 1);
      expect(p.b2[p.C - 1]).toBe(which + 1);
    }
    expect(torn).toEqual([]);
  }, 120_000);
});

describe('a failed write leaves the old file intact and no temporary file behind', () => {
  const small = { W: { shape: [4], data: Float64Array.of(1, 2, 3, 4) } };
  const large = { W: { shape: [1 << 17], data: new Float64Array(1 << 17).fill(7) } }; // 1 MB

  it.skipIf(process.platform !== 'linux')('the disk fills half way through (ulimit -f): ERR_FILE, the old file as it was', () => {
    const folder = join(dir, 'efbig');
    mkdirSync(folder);
    const target = join(folder, 'model.safetensors');
    saveSafetensors(target, small);
    const before = readFileSync(target);
    // 256 KiB may be written per file; the new content is 1 MB. (Node ignores SIGXFSZ, so the write fails with EFBIG.)
    const script = `
      const lib = require(process.env.HG_DIST);
      try { lib.saveSafetensors(process.env.HG_TARGET, { W: { shape: [1 << 17], data: new Float64Array(1 << 17).fill(7) } }); console.log('saved'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const r = spawnSync('bash', ['-c', 'ulimit -f 256 && exec "$0" -e "$1"', process.execPath, script], {
      env: { ...process.env, HG_DIST: DIST, HG_TARGET: target }, encoding: 'utf8', timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(target).length).toBe(before.length);
    expect(readFileSync(target).equals(before)).toBe(true);
    expect(others(folder, 'model.safetensors')).toEqual([]);
    const e = JSON.parse(r.stdout) as { code: string; message: string };
    expect(e.code).toBe('ERR_FILE');
    expect(e.message).toBe(`Expected a writable path for ${target} but received EFBIG: file too large`);
  });

  it('a path under a regular file, a folder in the way, a missing folder: ERR_FILE naming the path, nothing left behind', () => {
    const folder = join(dir, 'in-the-way');
    mkdirSync(folder);
    const plain = join(folder, 'plain.txt');
    writeFileSync(plain, 'not a folder');
    const under = join(plain, 'model.safetensors');
    const e1 = thrown(() => saveSafetensors(under, large));
    expect(e1).toBeInstanceOf(HandgradError);
    expect(e1.message).toBe(`Expected a writable path for ${under} but received ENOTDIR: not a directory`);
    // A folder where the file should be (holding a file): the folder and its file stay.
    const asFolder = join(folder, 'model.safetensors');
    mkdirSync(asFolder);
    writeFileSync(join(asFolder, 'keep'), 'kept');
    const e2 = thrown(() => saveSafetensors(asFolder, large));
    expect((e2 as HandgradError).code).toBe('ERR_FILE');
    expect(e2.message).toMatch(new RegExp(`^Expected a writable path for ${asFolder.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} but received E(ISDIR|NOTEMPTY|EXIST)`));
    expect(readFileSync(join(asFolder, 'keep'), 'utf8')).toBe('kept');
    const missing = join(folder, 'no-such-folder', 'model.safetensors');
    expect(thrown(() => saveSafetensors(missing, small)).message).toBe(`Expected a writable path for ${missing} but received ENOENT: no such file or directory`);
    expect(others(folder, 'plain.txt', 'model.safetensors').sort()).toEqual([]);
    expect(readFileSync(plain, 'utf8')).toBe('not a folder');
  });

  it.skipIf(process.platform === 'win32' || process.getuid?.() === 0)('a read-only folder: ERR_FILE, the old file as it was', () => {
    const folder = join(dir, 'read-only');
    mkdirSync(folder);
    const target = join(folder, 'model.safetensors');
    saveSafetensors(target, small);
    const before = readFileSync(target);
    chmodSync(folder, 0o555);
    try {
      expect((thrown(() => saveSafetensors(target, large)) as HandgradError).code).toBe('ERR_FILE');
    } finally {
      chmodSync(folder, 0o755);
    }
    expect(readFileSync(target).equals(before)).toBe(true);
    expect(others(folder, 'model.safetensors')).toEqual([]);
  });
});

describe('an atomic write replaces what a plain write would have', () => {
  it('a symbolic link is written through (the link stays), and the file keeps its permissions', () => {
    const real = join(dir, 'real');
    const links = join(dir, 'links');
    mkdirSync(real);
    mkdirSync(links);
    const target = join(real, 'model.safetensors');
    saveSafetensors(target, { W: { shape: [1], data: Float64Array.of(1) } });
    chmodSync(target, 0o640);
    const link = join(links, 'model.safetensors');
    symlinkSync(target, link);
    saveSafetensors(link, { W: { shape: [1], data: Float64Array.of(2) } });
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(loadParamsW(target)).toBe(2);
    if (process.platform !== 'win32') expect(statSync(target).mode & 0o777).toBe(0o640);
    expect(others(real, 'model.safetensors')).toEqual([]);
    expect(others(links, 'model.safetensors')).toEqual([]);
  });
});

/** W's first element, read from the file's bytes by the format's definition (not by the package). */
function loadParamsW(path: string): number {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const [begin] = (JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as { W: { data_offsets: number[] } }).W.data_offsets;
  return b.readDoubleLE(8 + n + begin);
}

describe('every write in lib goes through lib/io/atomic.ts', () => {
  it('no other module of lib/ writes a file itself', () => {
    const writes = /\b(writeFileSync|writeFile|appendFileSync|appendFile|createWriteStream|openSync|fs\.open)\s*\(/;
    const found: string[] = [];
    const walk = (folder: string) => {
      for (const name of readdirSync(folder, { withFileTypes: true })) {
        const path = join(folder, name.name);
        if (name.isDirectory()) walk(path);
        else if (name.name.endsWith('.ts') && relative(ROOT, path) !== join('lib', 'io', 'atomic.ts')) {
          readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
            // handgrad train's probe of --out: an empty file written and removed at once, never kept.
            // lib/io/regular-file.ts's read-only open (O_RDONLY, no O_CREAT) writes nothing.
            if (writes.test(line) && !/writeFileSync\(probe, ''\)/.test(line) && !/openSync\(path, constants\.O_RDONLY \| NONBLOCK\)/.test(line)) found.push(`${relative(ROOT, path)}:${i + 1}: ${line.trim()}`);
          });
        }
      }
    };
    walk(join(ROOT, 'lib'));
    expect(found).toEqual([]);
  });
});
