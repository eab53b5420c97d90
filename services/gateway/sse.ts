/**
 * Server-Sent Events as the OpenAI API sends them, for chat completion chunks and Responses
 * API events alike, streamed live or written from a finished answer.
 */
import type { OutgoingHttpHeaders, ServerResponse } from "node:http";

export const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive" } as const;

/** Calls `cancel` when the client goes away before the response has ended (the provider call is then cut off). */
function cancelOnClose(res: ServerResponse, cancel: () => void): void {
  res.once("close", () => {
    if (!res.writableEnded) cancel();
  });
}

/**
 * An answer streamed to the caller as the router relays it (chat.ts's LiveStream, responses.ts's
 * LiveResponse): nothing is written before its first piece, so until then the request can still
 * fail as a plain JSON error; the head goes out with that piece, so `started` is whether it has.
 * A caller that went away is written nothing more.
 */
export abstract class LiveSse {
  readonly #res: ServerResponse;
  readonly #headers: OutgoingHttpHeaders;

  protected constructor(res: ServerResponse, headers: OutgoingHttpHeaders) {
    this.#res = res;
    this.#headers = { ...SSE_HEADERS, ...headers };
  }

  get started(): boolean {
    return this.#res.headersSent;
  }

  cancelWith(cancel: () => void): void {
    cancelOnClose(this.#res, cancel);
  }

  /** Writes `body()`, after the head and `opening()` when this is the first piece (each made only when written). */
  protected send(opening: () => string, body: () => string): void {
    const res = this.#res;
    if (res.destroyed) return;
    let out = "";
    if (!res.headersSent) {
      res.writeHead(200, this.#headers);
      out = opening();
    }
    res.write(out + body());
  }

  /** Ends the stream with `last()`. */
  protected finish(last: () => string): void {
    if (!this.#res.destroyed) this.#res.end(last());
  }
}
