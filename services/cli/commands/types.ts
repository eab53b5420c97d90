export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Full help, shown by `switchyard <name> --help`. */
  readonly usage: string;
  /** Resolves to the process exit code. */
  run(argv: string[]): Promise<number>;
}
