import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as v from '../validate';

/** One `handgrad <name>` subcommand; run gets the arguments after the name and returns the exit code. */
export interface Command {
  summary: string;
  /** What `handgrad <name> --help` prints. */
  help: string;
  run(argv: string[]): Promise<number> | number;
}

type Flags = NonNullable<ParseArgsConfig['options']>;
/** A string flag without a default. */
export const STRING = { type: 'string' } as const;
/** A flag's value: a string or a boolean, never undefined when it has a default. */
type Values<O extends Flags> = { [K in keyof O]: (O[K] extends { type: 'boolean' } ? boolean : string) | (O[K] extends { default: unknown } ? never : undefined) };

/**
 * A command's flags parsed strictly by node:util parseArgs. An unknown flag is a TypeError that
 * names it, with v.didYouMean's guess (misspellings, and the names of PyTorch, Keras, … scripts:
 * --learning-rate, --batch-size, --epoch). A flag given twice (--epochs 1 --epochs 2) is a TypeError
 * naming it, not its last value taken.
 * @throws {TypeError}
 */
export function flags<const O extends Flags>(command: string, argv: string[], options: O, allowPositionals = false): { values: Values<O>; positionals: string[] } {
  const known = Object.keys(options);
  const given = new Map<string, string>(); // each flag's first use, as typed
  for (const t of parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true }).tokens) {
    if (t.kind !== 'option') continue;
    const typed = t.value === undefined ? t.rawName : `${t.rawName} ${t.value}`;
    if (known.includes(t.name)) {
      // parseArgs keeps the last of two: which one the user meant cannot be told, so neither is taken.
      const first = given.get(t.name);
      if (first !== undefined && !options[t.name].multiple) throw new TypeError(`Expected --${t.name} at most once for handgrad ${command} but received it twice: ${first}, then ${typed}`);
      given.set(t.name, typed);
      continue;
    }
    const guess = v.didYouMean(t.name.replaceAll('-', '_'), known);
    throw new TypeError(`Expected no option '${t.rawName}' for handgrad ${command}${guess ? ` (did you mean '--${guess}'?)` : ''}; the options are ${known.map((k) => `--${k}`).join(', ')}`);
  }
  return parseArgs({ args: argv, options, allowPositionals }) as unknown as { values: Values<O>; positionals: string[] };
}

/** A flag's text as a number that `ok` accepts (handed the number and the text). @throws {RangeError} naming `what` */
export function numberFlag(name: string, text: string, what: string, ok: (n: number, text: string) => boolean): number {
  const n = Number(text);
  if (!ok(n, text)) v.fail(RangeError, what, name, text);
  return n;
}

/**
 * --seed: v.seed's rule (an integer in [0, 2^32), the generator's 32-bit state), checked at the flag
 * so that the error names --seed rather than the option it becomes. @throws {TypeError|RangeError}
 */
export function seedFlag(text: string): number {
  return v.seed('--seed', numberFlag('--seed', text, 'an integer', (n, t) => t.trim() !== '' && Number.isInteger(n)));
}

/**
 * A command stopped by SIGINT or SIGTERM after saving its work: cli.ts prints the message and exits
 * 128 + the signal's number (130, 143), as a shell reports a process the signal ended.
 */
export class Interrupted extends Error {
  constructor(readonly signal: 'SIGINT' | 'SIGTERM', message: string) {
    super(message);
    this.name = 'Interrupted';
  }
}
