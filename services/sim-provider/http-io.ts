/** The simulator's plain HTTP plumbing, shared by the chat routes (`server.ts`) and the batch routes (`batches.ts`). */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { WireReply } from "./dialects.ts";

const JSON_TYPE = "application/json";

/** Collects the body; `undefined` when it exceeds the limit (the rest is drained, not kept). */
export function readBody(req: IncomingMessage, limit: number, done: (body: Buffer | undefined) => void): void {
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  let size = 0;
  req.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) return;
    if (first === undefined) first = chunk;
    else (chunks ??= [first]).push(chunk);
  });
  req.on("end", () => {
    if (size > limit) done(undefined);
    else done(chunks ? Buffer.concat(chunks, size) : (first ?? Buffer.alloc(0)));
  });
}

export function send(res: ServerResponse, status: number, body: string, type = JSON_TYPE, headers?: Record<string, string>): void {
  res.writeHead(status, { ...headers, "content-type": type, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export function sendReply(res: ServerResponse, reply: WireReply): void {
  send(res, reply.status, reply.body, JSON_TYPE, reply.headers);
}
