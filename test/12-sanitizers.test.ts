// The sanitizer job (scripts/sanitize.mjs, also `npm run test:sanitize`) as part of `npm test`: the
// core addon built with AddressSanitizer + UndefinedBehaviorSanitizer, loaded into Node under the
// ASan runtime, through the fixtures, a bad-input battery on every raw export, worker threads and
// 10 000 calls of each export, with LeakSanitizer at exit. It takes about 30 s on 2 cores (the
// build is reused while native/ is unchanged). Linux only: the ASan runtime is preloaded into Node.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');

describe.runIf(process.platform === 'linux')('sanitizers', () => {
  it('ASan + UBSan + LSan: no report involving the addon, and the battery passes', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'sanitize.mjs')], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 280_000,
      maxBuffer: 64 << 20,
    });
    const report = `exit ${r.status} ${r.signal ?? ''}\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-6000)}`;
    expect(r.error, report).toBeUndefined();
    expect(r.status, report).toBe(0);
    expect(r.stdout, report).toMatch(/^SANITIZE-OK \{"checks":\d+/m);
    expect(r.stderr, report).toMatch(/passed: no AddressSanitizer, UndefinedBehaviorSanitizer or LeakSanitizer report/);
  }, 300_000);
});
