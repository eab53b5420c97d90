import { anthropicBatchApi } from "./anthropic-batch.ts";
import type { BatchApi } from "./batch.ts";
import { geminiBatchApi } from "./gemini-batch.ts";
import { openaiBatchApi } from "./openai-batch.ts";
import type { Dialect } from "./types.ts";

/** Every dialect's batch API; OpenAI-compatible providers without one refuse the upload with 404, a `BadRequestError`. */
export const BATCH_APIS: Readonly<Record<Dialect, BatchApi>> = { openai: openaiBatchApi, anthropic: anthropicBatchApi, gemini: geminiBatchApi };
