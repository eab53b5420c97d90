/**
 * Server-Sent Events as the OpenAI API sends them, for chat completion chunks and Responses
 * API events alike, streamed live or written from a finished answer.
 */
import type { ServerResponse } from "node:http";

export const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" } as const;

/** Calls `cancel` when the client goes away before the response has ended (the provider call is then cut off). */
export function cancelOnClose(res: ServerResponse, cancel: () => void): void {
  res.once("close", () => {
    if (!res.writableEnded) cancel();
  });
}
