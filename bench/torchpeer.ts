// The PyTorch peer of the epoch benchmark (bench/peers/pytorch/epoch.py): PyTorch Python trains the
// same net on the same data, one epoch per request, in a process kept alive for the section, so the
// bench alternates its own epochs with PyTorch's in one run instead of quoting a figure measured
// elsewhere. Needs Debian's /usr/bin/python3 with python3-torch (setup installs it when it can); a
// peer that cannot start is reported as skipped with the reason.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { packageRoot } from '../lib/binding';

export const TORCH_PYTHON = '/usr/bin/python3';
const SCRIPT = join(packageRoot, 'bench', 'peers', 'pytorch', 'epoch.py');

export interface TorchPeer {
  /** PyTorch's version and thread count, as the peer reports them. */
  readonly about: string;
  /** Seconds of one epoch, timed inside the peer. */
  epoch(): Promise<number>;
  close(): void;
}

export type TorchPeerSetting = { N: number; D: number; H: number; C: number; batchSize: number; lr: number; threads: number };

/** Why PyTorch Python cannot run here, or null when it can. */
export function torchPeerSkipReason(): string | null {
  const r = spawnSync(TORCH_PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  if (r.error) return `${TORCH_PYTHON} not found`;
  return r.status === 0 ? null : `${TORCH_PYTHON} has no torch/numpy (apt-get install python3-torch)`;
}

/** Starts the peer on X [N,D] and y [N] (written to a temporary folder, removed by close()). */
export async function startTorchPeer(X: Float32Array | Float64Array, y: Int32Array, s: TorchPeerSetting): Promise<TorchPeer> {
  const dir = mkdtempSync(join(tmpdir(), 'handgrad-torch-peer-'));
  const xPath = join(dir, 'X.bin');
  const yPath = join(dir, 'y.bin');
  writeFileSync(xPath, new Uint8Array(X.buffer, X.byteOffset, X.byteLength));
  writeFileSync(yPath, new Uint8Array(y.buffer, y.byteOffset, y.byteLength));
  const dtype = X instanceof Float32Array ? 'float32' : 'float64';
  const child: ChildProcessWithoutNullStreams = spawn(
    TORCH_PYTHON,
    [SCRIPT, dtype, xPath, yPath, ...[s.N, s.D, s.H, s.C, s.batchSize, s.lr, s.threads].map(String)],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await lines.next();
    if (r.done) throw new Error(`the PyTorch peer exited: ${stderr.trim().split('\n').pop() ?? ''}`);
    return r.value;
  };
  const close = () => {
    child.stdin.end();
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const about = await next();
    return {
      about: about.replace(/^ready /, ''),
      async epoch() {
        child.stdin.write('epoch\n');
        return Number(await next());
      },
      close,
    };
  } catch (e) {
    close();
    throw e;
  }
}
