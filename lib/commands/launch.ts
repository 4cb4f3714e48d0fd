// `handgrad launch --nproc N [...] script.mjs [args]`: torchrun's job for Node scripts. Starts N
// ranks of the script with the environment distributed.init() reads (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT) and supervises them: when one fails the
// others are stopped (a rank whose peer died would otherwise wait out its timeout) and the launch
// exits with the failed rank's code; SIGINT/SIGTERM are passed on to every rank. With
// --max-restarts N, a failed set is started again as a whole, up to N times (torchrun's rule: a
// process group cannot take a rank back, so every rank starts over and resumes from the job's
// checkpoint), each time on a fresh MASTER_PORT and with the restart's number in the environment.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import * as v from '../validate';
import { type Command, flags, Interrupted, numberFlag } from './command';

const HELP = `usage: handgrad launch --nproc N [options] SCRIPT [ARGS...]

Runs N copies of the Node script SCRIPT on this machine, rank r with the environment that
distributed.init() (and torch.distributed's env://) reads: RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT. When one rank fails the others are
stopped (SIGTERM after 2 s unless they end first, SIGKILL 5 s later) and the launch exits with
that rank's code; SIGINT and SIGTERM are passed on to every rank. With nproc > 1,
OMP_NUM_THREADS and OPENBLAS_NUM_THREADS default to 1 (as torchrun does): N ranks each using
every core would oversubscribe them.

With --max-restarts R (torchrun's option), a failure stops every rank and starts the whole set
again, up to R times, each time on a new MASTER_PORT; the ranks see the attempt's number in
HANDGRAD_RESTART_COUNT and TORCHELASTIC_RESTART_COUNT (0 on the first) and R in
TORCHELASTIC_MAX_RESTARTS. The script resumes from its checkpoint: fit's checkpoint option
({ path, every }: rank 0 saves during the fit, and once more when the fit fails), and every rank
starts with Trainer.load(path, { distributed: true }) when the file exists. With several
machines, every machine's launch must restart (its ranks fail when a peer dies): attempt k uses
--master-port + k on all of them.

  --nproc N              ranks on this machine (required)
  --nnodes M             machines in the job (default 1)
  --node-rank R          this machine's index in [0, M) (default 0)
  --master-addr A        host of rank 0's store (default 127.0.0.1)
  --master-port P        its port (default: a free port with one machine, new at each restart,
                         else 29500); attempt k uses P + k
  --max-restarts R       start the ranks again after a failure, up to R times (default 0)
`;

const KILL_AFTER_MS = 5000;
// After a rank fails, the others get this long to end on their own before SIGTERM: a peer's death
// fails their collectives at once, and a fit with a checkpoint option then saves the step it holds
// (a SIGTERM first would lose it). A hung rank's peers wait out their timeout: they are stopped.
const GRACE_MS = 2000;

/** Splits argv at the script: the launcher's flags before it, the script and its own arguments after. */
function splitAtScript(argv: string[]): { own: string[]; script?: string; args: string[] } {
  const withValue = new Set(['--nproc', '--nnodes', '--node-rank', '--master-addr', '--master-port', '--max-restarts']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return { own: argv.slice(0, i), script: argv[i + 1], args: argv.slice(i + 2) };
    if (!a.startsWith('-')) return { own: argv.slice(0, i), script: a, args: argv.slice(i + 1) };
    if (withValue.has(a)) i++;
  }
  return { own: argv, args: [] };
}

/** Whether `node script` finds its file: node resolves its main script as require.resolve does an absolute path. */
function runnable(script: string): boolean {
  try {
    require.resolve(resolve(script));
    return true;
  } catch {
    return false;
  }
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

/** How one attempt ended: every rank exited 0, one failed (its rank and exit code), or a signal stopped the launch. */
type Attempt = { failed?: { rank: number; code: number }; interrupted?: 'SIGINT' | 'SIGTERM' };

interface Job {
  script: string; args: string[]; nproc: number; nnodes: number; nodeRank: number; masterAddr: string;
  maxRestarts: number; base: NodeJS.ProcessEnv;
}

/**
 * One start of the N ranks on `masterPort`, supervised to the end: when one fails the others are
 * stopped, and a SIGINT or SIGTERM to the launch is passed on to every rank.
 */
async function attempt(job: Job, masterPort: number, restart: number): Promise<Attempt> {
  const { script, args, nproc, nnodes, nodeRank, masterAddr, base } = job;
  const ranks: ChildProcess[] = [];
  const result: Attempt = {};
  let killTimer: NodeJS.Timeout | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  const alive = () => ranks.filter((c) => c.exitCode === null && c.signalCode === null);
  const stopAll = (signal: NodeJS.Signals) => {
    for (const c of alive()) c.kill(signal);
    killTimer ??= setTimeout(() => alive().forEach((c) => c.kill('SIGKILL')), KILL_AFTER_MS);
  };
  const onSignal = (signal: 'SIGINT' | 'SIGTERM') => {
    result.interrupted ??= signal;
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
        // torchrun's names, and ours: which start of the set this is (0 the first), and the most there will be.
        HANDGRAD_RESTART_COUNT: String(restart), TORCHELASTIC_RESTART_COUNT: String(restart), TORCHELASTIC_MAX_RESTARTS: String(job.maxRestarts),
      };
      const child = spawn(process.execPath, [script, ...args], { env, stdio: 'inherit' });
      ranks.push(child);
      return new Promise<void>((resolve) => {
        child.once('error', (err) => {
          if (!result.failed) result.failed = { rank, code: 1 };
          process.stderr.write(`handgrad launch: rank ${rank} could not start: ${err.message}\n`);
          stopAll('SIGTERM');
          resolve();
        });
        child.once('exit', (code, signal) => {
          const status = exitCodeOf(code, signal);
          if (status !== 0 && !result.failed && !result.interrupted) {
            result.failed = { rank, code: status };
            process.stderr.write(`handgrad launch: rank ${rank} ${code !== null ? `exited with code ${code}` : `was killed by ${signal}`}; stopping the other ranks (SIGTERM in ${GRACE_MS / 1000} s unless they end first)\n`);
            graceTimer = setTimeout(() => stopAll('SIGTERM'), GRACE_MS);
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
    if (graceTimer) clearTimeout(graceTimer);
  }
  return result;
}

export const launchCommand: Command = {
  summary: 'run N ranks of a Node script with the distributed environment, supervised, restarted on failure (torchrun for Node)',
  help: HELP,
  async run(argv) {
    const { own, script, args } = splitAtScript(argv);
    const { values } = flags('launch', own, {
      nproc: { type: 'string' },
      nnodes: { type: 'string', default: '1' },
      'node-rank': { type: 'string', default: '0' },
      'master-addr': { type: 'string', default: '127.0.0.1' },
      'master-port': { type: 'string' },
      'max-restarts': { type: 'string', default: '0' },
    });
    if (script === undefined) v.fail(TypeError, 'a script to run (handgrad launch --nproc N SCRIPT [ARGS...])', 'the arguments', new v.Received('none'));
    // N ranks that each die of MODULE_NOT_FOUND (and a restart that repeats it) say less than this.
    if (!runnable(script)) v.fail(RangeError, 'a script that node can run (a file, or a folder with an index or package.json main)', 'SCRIPT', new v.Received(JSON.stringify(script)));
    if (values.nproc === undefined) v.fail(TypeError, 'the number of ranks on this machine', '--nproc', new v.Received('none'));
    const positive = (n: number) => Number.isInteger(n) && n >= 1 && n <= 4096;
    const nproc = numberFlag('--nproc', values.nproc, 'an integer in [1, 4096]', positive);
    const nnodes = numberFlag('--nnodes', values.nnodes, 'an integer in [1, 4096]', positive);
    const nodeRank = numberFlag('--node-rank', values['node-rank'], `an integer in [0, ${nnodes})`, (n) => Number.isInteger(n) && n >= 0 && n < nnodes);
    const maxRestarts = numberFlag('--max-restarts', values['max-restarts'], 'an integer in [0, 1000]', (n, text) => /^\s*\d+\s*$/.test(text) && n <= 1000);
    const masterAddr = values['master-addr'];
    // The first attempt's port; restart k uses a new free one (one machine, no port given), else
    // the given (or default) port + k, which every machine's launch computes alike.
    const portText = values['master-port'];
    const givenPort = portText === undefined ? undefined
      : numberFlag('--master-port', portText, `an integer in [1, ${65535 - maxRestarts}] (the port + --max-restarts must be a port too)`, (n) => Number.isInteger(n) && n >= 1 && n + maxRestarts <= 65535);
    const portOf = async (restart: number) => {
      if (givenPort !== undefined || nnodes > 1) return (givenPort ?? 29500) + restart;
      try {
        return await freePort(masterAddr);
      } catch (cause) {
        // One machine: rank 0 serves the store here, so the address must be one of this machine's.
        return v.fail(RangeError, `an address of this machine (with --nnodes 1 rank 0 serves the store here; no port could be opened on it: ${(cause as Error).message})`, '--master-addr', new v.Received(JSON.stringify(masterAddr)));
      }
    };

    const base: NodeJS.ProcessEnv = { ...process.env };
    if (nproc > 1) {
      base.OMP_NUM_THREADS ??= '1';
      base.OPENBLAS_NUM_THREADS ??= '1';
    }
    const job: Job = { script, args, nproc, nnodes, nodeRank, masterAddr, maxRestarts, base };
    for (let restart = 0; ; restart++) {
      const port = await portOf(restart);
      if (restart > 0) process.stderr.write(`handgrad launch: restarting all ${nproc} ranks on MASTER_PORT=${port} (restart ${restart} of ${maxRestarts}, HANDGRAD_RESTART_COUNT=${restart})\n`);
      const { failed, interrupted } = await attempt(job, port, restart);
      if (interrupted) throw new Interrupted(interrupted, `stopped by ${interrupted}; the ranks were sent it too`);
      if (!failed) return 0;
      if (restart >= maxRestarts) {
        if (maxRestarts > 0) process.stderr.write(`handgrad launch: rank ${failed.rank} failed on the last of ${maxRestarts + 1} attempts (--max-restarts ${maxRestarts}); giving up\n`);
        return Math.max(1, failed.code);
      }
    }
  },
};
