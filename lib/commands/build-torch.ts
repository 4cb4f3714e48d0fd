// `handgrad build-torch`: builds the optional LibTorch addon (backend 'torch', verify's reference,
// the distributed process groups) where the package is installed — a consumer's
// node_modules/handgrad included, which has CMakeLists.txt and native/ but not scripts/ — with the
// package's own cmake-js (a dependency for this reason) on the system's cmake and LibTorch.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { packageRoot } from '../binding';
import { loadTorchBinding } from '../backends/torch';
import { HandgradError } from '../errors';
import { type Command, flags, numberFlag } from './command';

const NEEDS = 'needs cmake, a C++17 compiler and LibTorch: `apt-get install -y cmake g++ libtorch-dev`';

const HELP = `usage: handgrad build-torch [options]

Builds the LibTorch addon (backend 'torch', verify's autograd reference) and, where Gloo's
headers are installed (libgloo-dev), the distributed one, with the package's own cmake-js, into
  ${join(packageRoot, 'build-torch', 'Release')}
It needs cmake, a C++17 compiler and LibTorch (apt-get install -y cmake g++ libtorch-dev) and
takes a minute or two. Exit 0 when the LibTorch addon builds and loads, 1 when it does not.

  --jobs N      parallel compile jobs (default: the number of CPUs)
  --dry-run     print the command and the folder it runs in, build nothing
`;

/** The cmake-js script the package depends on, resolved from the package's folder as require would. @throws {HandgradError} ERR_NOT_BUILT */
function cmakeJs(): string {
  let manifest: string;
  try {
    manifest = require.resolve('cmake-js/package.json', { paths: [packageRoot] });
  } catch (cause) {
    throw new HandgradError('ERR_NOT_BUILT', `cmake-js (a dependency of handgrad) is not installed next to ${packageRoot}: reinstall handgrad (npm install handgrad)`, { cause });
  }
  const bin = (JSON.parse(readFileSync(manifest, 'utf8')) as { bin: Record<string, string> }).bin['cmake-js'];
  return join(dirname(manifest), bin);
}

export const buildTorchCommand: Command = {
  summary: 'build the optional LibTorch addon (backend torch, verify\'s reference) with the package\'s cmake-js',
  help: HELP,
  run(argv) {
    const { values } = flags('build-torch', argv, { jobs: { type: 'string' }, 'dry-run': { type: 'boolean', default: false } });
    const jobs = values.jobs === undefined ? availableParallelism() : numberFlag('--jobs', values.jobs, 'a positive integer', (n) => Number.isSafeInteger(n) && n >= 1);
    const args = [cmakeJs(), 'compile', '--out', 'build-torch', '--parallel', String(jobs)];
    process.stdout.write(`handgrad build-torch: ${[process.execPath, ...args].join(' ')}  (in ${packageRoot})\n`);
    if (values['dry-run']) return 0;
    const cmake = spawnSync('cmake', ['--version'], { stdio: 'ignore' });
    if (cmake.error !== undefined || cmake.status !== 0) {
      process.stderr.write(`handgrad build-torch: cmake is not on the PATH (it ${NEEDS})\n`);
      return 1;
    }
    const r = spawnSync(process.execPath, args, { cwd: packageRoot, stdio: 'inherit' });
    const addon = join(packageRoot, 'build-torch', 'Release', 'handgrad_torch.node');
    if (r.status !== 0) {
      process.stderr.write(`handgrad build-torch: cmake-js failed (exit ${r.status ?? r.signal}); it ${NEEDS}\n`);
      return 1;
    }
    // Built is not enough: the addon must load against this machine's libtorch*.so.
    try {
      loadTorchBinding(addon);
    } catch (err) {
      process.stderr.write(`handgrad build-torch: built ${addon}, but ${(err as Error).message}\n`);
      return 1;
    }
    process.stdout.write(`handgrad build-torch: ${addon} builds and loads; backend 'torch' and verify's torch reference are available\n`);
    return 0;
  },
};
