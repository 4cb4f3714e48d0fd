#!/usr/bin/env node
// `handgrad <command> [options]`: parses nothing itself; each command lives in lib/commands/ and
// reads its own options with node:util parseArgs. Exit codes: 0 ok, 1 a check failed, 2 bad usage.
import type { Command } from './commands/command';
import { tour } from './commands/tour';
import { verifyCommand } from './commands/verify';
import { gradsCommand } from './commands/grads';
import { train } from './commands/train';

const commands: Record<string, Command> = {
  tour,
  verify: verifyCommand,
  grads: gradsCommand,
  train,
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  handgrad ${name.padEnd(8)} ${c.summary}`);
  return `usage:\n${lines.join('\n')}\n\nhandgrad <command> --help for its options`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`handgrad: unknown command '${name}'\n${usage()}\n`);
    return 2;
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
