import { pino, type Logger } from "pino";

export type { Logger };

/**
 * JSON logs to stderr (stdout stays free for command output), level from LOG_LEVEL.
 * Nothing logs job content, provider keys or NATS credentials (URLs are logged through
 * `redactUrl`); the redaction is a second line of defence.
 */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino(
    {
      name: service,
      level,
      redact: {
        paths: ["*.api_key", "*.apiKey", "*.authorization", "*.headers.authorization", "*.headers[\"x-api-key\"]", "*.password", "*.token", "*.seed", "password", "token", "seed"],
        censor: "[redacted]",
      },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}
