/**
 * The `ops:` section: where a service serves `/metrics`, `/livez` and `/readyz`, and how the
 * metrics bound their labels. Optional: without it a standalone service serves no ops
 * endpoint (unless `--ops-listen` or SWITCHYARD_OPS_LISTEN says where), while `switchyard up`
 * serves one on 127.0.0.1:9464 (a free port when that one is taken).
 */
import { z } from "zod";

export const LISTEN_PATTERN = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

export const OpsConfigSchema = z.strictObject({
  /**
   * `host:port` of the ops HTTP server (port 0: any free one). One per process; each service
   * in its own container can use the same one (0.0.0.0:9464). SWITCHYARD_OPS_LISTEN and
   * `--ops-listen` override it. @defaultValue none: no ops server
   */
  listen: z.string().regex(LISTEN_PATTERN, "listen must be host:port, e.g. 127.0.0.1:9464 or 0.0.0.0:9464").optional(),
  /**
   * Distinct `metadata.tenant` values that get their own `tenant` label on cost and token
   * metrics; later ones are counted as `other`, so a producer cannot grow the label set
   * without bound. @defaultValue 100
   */
  tenant_label_limit: z.int().min(0).max(10_000).default(100),
  /** The gateway's one line per request at info level (route, status, duration, task, model, key name). @defaultValue true */
  access_log: z.boolean().default(true),
});

export type OpsConfig = z.infer<typeof OpsConfigSchema>;
