/**
 * Switchyard's own error family. Callers branch on `kind`, never on message text.
 * Provider call failures live in `adapters/errors.ts`, as they map onto attempt outcomes.
 */
export type SwitchyardErrorKind = "config" | "nats_unreachable" | "nats_server_missing" | "usage";

export class SwitchyardError extends Error {
  readonly kind: SwitchyardErrorKind;
  constructor(kind: SwitchyardErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SwitchyardError";
    this.kind = kind;
  }
}

/** A mistake in a config file; the message carries `file:line:column`. */
export class ConfigError extends SwitchyardError {
  readonly file: string;
  readonly problems: readonly { path: string; line: number; column: number; message: string }[];
  constructor(file: string, problems: ConfigError["problems"]) {
    super("config", problems.map((p) => `${file}:${p.line}:${p.column}: ${p.path ? `${p.path}: ` : ""}${p.message}`).join("\n"));
    this.name = "ConfigError";
    this.file = file;
    this.problems = problems;
  }
}

/** The command line was used wrongly (unknown command, bad flag value). */
export class UsageError extends SwitchyardError {
  constructor(message: string) {
    super("usage", message);
    this.name = "UsageError";
  }
}
