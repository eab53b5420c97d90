import { openaiAdapter } from "./openai.ts";
import type { Adapter, Dialect } from "./types.ts";

export const ADAPTERS: Readonly<Record<Dialect, Adapter>> = { openai: openaiAdapter };
