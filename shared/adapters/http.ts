/**
 * The one place provider HTTP happens: a keep-alive undici Pool per provider (undici's
 * `request` costs about a fifth of the CPU of global fetch per call on Node 20, PERF-NOTES).
 */
import { Pool, type Dispatcher } from "undici";
import type { ProviderConfig } from "../config/schema.ts";
import { NetworkError, ProviderError, ProviderTimeoutError } from "./errors.ts";
import type { HttpCall, HttpReply } from "./types.ts";

export interface ProviderClient {
  /**
   * Sends one call. `cancel` cuts it off from outside (a worker stopping): the call then
   * rejects with `CallAbortedError`, which is no attempt outcome — nobody learnt anything
   * about the provider.
   */
  send(call: HttpCall, timeoutMs: number, cancel?: CallCancel): Promise<HttpReply>;
  /**
   * Sends a call whose answer streams: a 2xx body goes to `onText` piece by piece as it
   * arrives (the reply's `body` is then empty), any other status is read whole as `send`
   * reads it. The same one timer bounds the whole call, stream included, and `cancel` works
   * as in `send`; an error `onText` throws (a provider's error event) ends the call with it.
   */
  stream(call: HttpCall, timeoutMs: number, cancel: CallCancel | undefined, onText: (text: string) => void): Promise<HttpReply>;
  close(): Promise<void>;
}

/**
 * Cuts calls off from outside. A plain object rather than an AbortSignal: one is made per job,
 * and an EventTarget with a listener per call costs measurably on the hot path.
 */
export class CallCancel {
  #cancelled = false;
  #abort: (() => void) | undefined;

  get cancelled(): boolean {
    return this.#cancelled;
  }

  cancel(): void {
    this.#cancelled = true;
    this.#abort?.();
  }

  /** The call in progress, so `cancel` reaches it; undefined once it ends. */
  attach(abort: (() => void) | undefined): void {
    this.#abort = abort;
  }
}

/** The caller cancelled the call; not the provider's doing. */
export class CallAbortedError extends Error {
  constructor() {
    super("the call was cancelled by its caller");
    this.name = "CallAbortedError";
  }
}

/** Bodies above this are cut off and reported as a failed attempt, not buffered without end. */
const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
const POOL_SHARD = 256;

export function createProviderClient(provider: Pick<ProviderConfig, "base_url" | "max_concurrency">): ProviderClient {
  const base = new URL(provider.base_url);
  const prefix = base.pathname.replace(/\/+$/, "");
  // undici's Pool scans its connection list on every request: with thousands of connections
  // (a slow provider, many jobs in flight) that scan costs more than the call. Pools of at most
  // POOL_SHARD connections, taken in turn, keep it short.
  const shards = Math.ceil(provider.max_concurrency / POOL_SHARD);
  const pools = Array.from(
    { length: shards },
    (_, i) =>
      new Pool(base.origin, {
        connections: Math.min(POOL_SHARD, provider.max_concurrency - i * POOL_SHARD),
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connectTimeout: 5_000,
      }),
  );
  let turn = 0;
  const readWhole = (res: Dispatcher.ResponseData) => res.body.text();
  return {
    send: (call, timeoutMs, cancel) => exchange(call, timeoutMs, cancel, readWhole),
    stream: (call, timeoutMs, cancel, onText) =>
      exchange(call, timeoutMs, cancel, async (res, limit) => {
        if (res.statusCode < 200 || res.statusCode >= 300) return res.body.text();
        // Listeners rather than an async iterator: no promise per piece, and a streamed answer is many pieces.
        const body = res.body;
        body.setEncoding("utf8");
        return new Promise<string>((resolve, reject) => {
          let received = 0;
          body.on("data", (piece: string) => {
            received += piece.length;
            try {
              if (received > limit) throw new NetworkError(`streamed response exceeds the ${limit}-byte limit`);
              onText(piece);
            } catch (err) {
              body.destroy();
              reject(err);
            }
          });
          body.once("end", () => resolve(""));
          body.once("error", reject);
        });
      }),
    close: async () => {
      await Promise.all(pools.map((p) => p.close()));
    },
  };

  async function exchange(call: HttpCall, timeoutMs: number, cancel: CallCancel | undefined, read: (res: Dispatcher.ResponseData, limit: number) => Promise<string>): Promise<HttpReply> {
    if (cancel?.cancelled) throw new CallAbortedError();
    // One timer bounds the whole call. undici's own headersTimeout/bodyTimeout run on ~1 s
    // coarse timers and bodyTimeout only bounds the gap between chunks, so a dripping body
    // or a 900 ms answer to a 300 ms budget would outlive the attempt (and the job's deadline).
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    cancel?.attach(() => abort.abort());
    try {
      const pool = pools[turn]!;
      turn = (turn + 1) % shards;
      const method = call.method ?? "POST";
      const res = await pool.request({ method, path: prefix + call.path, headers: call.headers, body: method === "GET" ? null : call.body, signal: abort.signal });
      const length = Number(res.headers["content-length"]);
      const limit = call.maxResponseBytes ?? MAX_RESPONSE_BYTES;
      if (length > limit) {
        res.body.destroy();
        throw new NetworkError(`response of ${length} bytes exceeds the ${limit}-byte limit`);
      }
      let body: string;
      try {
        body = await read(res, limit);
      } catch (err) {
        // Left unread, the socket would stay busy; destroying it frees the pool's slot.
        res.body.destroy();
        throw err;
      }
      return { status: res.statusCode, headers: res.headers, body };
    } catch (err) {
      if (cancel?.cancelled) throw new CallAbortedError();
      throw abort.signal.aborted ? new ProviderTimeoutError(`no complete response within ${timeoutMs} ms`, { cause: err }) : transportError(err);
    } finally {
      clearTimeout(timer);
      cancel?.attach(undefined);
    }
  }
}

function transportError(err: unknown) {
  if (err instanceof ProviderError) return err;
  const code = (err as { code?: string }).code;
  if (code === "UND_ERR_CONNECT_TIMEOUT") return new ProviderTimeoutError("connecting to the provider timed out", { cause: err });
  return new NetworkError(`connection failed (${code ?? (err as Error).name})`, { cause: err });
}
