#!/usr/bin/env node
// The container health check (Dockerfile HEALTHCHECK, docker-compose.yml): GET /livez on the
// service's ops endpoint, SWITCHYARD_OPS_LISTEN (host:port, set in the image) — or the path
// given (`healthcheck.js /readyz`), or a whole URL for a service without one
// (`healthcheck.js http://127.0.0.1:8790/healthz`, the sim-provider). Exits 0 on a 2xx answer,
// 1 otherwise. Plain Node, no dependencies: the slim image has no curl or wget, and a check
// must not load the whole CLI every few seconds.
const target = process.argv[2] ?? "/livez";

function opsBase() {
  const listen = process.env.SWITCHYARD_OPS_LISTEN;
  const m = listen ? /^(.*):(\d+)$/.exec(listen) : null;
  if (!m) return undefined;
  // A wildcard listen address is reached on loopback.
  const host = ["0.0.0.0", "[::]", "::", ""].includes(m[1]) ? "127.0.0.1" : m[1];
  return `http://${host}:${m[2]}`;
}

const base = /^https?:\/\//.test(target) ? "" : opsBase();
if (base === undefined) {
  process.stderr.write("healthcheck: SWITCHYARD_OPS_LISTEN (host:port) is not set, and no URL was given\n");
  process.exit(1);
}
const url = `${base}${target}`;

try {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) process.stderr.write(`healthcheck: ${url} answered ${res.status}\n`);
  process.exitCode = res.ok ? 0 : 1;
} catch (err) {
  process.stderr.write(`healthcheck: ${url}: ${err?.cause?.code ?? err?.message ?? err}\n`);
  process.exitCode = 1;
}
