/**
 * The simulated provider: a real HTTP server that impersonates the providers of a scenario,
 * with scripted latency and faults. Every provider speaks all three dialects: OpenAI chat
 * completions (`POST /<provider>/v1/chat/completions`), Anthropic messages
 * (`POST /<provider>/v1/messages`) and Gemini generateContent
 * (`POST /<provider>/v1beta/models/<model>:generateContent`), each also streamed in the API's own
 * framing (`stream: true`, Gemini `:streamGenerateContent?alt=sse`) at the scenario's pace per
 * token. Each also serves its batch API on the same prefixes (`batches.ts`).
 *
 * The benchmark drives it at many thousands of requests per second, so the request path
 * avoids frameworks, zod, logging and per-request objects it can do without; the control
 * API, which is rare, validates its bodies properly.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { estimatePromptTokens } from "../../shared/tokens.ts";
import { createSimBatches } from "./batches.ts";
import { readBody, send, sendReply } from "./http-io.ts";
import { anthropicDialect, geminiDialect, openaiDialect, type SimDialect, type WireReply } from "./dialects.ts";
import { buildReply, completionLimit, replyTokens, type SimChatRequest } from "./replies.ts";
import { fnv1a } from "./text.ts";
import {
  BehaviourOverrideSchema,
  faultRate,
  type BehaviourOverride,
  type ModelBehaviour,
  type Outage,
  type Scenario,
  type UsageDetails,
} from "./scenario.ts";

export interface SimProviderOptions {
  /** Request bodies above this size get 413. @defaultValue 4 MiB */
  maxBodyBytes?: number;
}

/** What happened to a model's requests since start-up or the last reset. */
export interface ModelCounters {
  requests: number;
  /** Responses by HTTP status code; malformed and truncated answers count under 200. */
  responses: Record<string, number>;
  hangs: number;
  resets: number;
  malformed: number;
  truncated: number;
  /** Answers whose body was sent slowly (`rate_slow_body`). */
  slow: number;
  /** Answers deliberately made invalid against the request's contract (`disobey_rate`). */
  disobeyed: number;
  /** Answers sent as an event stream. */
  streamed: number;
  /** Streams started and not yet ended by the sim: a caller that has tokens while this is above 0 got them before the answer was whole. */
  streaming: number;
}

export interface ModelView {
  provider: string;
  model: string;
  behaviour: ModelBehaviour;
  outage: Outage | null;
  counters: ModelCounters;
}

export interface SimState {
  seed: number;
  /** Keyed `<provider>/<model>`. */
  models: Record<string, ModelView>;
}

export interface SimStats {
  /** Keyed `<provider>/<model>`. */
  models: Record<string, ModelCounters>;
  /** Chat requests turned away before a model was known (bad body, unknown provider or model), by status. */
  unmatched: Record<string, number>;
  /** Batches each provider accepted through its batch APIs, and their lines (a batch refused at submission is not counted). */
  batches: Record<string, { batches: number; lines: number }>;
}

export interface SimProvider {
  /** Starts serving; resolves to the base URL, e.g. `http://127.0.0.1:40123`. */
  listen(port?: number, host?: string): Promise<string>;
  /** Stops serving and destroys every open socket, hanging ones included. */
  close(): Promise<void>;
  state(): SimState;
  stats(): SimStats;
  /** Overrides one model's behaviour at run time; throws `SimControlError` for an unknown model or an invalid override. */
  control(provider: string, model: string, override: BehaviourOverride): ModelView;
  /** Back to the scenario: overrides cleared, draws re-seeded, counters zeroed. */
  reset(): void;
}

export type SimControlErrorKind = "unknown_model" | "invalid_override";

export class SimControlError extends Error {
  readonly kind: SimControlErrorKind;
  constructor(kind: SimControlErrorKind, message: string) {
    super(message);
    this.name = "SimControlError";
    this.kind = kind;
  }
}

interface ModelState {
  readonly provider: string;
  readonly model: string;
  readonly scripted: ModelBehaviour;
  /** Pre-serialised for the response template. */
  readonly modelJson: string;
  readonly fingerprintJson: string;
  readonly usageDetails: UsageDetails | undefined;
  behaviour: ModelBehaviour;
  outage: Outage | null;
  /** Separate streams, so changing the latency or the disobedience never shifts the sequence of faults. */
  faultDraw: () => number;
  latencyDraw: () => number;
  disobeyDraw: () => number;
  counters: ModelCounters;
}

interface ProviderState {
  readonly apiKey: string | undefined;
  readonly models: Map<string, ModelState>;
  readonly modelList: string;
}

type Fault = Outage | "500" | "malformed" | "truncated" | "slow_body";

interface ChatRoute {
  readonly dialect: SimDialect;
  /** Gemini names the model in the path, the others in the body. */
  readonly model?: string;
  /** Gemini streams by path (`:streamGenerateContent`), the others by a body field. */
  readonly stream?: boolean;
}

const JSON_TYPE = "application/json";
const OPENAI_ROUTE: ChatRoute = { dialect: openaiDialect };
const ANTHROPIC_ROUTE: ChatRoute = { dialect: anthropicDialect };
const GEMINI_PREFIX = "/v1beta/models/";
const GEMINI_SUFFIX = ":generateContent";
const GEMINI_STREAM_SUFFIX = ":streamGenerateContent";
const STREAM_HEADERS = { "content-type": "text/event-stream", "cache-control": "no-cache" };

/** The dialect a path under `/<provider>` speaks, or undefined when it is no chat route. */
function chatRoute(rest: string): ChatRoute | undefined {
  if (rest === "/v1/chat/completions") return OPENAI_ROUTE;
  if (rest === "/v1/messages") return ANTHROPIC_ROUTE;
  const suffix = rest.endsWith(GEMINI_STREAM_SUFFIX) ? GEMINI_STREAM_SUFFIX : GEMINI_SUFFIX;
  if (rest.startsWith(GEMINI_PREFIX) && rest.endsWith(suffix) && rest.length > GEMINI_PREFIX.length + suffix.length) {
    const raw = rest.slice(GEMINI_PREFIX.length, -suffix.length);
    let model = raw;
    try {
      model = decodeURIComponent(raw);
    } catch {
      // A malformed escape stays as sent; it then names no model and gets 404.
    }
    return suffix === GEMINI_STREAM_SUFFIX ? { dialect: geminiDialect, model, stream: true } : { dialect: geminiDialect, model };
  }
  return undefined;
}

export function createSimProvider(scenario: Scenario, opts: SimProviderOptions = {}): SimProvider {
  const maxBodyBytes = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const providers = new Map<string, ProviderState>();
  const models = new Map<string, ModelState>();
  for (const [provider, p] of Object.entries(scenario.providers)) {
    const state: ProviderState = {
      apiKey: p.api_key,
      models: new Map(),
      modelList: JSON.stringify({
        object: "list",
        data: Object.keys(p.models).map((id) => ({ id, object: "model", created: 0, owned_by: provider })),
      }),
    };
    for (const [model, behaviour] of Object.entries(p.models)) {
      const m: ModelState = {
        provider,
        model,
        scripted: behaviour,
        modelJson: JSON.stringify(model),
        fingerprintJson: JSON.stringify(`fp_sim_${fnv1a(`${provider}/${model}`).toString(16)}`),
        usageDetails: behaviour.usage_details,
        behaviour,
        outage: null,
        faultDraw: draws(scenario.seed, provider, model, "fault"),
        latencyDraw: draws(scenario.seed, provider, model, "latency"),
        disobeyDraw: draws(scenario.seed, provider, model, "disobey"),
        counters: zeroCounters(),
      };
      state.models.set(model, m);
      models.set(`${provider}/${model}`, m);
    }
    providers.set(provider, state);
  }

  const unmatched: Record<string, number> = {};
  /** Latency and hang timers, cleared on close so a stopped server holds no event-loop work. */
  const timers = new Set<NodeJS.Timeout>();
  let completions = 0;
  const batches = createSimBatches({ scenario, answer: completionBody });

  const server = createServer({ noDelay: true }, (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);

    if (path.startsWith("/control/")) return control(req, res, path.slice("/control/".length));
    if (path === "/healthz" && req.method === "GET") return send(res, 200, "ok", "text/plain");

    const slash = path.indexOf("/", 1);
    const provider = slash === -1 ? undefined : providers.get(path.slice(1, slash));
    const rest = slash === -1 ? "" : path.slice(slash);
    const route = chatRoute(rest);
    if (provider && route && req.method === "POST") return chat(req, res, provider, route, q === -1 ? "" : url.slice(q + 1));
    if (provider && batches.handle(req, res, path.slice(1, slash), provider, rest, q === -1 ? "" : url.slice(q + 1))) return;
    if (provider && rest === "/v1/models" && req.method === "GET") {
      if (!authorized(req, res, provider, openaiDialect, "")) return;
      return send(res, 200, provider.modelList);
    }
    if (route) tally(unmatched, 404);
    req.resume();
    sendReply(res, (route?.dialect ?? openaiDialect).notFound(`Invalid URL (${req.method} ${path})`));
  });

  function chat(req: IncomingMessage, res: ServerResponse, provider: ProviderState, route: ChatRoute, query: string): void {
    const { dialect } = route;
    readBody(req, maxBodyBytes, (raw) => {
      if (raw === undefined) return reject(res, dialect.tooLarge());
      let body: unknown;
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        return reject(res, dialect.notJson());
      }
      if (typeof body !== "object" || body === null || Array.isArray(body)) return reject(res, dialect.notJson());
      const parsed = dialect.parse(body as Record<string, unknown>, req.headers, route.model);
      if ("status" in parsed) return reject(res, parsed);

      const m = provider.models.get(parsed.model);
      if (!m) {
        tally(unmatched, 404);
        return sendReply(res, dialect.unknownModel(parsed.model));
      }
      m.counters.requests++;
      if (!authorized(req, res, provider, dialect, query, m)) return;

      const request = route.stream ? { ...parsed.request, stream: true } : parsed.request;
      const promptTokens = estimatePromptTokens(request.messages);
      const window = m.behaviour.context_window;
      if (window !== undefined) {
        const refusal = dialect.contextCheck(promptTokens, completionLimit(request) ?? 0, window);
        if (refusal) return count(m, res, refusal);
      }

      const fault = m.outage ?? rollFault(m);
      if (fault !== undefined) return fail(req, res, m, dialect, fault, request, promptTokens);

      const { min, max } = m.behaviour.latency_ms;
      const delay = min === max ? min : min + m.latencyDraw() * (max - min);
      if (delay <= 0) return complete(res, m, dialect, request, promptTokens);
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!res.destroyed) complete(res, m, dialect, request, promptTokens);
      }, delay);
      timers.add(timer);
    });
  }

  function complete(res: ServerResponse, m: ModelState, dialect: SimDialect, request: SimChatRequest, promptTokens: number): void {
    if (request.stream) return streamAnswer(res, m, dialect, request, promptTokens);
    count(m, res, { status: 200, body: completionBody(m, dialect, request, promptTokens) });
  }

  function answerOf(m: ModelState, request: SimChatRequest) {
    // Drawn only when the knob is on, so a scenario without it replays exactly as before.
    const rate = m.behaviour.disobey_rate;
    const disobey = rate > 0 && m.disobeyDraw() < rate;
    const reply = buildReply(m.model, request, disobey);
    if (reply.disobeyed) m.counters.disobeyed++;
    return reply;
  }

  function completionBody(m: ModelState, dialect: SimDialect, request: SimChatRequest, promptTokens: number): string {
    const reply = answerOf(m, request);
    const n = request.n ?? 1;
    return dialect.completion(++completions, m, reply, n, promptTokens, n * replyTokens(reply));
  }

  /** The answer `completionBody` would give, as the dialect's event stream: the first token at once, each next one `stream_token_delay_ms` later. */
  function streamAnswer(res: ServerResponse, m: ModelState, dialect: SimDialect, request: SimChatRequest, promptTokens: number): void {
    const reply = answerOf(m, request);
    const n = request.n ?? 1;
    const { head, tokens, tail } = dialect.stream(++completions, m, reply, n, promptTokens, n * replyTokens(reply), request.streamUsage === true);
    const { stream_token_delay_ms: delay, stream_fail_after_tokens: failAfter } = m.behaviour;
    // The counters in force now: a reset while the stream runs must not make the new ones negative.
    const counters = m.counters;
    tally(counters.responses, 200);
    counters.streamed++;
    counters.streaming++;
    let open = true;
    let timer: NodeJS.Timeout | undefined;
    const close = () => {
      if (!open) return;
      open = false;
      counters.streaming--;
      if (timer !== undefined) {
        clearTimeout(timer);
        timers.delete(timer);
      }
    };
    res.once("close", close);
    res.writeHead(200, STREAM_HEADERS);
    if (head !== "") res.write(head);
    let sent = 0;
    const next = (): void => {
      if (timer !== undefined) timers.delete(timer);
      timer = undefined;
      if (!open || res.destroyed) return;
      for (;;) {
        if (failAfter !== undefined && sent >= failAfter) {
          close();
          res.end(dialect.streamError());
          return;
        }
        if (sent >= tokens.length) {
          close();
          res.end(tail);
          return;
        }
        res.write(tokens[sent++]);
        // The closing events (or the scripted error) follow the last token at once.
        if (delay > 0 && sent < tokens.length && (failAfter === undefined || sent < failAfter)) break;
      }
      timer = setTimeout(next, delay);
      timers.add(timer);
    };
    // The first token goes with the opening events: time to first token is the model's latency.
    next();
  }

  function fail(req: IncomingMessage, res: ServerResponse, m: ModelState, dialect: SimDialect, fault: Fault, request: SimChatRequest, promptTokens: number): void {
    switch (fault) {
      case "429":
        return count(m, res, dialect.rateLimited(m.model, m.behaviour.errors.retry_after_s));
      case "500":
        return count(m, res, dialect.serverError());
      case "503":
        return count(m, res, dialect.overloaded());
      case "hang": {
        m.counters.hangs++;
        const timer = setTimeout(() => {
          timers.delete(timer);
          req.socket.destroy();
        }, m.behaviour.hang_ms);
        timers.add(timer);
        res.once("close", () => {
          clearTimeout(timer);
          timers.delete(timer);
        });
        return;
      }
      case "reset":
        m.counters.resets++;
        req.socket.destroy();
        return;
      case "malformed":
        m.counters.malformed++;
        return count(m, res, { status: 200, body: dialect.malformed(++completions) });
      case "truncated": {
        m.counters.truncated++;
        tally(m.counters.responses, 200);
        const full = Buffer.from(completionBody(m, dialect, request, promptTokens));
        res.writeHead(200, { "content-type": JSON_TYPE, "content-length": full.length });
        res.write(full.subarray(0, full.length >> 1), () => req.socket.destroy());
        return;
      }
      case "slow_body": {
        m.counters.slow++;
        tally(m.counters.responses, 200);
        const full = Buffer.from(completionBody(m, dialect, request, promptTokens));
        res.writeHead(200, { "content-type": JSON_TYPE, "content-length": full.length });
        // Ten pieces, so the gap between two is a tenth of the duration: a client that only
        // times out an idle body never notices, one that bounds the whole call does.
        const pieces = Math.min(10, full.length);
        const step = Math.ceil(full.length / pieces);
        let sent = 0;
        const next = () => {
          const timer = setTimeout(() => {
            timers.delete(timer);
            if (res.destroyed) return;
            const end = Math.min(full.length, sent + step);
            const chunk = full.subarray(sent, end);
            sent = end;
            if (sent < full.length) {
              res.write(chunk);
              next();
            } else res.end(chunk);
          }, m.behaviour.slow_body_ms / pieces);
          timers.add(timer);
        };
        next();
        return;
      }
    }
  }

  function rollFault(m: ModelState): Fault | undefined {
    const e = m.behaviour.errors;
    const u = m.faultDraw();
    let edge = e.rate_429;
    if (u < edge) return "429";
    if (u < (edge += e.rate_500)) return "500";
    if (u < (edge += e.rate_503)) return "503";
    if (u < (edge += e.rate_hang)) return "hang";
    if (u < (edge += e.rate_malformed)) return "malformed";
    if (u < (edge += e.rate_truncated)) return "truncated";
    if (u < (edge += e.rate_reset)) return "reset";
    if (u < (edge += e.rate_slow_body)) return "slow_body";
    return undefined;
  }

  function authorized(req: IncomingMessage, res: ServerResponse, provider: ProviderState, dialect: SimDialect, query: string, m?: ModelState): boolean {
    if (provider.apiKey === undefined) return true;
    const presented = dialect.presentedKey(req.headers, query);
    if (presented === provider.apiKey) return true;
    const refusal = dialect.unauthorized(presented);
    if (m) count(m, res, refusal);
    else sendReply(res, refusal);
    req.resume();
    return false;
  }

  function reject(res: ServerResponse, reply: WireReply): void {
    tally(unmatched, reply.status);
    sendReply(res, reply);
  }

  function count(m: ModelState, res: ServerResponse, reply: WireReply): void {
    tally(m.counters.responses, reply.status);
    sendReply(res, reply);
  }

  function control(req: IncomingMessage, res: ServerResponse, route: string): void {
    readBody(req, maxBodyBytes, (raw) => {
      if (raw === undefined) return send(res, 413, controlError("the body is too large"));
      if (req.method === "GET" && route === "state") return send(res, 200, JSON.stringify(state()));
      if (req.method === "GET" && route === "stats") return send(res, 200, JSON.stringify(stats()));
      if (req.method === "POST" && route === "reset") {
        reset();
        return send(res, 200, JSON.stringify(state()));
      }
      const slash = route.indexOf("/");
      if (req.method !== "POST" || slash === -1) return send(res, 404, controlError(`no control route ${req.method} /control/${route}`));
      let override: unknown;
      try {
        override = raw.length === 0 ? {} : JSON.parse(raw.toString("utf8"));
      } catch {
        return send(res, 400, controlError("the body is not JSON"));
      }
      try {
        const view = controlModel(decodeURIComponent(route.slice(0, slash)), decodeURIComponent(route.slice(slash + 1)), override);
        send(res, 200, JSON.stringify(view));
      } catch (err) {
        if (!(err instanceof SimControlError)) throw err;
        send(res, err.kind === "unknown_model" ? 404 : 400, controlError(err.message));
      }
    });
  }

  function controlModel(provider: string, model: string, input: unknown): ModelView {
    const m = providers.get(provider)?.models.get(model);
    if (!m) throw new SimControlError("unknown_model", `no simulated model ${provider}/${model}`);
    const parsed = BehaviourOverrideSchema.safeParse(input);
    if (!parsed.success) {
      throw new SimControlError("invalid_override", parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; "));
    }
    const o = parsed.data;
    const errors = o.errors ? { ...m.behaviour.errors, ...o.errors } : m.behaviour.errors;
    if (faultRate(errors) > 1) {
      throw new SimControlError("invalid_override", "errors: the fault rates must add up to at most 1");
    }
    m.behaviour = {
      ...m.behaviour,
      errors,
      latency_ms: o.latency_ms ?? m.behaviour.latency_ms,
      hang_ms: o.hang_ms ?? m.behaviour.hang_ms,
      slow_body_ms: o.slow_body_ms ?? m.behaviour.slow_body_ms,
      disobey_rate: o.disobey_rate ?? m.behaviour.disobey_rate,
      stream_token_delay_ms: o.stream_token_delay_ms ?? m.behaviour.stream_token_delay_ms,
    };
    if (o.stream_fail_after_tokens !== undefined) {
      const { stream_fail_after_tokens: _, ...rest } = m.behaviour;
      m.behaviour = o.stream_fail_after_tokens === null ? rest : { ...rest, stream_fail_after_tokens: o.stream_fail_after_tokens };
    }
    if (o.outage !== undefined) m.outage = o.outage;
    return view(m);
  }

  function state(): SimState {
    const out: SimState = { seed: scenario.seed, models: {} };
    for (const [key, m] of models) out.models[key] = view(m);
    return out;
  }

  function stats(): SimStats {
    const out: SimStats = { models: {}, unmatched: { ...unmatched }, batches: batches.counts() };
    for (const [key, m] of models) out.models[key] = copyCounters(m.counters);
    return out;
  }

  function reset(): void {
    for (const m of models.values()) {
      m.behaviour = m.scripted;
      m.outage = null;
      m.faultDraw = draws(scenario.seed, m.provider, m.model, "fault");
      m.latencyDraw = draws(scenario.seed, m.provider, m.model, "latency");
      m.disobeyDraw = draws(scenario.seed, m.provider, m.model, "disobey");
      m.counters = zeroCounters();
    }
    for (const key of Object.keys(unmatched)) delete unmatched[key];
    completions = 0;
  }

  return {
    listen(port = 0, host = "127.0.0.1") {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const { port: bound } = server.address() as AddressInfo;
          resolve(`http://${host.includes(":") ? `[${host}]` : host}:${bound}`);
        });
      });
    },
    close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      return new Promise((resolve) => {
        // Not running is as good as closed: close() must be safe to call from any cleanup path.
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
    state,
    stats,
    control: controlModel,
    reset,
  };
}

function controlError(message: string): string {
  return JSON.stringify({ error: { message } });
}

function tally(counts: Record<string, number>, status: number): void {
  counts[status] = (counts[status] ?? 0) + 1;
}

function zeroCounters(): ModelCounters {
  return { requests: 0, responses: {}, hangs: 0, resets: 0, malformed: 0, truncated: 0, slow: 0, disobeyed: 0, streamed: 0, streaming: 0 };
}

function copyCounters(c: ModelCounters): ModelCounters {
  return { ...c, responses: { ...c.responses } };
}

function view(m: ModelState): ModelView {
  return { provider: m.provider, model: m.model, behaviour: m.behaviour, outage: m.outage, counters: copyCounters(m.counters) };
}

/** mulberry32 seeded from (seed, provider, model, stream): small, fast and the same on every platform. */
function draws(seed: number, provider: string, model: string, stream: string): () => number {
  let a = fnv1a(`${seed}/${provider}/${model}/${stream}`);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
