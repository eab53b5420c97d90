import type { OutgoingHttpHeaders, ServerResponse } from "node:http";

/** A JSON body written at once, with its length: no chunked framing around it. */
export function writeJson(res: ServerResponse, status: number, body: string, headers: OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers });
  res.end(body);
}
