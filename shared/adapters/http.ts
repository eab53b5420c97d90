/**
 * The one place provider HTTP happens: a keep-alive undici Pool per provider, called through
 * its `dispatch` (undici's `request` costs about a fifth of the CPU of global fetch per call on
 * Node 20, PERF-NOTES; `dispatch` less again).
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
   * `onText` returns how long (ms) the body need not be read: it is left unparsed that long,
   * and what the provider sent meanwhile comes in one piece.
   */
  stream(call: HttpCall, timeoutMs: number, cancel: CallCancel | undefined, onText: (text: string) => number): Promise<HttpReply>;
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
  return {
    send: (call, timeoutMs, cancel) => exchange(call, timeoutMs, cancel, undefined),
    stream: exchange,
    close: async () => {
      await Promise.all(pools.map((p) => p.close()));
    },
  };

  /**
   * One call through undici's `dispatch`: the body is gathered from its chunks (or handed to
   * `onText` as they come), with none of the Readable, AbortSignal and AsyncResource per call
   * that `request` makes (docs/BENCHMARKS.md, "Issue 15, second pass").
   */
  function exchange(call: HttpCall, timeoutMs: number, cancel: CallCancel | undefined, onText: ((text: string) => number) | undefined): Promise<HttpReply> {
    if (cancel?.cancelled) return Promise.reject(new CallAbortedError());
    const pool = pools[turn]!;
    turn = (turn + 1) % shards;
    const method = call.method ?? "POST";
    const limit = call.maxResponseBytes ?? MAX_RESPONSE_BYTES;
    return new Promise<HttpReply>((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined;
      let stopped: Error | undefined;
      let settled = false;
      let status = 0;
      let headers: HttpReply["headers"] = {};
      let decoder: TextDecoder | undefined;
      // A streamed body's text not yet handed to `onText`: read while the reader was quiet
      // (`quiet` runs until it wants more) or while the parser catches up after one (`waking`).
      let text = "";
      let quiet: NodeJS.Timeout | undefined;
      let waking = false;
      const chunks: Buffer[] = [];
      let size = 0;
      const settle = (err: Error | undefined, reply?: HttpReply) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearTimeout(quiet);
        cancel?.attach(undefined);
        if (err) reject(err);
        else resolve(reply!);
      };
      // Aborting the request destroys its socket: a body left unread would keep the pool's slot busy.
      const stop = (err: Error) => {
        stopped ??= err;
        controller?.abort(err);
        settle(err);
      };
      // One timer bounds the whole call. undici's own headersTimeout/bodyTimeout run on ~1 s
      // coarse timers and bodyTimeout only bounds the gap between chunks, so a dripping body
      // or a 900 ms answer to a 300 ms budget would outlive the attempt (and the job's deadline).
      const timer = setTimeout(() => stop(new ProviderTimeoutError(`no complete response within ${timeoutMs} ms`)), timeoutMs);
      cancel?.attach(() => stop(new CallAbortedError()));
      // The text read so far to `onText`; for as long as it then says it will send nothing, the
      // parser is paused (the socket's bytes wait unparsed), and what came meanwhile is parsed
      // at once and handed over in one piece.
      const handOver = (c: Dispatcher.DispatchController) => {
        if (settled || !text) return;
        const piece = text;
        text = "";
        let quietMs: number;
        try {
          quietMs = onText!(piece);
        } catch (err) {
          return stop(err as Error);
        }
        if (quietMs <= 0) return;
        c.pause();
        quiet = setTimeout(() => {
          quiet = undefined;
          // resume() parses what the socket holds before it returns; the end may come with it.
          waking = true;
          c.resume();
          waking = false;
          handOver(c);
        }, quietMs);
      };
      pool.dispatch(
        { method, path: prefix + call.path, headers: call.headers, body: method === "GET" ? null : call.body },
        {
          onRequestStart(c) {
            controller = c;
            if (stopped) c.abort(stopped);
          },
          onResponseStart(_c, statusCode, h) {
            status = statusCode;
            headers = h;
            const length = Number(h["content-length"]);
            if (length > limit) return stop(new NetworkError(`response of ${length} bytes exceeds the ${limit}-byte limit`));
            // Only a 2xx body streams; an error status is read whole, as `send` reads it.
            if (onText !== undefined && statusCode >= 200 && statusCode < 300) decoder = new TextDecoder();
          },
          onResponseData(c, chunk) {
            size += chunk.length;
            if (size > limit) return stop(new NetworkError(`${decoder ? "streamed " : ""}response exceeds the ${limit}-byte limit`));
            if (decoder === undefined) {
              chunks.push(chunk);
              return;
            }
            text += decoder.decode(chunk, { stream: true });
            if (quiet === undefined && !waking) handOver(c);
          },
          onResponseEnd() {
            if (decoder !== undefined) {
              try {
                text += decoder.decode();
                if (text) onText!(text);
              } catch (err) {
                return stop(err as Error);
              }
            }
            settle(undefined, { status, headers, body: decoder ? "" : Buffer.concat(chunks, size).toString("utf8") });
          },
          onResponseError(_c, err) {
            settle(stopped ?? transportError(err));
          },
        },
      );
    });
  }
}

function transportError(err: unknown) {
  if (err instanceof ProviderError) return err;
  const code = (err as { code?: string }).code;
  if (code === "UND_ERR_CONNECT_TIMEOUT") return new ProviderTimeoutError("connecting to the provider timed out", { cause: err });
  return new NetworkError(`connection failed (${code ?? (err as Error).name})`, { cause: err });
}
