#!/usr/bin/env node
// `handgrad <command> [options]`: each command lives in lib/commands/ and reads its own flags
// (commands/command.ts: an unknown one is refused with a did-you-mean); here only --version and
// --help/-h, for handgrad and for each command. Exit codes: 0 ok, 1 a check failed, 2 bad usage or
// a file that cannot be read or written, 130/143 stopped by SIGINT/SIGTERM (after saving its work).
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from './binding';
import { type Command, Interrupted } from './commands/command';
import { tour } from './commands/tour';
import { verifyCommand } from './commands/verify';
import { gradsCommand } from './commands/grads';
import { train } from './commands/train';
import { didYouMean } from './validate';

const commands: Record<string, Command> = { tour, verify: verifyCommand, grads: gradsCommand, train };
commands.launch = (require('./commands/launch') as typeof import('./commands/launch')).launchCommand; // eslint-disable-line @typescript-eslint/no-require-imports
commands.predict = (require('./commands/predict') as typeof import('./commands/predict')).predictCommand; // eslint-disable-line @typescript-eslint/no-require-imports
commands['build-torch'] = (require('./commands/build-torch') as typeof import('./commands/build-torch')).buildTorchCommand; // eslint-disable-line @typescript-eslint/no-require-imports

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  handgrad ${name.padEnd(11)} ${c.summary}`);
  return `usage:\n${lines.join('\n')}\n\nhandgrad <command> --help for its options, handgrad --version for the version`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    process.stdout.write(`${JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version}\n`);
    return 0;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    const guess = didYouMean(name, Object.keys(commands));
    process.stderr.write(`handgrad: unknown command '${name}'${guess ? ` (did you mean '${guess}'?)` : ''}\n${usage()}\n`);
    return 2;
  }
  const end = rest.indexOf('--');
  if ((end < 0 ? rest : rest.slice(0, end)).some((a) => a === '--help' || a === '-h')) {
    process.stdout.write(command.help);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof Interrupted) {
      process.stderr.write(`handgrad ${name}: ${err.message}\n`);
      return 128 + constants.signals[err.signal];
    }
    // A Node system error (ENOENT, ENOTDIR, EACCES, … from fs, with a syscall) is a file the user
    // named that cannot be used: one line, like the library's ERR_FILE, not a stack trace.
    const e = err as { code?: unknown; syscall?: unknown } | null;
    const systemError = err instanceof Error && typeof e?.syscall === 'string' && typeof e.code === 'string' && e.code.startsWith('E');
    if (err instanceof TypeError || err instanceof RangeError || systemError || (typeof e?.code === 'string' && e.code.startsWith('ERR_'))) {
      process.stderr.write(`handgrad ${name}: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
