#!/usr/bin/env node
// `handgrad <command> [options]`: each command lives in lib/commands/ and reads its own flags
// (commands/command.ts: an unknown one is refused with a did-you-mean); here only --version and
// --help/-h, for handgrad and for each command. Exit codes: 0 ok, 1 a check failed, 2 bad usage.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './binding';
import type { Command } from './commands/command';
import { tour } from './commands/tour';
import { verifyCommand } from './commands/verify';
import { gradsCommand } from './commands/grads';
import { train } from './commands/train';
import { didYouMean } from './validate';

const commands: Record<string, Command> = { tour, verify: verifyCommand, grads: gradsCommand, train };

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  handgrad ${name.padEnd(8)} ${c.summary}`);
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
    if (err instanceof TypeError || err instanceof RangeError || (err as { code?: string }).code?.startsWith('ERR_')) {
      process.stderr.write(`handgrad ${name}: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
