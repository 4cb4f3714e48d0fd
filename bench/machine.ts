// What the figures were measured on: CPU, cores, Node, the OpenBLAS library and its thread count.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { arch, availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { coreBinding, packageRoot } from '../lib/binding';

export interface Machine {
  cpuModel: string;
  cores: number;
  availableParallelism: number;
  platform: string;
  arch: string;
  kernel: string;
  memoryGiB: number;
  node: string;
  v8: string;
  handgrad: string;
  mitata: string;
  /** The OpenBLAS shared library mapped into this process (Linux), null if not found. */
  openblasLibrary: string | null;
  /** null when the native addon is unavailable. */
  openblasThreads: number | null;
  /** OpenBLAS's kernel family here (OPENBLAS_CORETYPE, else its CPU detection); null without the addon. */
  openblasKernels: string | null;
  /** Whether this CPU runs AVX-512 F/BW/DQ/VL, what OpenBLAS's SkylakeX kernels use; null without the addon. */
  avx512: boolean | null;
  /** Empty when float64 products run on BLAS lanes (native/core/lanes.h), else why not; null without the addon. */
  blasLanes: string | null;
  /** The instruction set handgrad's own loops over a layer's values run (native/core/kernels.h: scans, activations, the sparse products); null without the addon. */
  kernelSet: string | null;
  gitCommit: string | null;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  loadAverage: number;
}

function packageVersion(file: string): string {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// Read after the addon is loaded, so the library the dynamic linker picked is in the map
// (libopenblas itself, not the libblas/liblapack shims next to it).
function openblasLibrary(): string | null {
  try {
    const paths = readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .map((line) => line.slice(Math.max(0, line.indexOf('/'))))
      // The process's OpenBLAS, not a BLAS lane's private copy of the serial one (native/core/lanes.h).
      .filter((path) => path.startsWith('/') && !path.includes('/openblas-serial/'));
    return paths.find((p) => /\/libopenblas[^/]*$/.test(p)) ?? paths.find((p) => /\/libblas[^/]*$/.test(p)) ?? null;
  } catch {
    return null;
  }
}

function gitCommit(): string | null {
  try {
    const opts = { cwd: packageRoot, encoding: 'utf8' as const, stdio: ['ignore', 'pipe', 'ignore'] as ['ignore', 'pipe', 'ignore'] };
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], opts).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], opts).trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return null;
  }
}

export function describeMachine(): Machine {
  let threads: number | null = null;
  let kernels: [string, boolean] | null = null;
  let lanes: string | null = null;
  let kernelSet: string | null = null;
  try {
    threads = coreBinding().getNumThreads();
    kernels = coreBinding().blasKernels();
    lanes = coreBinding().getBlasLanes() ? '' : coreBinding().blasLanes() || 'switched off (setBlasLanes(false))';
    kernelSet = coreBinding().getKernelSet();
  } catch {
    // the native addon is unavailable: reported with the backends
  }
  const list = cpus();
  return {
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    cores: list.length,
    availableParallelism: availableParallelism(),
    platform: platform(),
    arch: arch(),
    kernel: release(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    v8: process.versions.v8,
    handgrad: packageVersion(join(packageRoot, 'package.json')),
    mitata: packageVersion(join(packageRoot, 'node_modules', 'mitata', 'package.json')),
    openblasLibrary: threads === null ? null : openblasLibrary(),
    openblasThreads: threads,
    openblasKernels: kernels?.[0] ?? null,
    avx512: kernels?.[1] ?? null,
    blasLanes: lanes,
    kernelSet,
    gitCommit: gitCommit(),
    loadAverage: Math.round(loadavg()[0] * 100) / 100,
  };
}
