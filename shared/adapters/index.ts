import { anthropicAdapter } from "./anthropic.ts";
import { geminiAdapter } from "./gemini.ts";
import { openaiAdapter } from "./openai.ts";
import type { Adapter, Dialect } from "./types.ts";

export const ADAPTERS: Readonly<Record<Dialect, Adapter>> = { openai: openaiAdapter, anthropic: anthropicAdapter, gemini: geminiAdapter };
