// `handgrad launch --nproc N [...] script.mjs [args]`: torchrun's job for Node scripts. Starts N
// ranks of the script with the environment distributed.init() reads (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT) and supervises them: when one fails the
// others are stopped (a rank whose peer died would otherwise wait out its timeout) and the launch
// exits with the failed rank's code; SIGINT/SIGTERM are passed on to every rank.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { constants } from 'node:os';
import * as v from '../validate';
import { type Command, flags, Interrupted, numberFlag } from './command';

const HELP = `usage: handgrad launch --nproc N [options] SCRIPT [ARGS...]

Runs N copies of the Node script SCRIPT on this machine, rank r with the environment that
distributed.init() (and torch.distributed's env://) reads: RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT. When one rank fails the others are
stopped (SIGTERM, then SIGKILL after 5 s) and the launch exits with that rank's code; SIGINT and
SIGTERM are passed on to every rank. With nproc > 1, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS
default to 1 (as torchrun does): N ranks each using every core would oversubscribe them.

  --nproc N              ranks on this machine (required)
  --nnodes M             machines in the job (default 1)
  --node-rank R          this machine's index in [0, M) (default 0)
  --master-addr A        host of rank 0's store (default 127.0.0.1)
  --master-port P        its port (default: a free port with one machine, else 29500)
`;

const KILL_AFTER_MS = 5000;

/** Splits argv at the script: the launcher's flags before it, the script and its own arguments after. */
function splitAtScript(argv: string[]): { own: string[]; script?: string; args: string[] } {
  const withValue = new Set(['--nproc', '--nnodes', '--node-rank', '--master-addr', '--master-port']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return { own: argv.slice(0, i), script: argv[i + 1], args: argv.slice(i + 2) };
    if (!a.startsWith('-')) return { own: argv.slice(0, i), script: a, args: argv.slice(i + 1) };
    if (withValue.has(a)) i++;
  }
  return { own: argv, args: [] };
}

/** A TCP port free on `host` now (the kernel's pick; a race with other programs is possible but rare). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? constants.signals[signal] ?? 0 : 0);
}

export const launchCommand: Command = {
  summary: 'run N ranks of a Node script with the distributed environment, supervised (torchrun for Node)',
  help: HELP,
  async run(argv) {
    const { own, script, args } = splitAtScript(argv);
    const { values } = flags('launch', own, {
      nproc: { type: 'string' },
      nnodes: { type: 'string', default: '1' },
      'node-rank': { type: 'string', default: '0' },
      'master-addr': { type: 'string', default: '127.0.0.1' },
      'master-port': { type: 'string' },
    });
    if (script === undefined) v.fail(TypeError, 'a script to run (handgrad launch --nproc N SCRIPT [ARGS...])', 'the arguments', new v.Received('none'));
    if (values.nproc === undefined) v.fail(TypeError, 'the number of ranks on this machine', '--nproc', new v.Received('none'));
    const positive = (n: number) => Number.isInteger(n) && n >= 1 && n <= 4096;
    const nproc = numberFlag('--nproc', values.nproc, 'an integer in [1, 4096]', positive);
    const nnodes = numberFlag('--nnodes', values.nnodes, 'an integer in [1, 4096]', positive);
    const nodeRank = numberFlag('--node-rank', values['node-rank'], `an integer in [0, ${nnodes})`, (n) => Number.isInteger(n) && n >= 0 && n < nnodes);
    const masterAddr = values['master-addr'];
    const masterPort = values['master-port'] === undefined
      ? nnodes === 1 ? await freePort(masterAddr) : 29500
      : numberFlag('--master-port', values['master-port'], 'an integer in [1, 65535]', (n) => Number.isInteger(n) && n >= 1 && n <= 65535);

    const base: NodeJS.ProcessEnv = { ...process.env };
    if (nproc > 1) {
      base.OMP_NUM_THREADS ??= '1';
      base.OPENBLAS_NUM_THREADS ??= '1';
    }
    const ranks: ChildProcess[] = [];
    let failed: { rank: number; code: number } | undefined;
    let interrupted: 'SIGINT' | 'SIGTERM' | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const alive = () => ranks.filter((c) => c.exitCode === null && c.signalCode === null);
    const stopAll = (signal: NodeJS.Signals) => {
      for (const c of alive()) c.kill(signal);
      killTimer ??= setTimeout(() => alive().forEach((c) => c.kill('SIGKILL')), KILL_AFTER_MS);
    };
    const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
      interrupted ??= signal;
      stopAll(signal);
    };
    const onInt = () => onSignal('SIGINT');
    const onTerm = () => onSignal('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    try {
      const exits = Array.from({ length: nproc }, (_, local) => {
        const rank = nodeRank * nproc + local;
        const env = {
          ...base, RANK: String(rank), WORLD_SIZE: String(nnodes * nproc), LOCAL_RANK: String(local), LOCAL_WORLD_SIZE: String(nproc),
          GROUP_RANK: String(nodeRank), MASTER_ADDR: masterAddr, MASTER_PORT: String(masterPort),
        };
        const child = spawn(process.execPath, [script, ...args], { env, stdio: 'inherit' });
        ranks.push(child);
        return new Promise<void>((resolve) => {
          child.once('error', (err) => {
            if (!failed) failed = { rank, code: 1 };
            process.stderr.write(`handgrad launch: rank ${rank} could not start: ${err.message}\n`);
            stopAll('SIGTERM');
            resolve();
          });
          child.once('exit', (code, signal) => {
            const status = exitCodeOf(code, signal);
            if (status !== 0 && !failed && !interrupted) {
              failed = { rank, code: status };
              process.stderr.write(`handgrad launch: rank ${rank} ${code !== null ? `exited with code ${code}` : `was killed by ${signal}`}; stopping the other ranks\n`);
              stopAll('SIGTERM');
            }
            resolve();
          });
        });
      });
      await Promise.all(exits);
    } finally {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      if (killTimer) clearTimeout(killTimer);
    }
    if (interrupted) throw new Interrupted(interrupted, `stopped by ${interrupted}; the ranks were sent it too`);
    return failed ? Math.max(1, failed.code) : 0;
  },
};
