/** One `handgrad <name>` subcommand; run gets the arguments after the name and returns the exit code. */
export interface Command {
  summary: string;
  run(argv: string[]): Promise<number> | number;
}
