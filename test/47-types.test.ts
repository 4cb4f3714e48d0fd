// The public signatures at compile time: test/types/*.ts is compiled by tsc (strict, the package's
// own tsconfig). Each line under `// @ts-expect-error` must be a type error — a mixed float32/float64
// call, a gradcheck of a gradient function without its point — or tsc reports the directive unused
// and this test fails; every other line (same-dtype calls, a loaded Trainer's params straight into
// predict) must compile.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');
const TYPES = join(__dirname, 'types');

describe('types', () => {
  it('test/types/*.ts compiles, and every @ts-expect-error line in it is an error', () => {
    const files = readdirSync(TYPES).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(0);
    // The file still holds the rejected calls (a file emptied of them would pass vacuously).
    const expected = files.map((f) => readFileSync(join(TYPES, f), 'utf8').match(/@ts-expect-error/g)?.length ?? 0).reduce((a, b) => a + b, 0);
    expect(expected).toBeGreaterThanOrEqual(15);
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(TYPES, 'tsconfig.json'), '--pretty', 'false'], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 200_000);
});
