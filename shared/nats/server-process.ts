/**
 * Spawns a real nats-server with JetStream, the way nats.js's own test kit does: a generated
 * config with random ports, a ports file to learn them, and a store folder that survives a
 * restart. Used by `switchyard up` (when NATS_URL is unset) and by the test harness.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SwitchyardError } from "../errors.ts";

export interface NatsServerOptions {
  /** JetStream store; a fresh temporary folder when absent (removed on `stop({ clean: true })`). */
  storeDir?: string;
  /** Client port; random when absent. Kept across restarts. */
  port?: number;
  host?: string;
  /** For clusters: this node's name, its cluster port and the routes to its peers. */
  cluster?: { name: string; serverName: string; port: number; routes: string[] };
  /** Extra lines appended to the generated config. */
  extraConfig?: string;
  /**
   * Run the server in its own process group, so a Ctrl-C at the terminal reaches only this
   * process, which can then stop what uses the server before the server itself (`switchyard
   * up`, the demo). Without it the server shares the caller's group and a Ctrl-C ends both at
   * once, as suits a test run.
   */
  ownProcessGroup?: boolean;
}

export interface NatsServerHandle {
  readonly url: string;
  readonly port: number;
  readonly httpPort: number;
  readonly storeDir: string;
  pid(): number | undefined;
  /** SIGKILL, as a crash would; the store stays. */
  kill(): Promise<void>;
  /** Starts again on the same ports and store. */
  restart(): Promise<void>;
  stop(opts?: { clean?: boolean }): Promise<void>;
}

export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NATS_SERVER_BIN) return env.NATS_SERVER_BIN;
  const dirs = [...(env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin", "/usr/local/bin"];
  for (const dir of dirs) {
    const candidate = join(dir, "nats-server");
    if (dir && existsSync(candidate)) return candidate;
  }
  throw new SwitchyardError(
    "nats_server_missing",
    "nats-server not found (looked on PATH and in /usr/sbin). Install it: `apt-get install nats-server` on Debian/Ubuntu, " +
      "`brew install nats-server` on macOS, or a release from https://github.com/nats-io/nats-server/releases — " +
      "or set NATS_URL to a running server with JetStream enabled.",
  );
}

export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const bin = findNatsServer();
  const host = opts.host ?? "127.0.0.1";
  const ownStore = opts.storeDir === undefined;
  const storeDir = opts.storeDir ?? (await mkdtemp(join(tmpdir(), "switchyard-nats-")));
  await mkdir(storeDir, { recursive: true });
  const runDir = await mkdtemp(join(tmpdir(), "switchyard-nats-run-"));
  let port = opts.port ?? -1;
  let httpPort = -1;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const launch = async () => {
    const lines = [
      `host: "${host}"`,
      `port: ${port}`,
      `http: "${host}:${httpPort}"`,
      `ports_file_dir: "${runDir}"`,
      `max_payload: 8MB`,
      `jetstream { store_dir: "${storeDir}" }`,
    ];
    if (opts.cluster) {
      lines.push(
        `server_name: "${opts.cluster.serverName}"`,
        `cluster { name: "${opts.cluster.name}", listen: "${host}:${opts.cluster.port}", routes: [${opts.cluster.routes.map((r) => `"${r}"`).join(", ")}] }`,
      );
    }
    if (opts.extraConfig) lines.push(opts.extraConfig);
    const conf = join(runDir, "nats.conf");
    await writeFile(conf, lines.join("\n") + "\n");
    const proc = spawn(bin, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"], detached: opts.ownProcessGroup === true });
    child = proc;
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    const portsFile = join(runDir, `nats-server_${proc.pid}.ports`);
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`nats-server exited with code ${proc.exitCode}: ${stderr.trim()}`);
      if (Date.now() > deadline) {
        proc.kill("SIGKILL");
        throw new Error(`nats-server did not start within 15 s: ${stderr.trim()}`);
      }
      const ports = await readFile(portsFile, "utf8").then((t) => JSON.parse(t) as { nats: string[]; monitoring: string[] }).catch(() => undefined);
      if (ports?.nats[0] && ports.monitoring?.[0]) {
        port = Number(new URL(ports.nats[0]).port);
        httpPort = Number(new URL(ports.monitoring[0]).port);
        if (await accepts(host, port)) return;
      }
      await sleep(25);
    }
  };
  // Should this process end without stop() (an uncaught error, process.exit), the server must
  // not outlive it: nothing would ever stop it. Nor may a temporary store (best effort: the
  // server may still be dying).
  const killOnExit = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    for (const dir of ownStore ? [runDir, storeDir] : [runDir]) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 20 });
      } catch {
        // Left behind; nothing more can be done on the way out.
      }
    }
  };
  process.on("exit", killOnExit);
  try {
    await launch();
  } catch (err) {
    process.off("exit", killOnExit);
    await rm(runDir, { recursive: true, force: true });
    if (ownStore) await rm(storeDir, { recursive: true, force: true });
    throw err;
  }

  const handle: NatsServerHandle = {
    get url() {
      return `nats://${host}:${port}`;
    },
    get port() {
      return port;
    },
    get httpPort() {
      return httpPort;
    },
    storeDir,
    pid: () => child?.pid,
    async kill() {
      child?.kill("SIGKILL");
      await exited;
    },
    async restart() {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
      await launch();
    },
    async stop({ clean = ownStore } = {}) {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child?.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      process.off("exit", killOnExit);
      await rm(runDir, { recursive: true, force: true });
      if (clean) await rm(storeDir, { recursive: true, force: true });
    },
  };
  return handle;
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
