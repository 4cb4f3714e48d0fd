// distributed.init's options, each defaulting to the environment a launcher sets (torchrun's names:
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; `handgrad launch` sets the same), so one
// script runs under either launcher, as a PyTorch script runs under torchrun.
import * as v from '../validate';

export interface InitOptions {
  /** This process's rank in [0, worldSize). Default: $RANK. */
  rank?: number;
  /** The number of processes in the job. Default: $WORLD_SIZE. */
  worldSize?: number;
  /** This process's rank on its machine (reported, not used to join). Default: $LOCAL_RANK, else rank. */
  localRank?: number;
  /** Host name or address of rank 0, which serves the rendezvous store. Default: $MASTER_ADDR. */
  masterAddr?: string;
  /** Rank 0's store port. Default: $MASTER_PORT. */
  masterPort?: number;
  /**
   * How long init waits for every rank, and each collective for its peers, before failing with
   * ERR_DISTRIBUTED. Default 1,800,000 (30 minutes, torch.distributed's default). A rank that dies
   * is usually noticed at once (its connections close); one that hangs takes timeoutMs.
   */
  timeoutMs?: number;
  /**
   * A string every handgrad rank must agree on (a hash of the model's layers and dtype, say),
   * compared at init: a mismatch fails every rank with an error that quotes both. Default ''.
   */
  check?: string;
  /**
   * Compare each collective's array lengths, dtype and op across ranks first (one small all-reduce
   * each; Gloo aborts the process on mismatched lengths). Default true. Applies only when every
   * rank is a handgrad rank: PyTorch Python ranks would not take part in the extra collective.
   * Every handgrad rank must pass the same value (compared at init, as worldSize).
   */
  verifyCalls?: boolean;
}

export interface ResolvedInit {
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  check: string;
  verifyCalls: boolean;
}

export const INIT_KEYS = ['rank', 'worldSize', 'localRank', 'masterAddr', 'masterPort', 'timeoutMs', 'check', 'verifyCalls'] as const;

/** torch.distributed's default_pg_timeout. */
export const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;
// A timer's range (setTimeout's 2^31−1 ms), well past any sensible timeout.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** An integer option, else the environment variable `env` parsed as one, else fallback; a value outside [min, max] is a RangeError. */
function integer(name: string, value: unknown, env: string, min: number, max: number, fallback?: number): number {
  if (value === undefined) {
    const text = process.env[env];
    if (text === undefined || text === '') {
      if (fallback !== undefined) return fallback;
      v.fail(TypeError, `a number for ${name} or the environment variable ${env} (set by handgrad launch and torchrun)`, name, new v.Received('neither'));
    }
    if (!/^\s*-?\d+\s*$/.test(text)) v.fail(RangeError, 'an integer', `$${env}`, new v.Received(JSON.stringify(text)));
    value = Number(text);
    name = `$${env}`;
  }
  if (typeof value !== 'number') v.fail(TypeError, 'a number', name, value);
  if (!Number.isInteger(value) || value < min || value > max) v.fail(RangeError, `an integer in [${min}, ${max}]`, name, value);
  return value;
}

/**
 * The options checked (unknown keys refused with a did-you-mean), the environment filling what is
 * not given. @throws {TypeError|RangeError}
 */
export function resolveInit(opts: unknown): ResolvedInit {
  const o = v.options('distributed.init options', opts, INIT_KEYS);
  const worldSize = integer('worldSize', o.worldSize, 'WORLD_SIZE', 1, 1 << 20);
  const rank = integer('rank', o.rank, 'RANK', 0, 1 << 20);
  if (rank >= worldSize) v.fail(RangeError, `a rank in [0, ${worldSize}) (worldSize ${worldSize})`, o.rank === undefined ? '$RANK' : 'rank', rank);
  const localRank = integer('localRank', o.localRank, 'LOCAL_RANK', 0, 1 << 20, rank);
  let masterAddr = o.masterAddr;
  if (masterAddr === undefined) {
    masterAddr = process.env.MASTER_ADDR;
    if (masterAddr === undefined || masterAddr === '') v.fail(TypeError, 'a host for masterAddr or the environment variable MASTER_ADDR (set by handgrad launch and torchrun)', 'masterAddr', new v.Received('neither'));
  }
  if (typeof masterAddr !== 'string' || masterAddr === '') v.fail(TypeError, 'a non-empty string (a host name or address)', 'masterAddr', masterAddr);
  const masterPort = integer('masterPort', o.masterPort, 'MASTER_PORT', 1, 65535);
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number') v.fail(TypeError, 'a number of milliseconds', 'timeoutMs', timeoutMs);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) v.fail(RangeError, `an integer number of milliseconds in [1, ${MAX_TIMEOUT_MS}]`, 'timeoutMs', timeoutMs);
  const check = o.check ?? '';
  if (typeof check !== 'string') v.fail(TypeError, 'a string', 'check', check);
  const verifyCalls = v.bool('verifyCalls', o.verifyCalls, true);
  return { rank, worldSize, localRank, masterAddr, masterPort, timeoutMs, check, verifyCalls };
}
