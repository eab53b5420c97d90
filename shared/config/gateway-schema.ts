/**
 * The `gateway:` section: the OpenAI-compatible HTTP gateway (`switchyard gateway`) and the
 * priority lanes it feeds. Optional: without it the gateway listens on 127.0.0.1:8080 and
 * accepts no key (except `switchyard up`'s SWITCHYARD_DEV_API_KEY), and workers use the
 * default lane shares.
 *
 * Built by a factory that takes the config's duration and size types, so those stay defined
 * once, in `schema.ts`, without an import cycle.
 */
import { z } from "zod";
import { TASK_PATTERN } from "../contract/subjects.ts";
import { LanesSchema } from "./lanes-schema.ts";

type Units = {
  readonly duration: z.ZodType<number, number | string>;
  readonly size: z.ZodType<number, number | string>;
};

const HEX_SHA256 = /^[0-9a-f]{64}$/;

export function gatewayConfigSchema({ duration, size }: Units) {
  const ApiKeySchema = z.strictObject({
    /** SHA-256 of the key, lower-case hex (`switchyard gateway hash-key`). The key itself is never stored. */
    sha256: z.string().regex(HEX_SHA256, "sha256 must be 64 lower-case hex digits (switchyard gateway hash-key prints it)"),
    /** Written into every job's `metadata.tenant`; files and batches are visible only to keys of the same tenant. */
    tenant: z.string().min(1).max(128),
    /** The task (routing policy) of requests without an `x-switchyard-task` header. @defaultValue gateway.default_task */
    task: z.string().regex(TASK_PATTERN, "task must match [a-z0-9_-]{1,64}").optional(),
    /** Tasks this key may name in `x-switchyard-task`; any configured task when absent. Others get 403. */
    tasks: z.array(z.string().regex(TASK_PATTERN)).min(1).optional(),
    /** Sustained requests per second this key may make, across every gateway instance together. @defaultValue 50 */
    requests_per_second: z.number().positive().default(50),
    /** Requests the key may make at once above the sustained rate. @defaultValue 2 × requests_per_second */
    burst: z.int().positive().optional(),
    /** Prompt plus completion tokens per minute this key may use, across every gateway; a request reserves its prompt estimate plus `max_tokens` (or the task's expected completion). Unlimited when absent. */
    tokens_per_minute: z.number().positive().optional(),
    /** Models (`provider/model` or aliases) this key may be served by; any when absent. With `model: auto`, every candidate of the task must be among them. Others get 403. */
    models: z.array(z.string().min(1)).min(1).optional(),
  });

  return z.strictObject({
    /** `host:port` the HTTP server binds. @defaultValue 127.0.0.1:8080 */
    listen: z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, "listen must be host:port, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
      .default("127.0.0.1:8080"),
    /** Longest a chat request waits for its job; past it the client gets 504 and the job is not served late. @defaultValue 60s */
    request_timeout: duration.default(60_000),
    /**
     * How chat requests reach the routers. `request`: a core NATS request to the routers' queue
     * group, answered directly (no JetStream on the way; 503 at once when no router has a free
     * slot); the outcome is recorded in RESULTS or DLQ without waiting for the store. `queue`: a
     * job on the JetStream interactive lane, stored, pulled and its outcome stored before the reply.
     * @defaultValue queue
     */
    interactive: z.enum(["request", "queue"]).default("queue"),
    /** Largest JSON request body (chat, batch creation); larger ones get 413. @defaultValue 1MiB */
    max_body_bytes: size.default(1024 * 1024),
    /** Largest uploaded file. @defaultValue 100MiB */
    max_file_bytes: size.default(100 * 1024 * 1024),
    /** Most request lines one batch file may hold. @defaultValue 50000 */
    max_batch_lines: z.int().positive().default(50_000),
    /**
     * The task of requests that name none (no `x-switchyard-task` header) from a key without a
     * `task` of its own, and from the development key. Best a task without an output contract,
     * so a client's free chat or its own `response_format` is served as asked.
     * @defaultValue the first task under `tasks`
     */
    default_task: z.string().regex(TASK_PATTERN, "default_task must match [a-z0-9_-]{1,64}").optional(),
    /** API keys by a name of your choice (the name appears in logs; the key never does). */
    keys: z.record(z.string().min(1).max(64), ApiKeySchema).default({}),
    /** @deprecated the lane shares are the router's: set `router.lanes`. Read only when that is absent. */
    lanes: LanesSchema.optional(),
  });
}

export type GatewayConfig = z.output<ReturnType<typeof gatewayConfigSchema>>;

/** A gateway setting that names a task `tasks:` does not configure, with where it sits. */
export interface GatewayTaskIssue {
  readonly path: readonly (string | number)[];
  readonly message: string;
}

/**
 * Every task the gateway section names (`default_task`, each key's `task` and `tasks`) must
 * be configured under `tasks`; `default_task` defaults to the first one there. The gateway
 * refuses a config (at start, or an edit on reload, with the file and line) that breaks this.
 */
export function gatewayTaskIssues(tasks: Readonly<Record<string, unknown>>, gw: GatewayConfig | undefined): GatewayTaskIssue[] {
  const issues: GatewayTaskIssue[] = [];
  const known = (task: string) => Object.hasOwn(tasks, task);
  const unknown = (task: string) => `task "${task}" is not configured under tasks`;
  const defaultTask = gw?.default_task ?? Object.keys(tasks)[0];
  if (defaultTask === undefined) issues.push({ path: ["tasks"], message: "the gateway needs at least one task" });
  else if (!known(defaultTask)) issues.push({ path: ["gateway", "default_task"], message: unknown(defaultTask) });
  for (const [name, k] of Object.entries(gw?.keys ?? {})) {
    if (k.task !== undefined && !known(k.task)) issues.push({ path: ["gateway", "keys", name, "task"], message: unknown(k.task) });
    k.tasks?.forEach((task, i) => {
      if (!known(task)) issues.push({ path: ["gateway", "keys", name, "tasks", i], message: unknown(task) });
    });
  }
  return issues;
}
