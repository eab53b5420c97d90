/**
 * deploy/kubernetes/, checked without a cluster: every Deployment runs a real `switchyard`
 * command from the project's image (the version package.json names), probes /livez and /readyz
 * on the ops port the image exposes, requests resources, reads the ConfigMap's config (which the
 * project's own loader accepts) and takes provider keys from a Secret, never inline; the
 * PodDisruptionBudget covers the router pods and nothing else; NATS (the official chart's
 * values) runs JetStream on persistent volumes with enough servers for the streams' replicas.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { COMMANDS } from "../services/cli/commands/index.ts";
import { parseConfig } from "../shared/config/load.ts";
import { OPS_LISTEN_ENV } from "../shared/ops/process.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DIR = `${ROOT}deploy/kubernetes/`;

interface Probe {
  httpGet?: { path?: string; port?: string | number };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: { secretRef?: { name: string }; configMapRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: { cpu?: string; memory?: string }; limits?: { memory?: string } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string } }[];
}
interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: {
    replicas?: number;
    selector?: { matchLabels?: Record<string, string> } & Record<string, string>;
    template?: { metadata: { labels: Record<string, string> }; spec: PodSpec };
    minAvailable?: number | string;
    ports?: { name?: string; port: number; targetPort?: number | string }[];
  };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

const kustomization = parse(readFileSync(`${DIR}kustomization.yaml`, "utf8")) as { resources: string[]; images?: { name: string; newName?: string; newTag?: string }[] };
const resources: Resource[] = kustomization.resources.flatMap((file) =>
  parseAllDocuments(readFileSync(`${DIR}${file}`, "utf8")).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    return doc.toJS() as Resource;
  }),
);
const natsValues = parse(readFileSync(`${DIR}nats-values.yaml`, "utf8")) as {
  config: { cluster: { enabled: boolean; replicas: number }; jetstream: { enabled: boolean; fileStore: { enabled: boolean; pvc: { enabled: boolean; size: string } } } };
};
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as { version: string };
const dockerfile = readFileSync(`${ROOT}Dockerfile`, "utf8");

const deployments = resources.filter((r) => r.kind === "Deployment");
const byKind = (kind: string) => resources.filter((r) => r.kind === kind);
const container = (d: Resource) => d.spec!.template!.spec.containers[0]!;
const envOf = (c: Container) => Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
const selects = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
const deploymentFor = (command: string) => deployments.find((d) => container(d).args?.[0] === command);

/** Value of a flag given as `--long v` or `--long=v`. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}

describe("deploy/kubernetes", () => {
  it("lists every manifest of the folder in its kustomization", () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml" && f !== "nats-values.yaml");
    expect([...kustomization.resources].sort()).toEqual(files.sort());
  });

  it("has a Deployment for the router, the pricing service and the gateway (and the demo's sim-provider)", () => {
    for (const command of ["router", "pricing", "gateway", "sim-provider"]) expect(deploymentFor(command), command).toBeDefined();
  });

  it("runs a real switchyard command from the project's image, keeping its ENTRYPOINT", () => {
    const names = COMMANDS.map((c) => c.name);
    const image = kustomization.images?.find((i) => i.name === "switchyard");
    expect(image?.newTag, "kustomization images: switchyard").toBe(pkg.version);
    for (const d of deployments) {
      for (const c of d.spec!.template!.spec.containers) {
        expect(c.image, d.metadata.name).toBe(`switchyard:${pkg.version}`);
        expect(c.command, `${d.metadata.name}: command would replace the image's ENTRYPOINT`).toBeUndefined();
        expect(names, d.metadata.name).toContain(c.args?.[0]);
      }
    }
  });

  it("probes /livez and /readyz on the ops endpoint the image sets and exposes", () => {
    const opsPort = Number(new RegExp(`^ENV ${OPS_LISTEN_ENV}=0\\.0\\.0\\.0:(\\d+)$`, "m").exec(dockerfile)?.[1]);
    expect(opsPort).toBeGreaterThan(0);
    for (const d of deployments.filter((d) => container(d).args?.[0] !== "sim-provider")) {
      const c = container(d);
      const ops = c.ports?.find((p) => p.name === "ops");
      expect(ops?.containerPort, `${d.metadata.name}: port "ops"`).toBe(opsPort);
      expect(envOf(c)[OPS_LISTEN_ENV] ?? `0.0.0.0:${opsPort}`, d.metadata.name).toBe(`0.0.0.0:${opsPort}`);
      expect(c.livenessProbe?.httpGet, `${d.metadata.name}: livenessProbe`).toEqual({ path: "/livez", port: "ops" });
      expect(c.readinessProbe?.httpGet, `${d.metadata.name}: readinessProbe`).toEqual({ path: "/readyz", port: "ops" });
    }
    // The sim-provider (a demo) has no ops endpoint: its /healthz on the port it serves.
    const sim = container(deploymentFor("sim-provider")!);
    expect(sim.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
    expect(sim.readinessProbe?.httpGet).toEqual({ path: "/healthz", port: "http" });
  });

  it("requests CPU and memory for every container, and caps its memory", () => {
    for (const d of deployments) {
      for (const c of d.spec!.template!.spec.containers) {
        expect(c.resources?.requests?.cpu, `${d.metadata.name}: requests.cpu`).toBeDefined();
        expect(c.resources?.requests?.memory, `${d.metadata.name}: requests.memory`).toBeDefined();
        expect(c.resources?.limits?.memory, `${d.metadata.name}: limits.memory`).toBeDefined();
      }
    }
  });

  it("runs as the image's non-root user", () => {
    const uid = Number(/^USER\s+(\d+)/m.exec(dockerfile.slice(dockerfile.lastIndexOf("\nFROM ")))?.[1]);
    for (const d of deployments) {
      const sc = d.spec!.template!.spec.securityContext;
      expect(sc?.runAsNonRoot, d.metadata.name).toBe(true);
      expect(sc?.runAsUser, d.metadata.name).toBe(uid);
    }
  });

  it("matches every selector to its pod template", () => {
    for (const d of deployments) expect(selects(d.spec!.selector!.matchLabels!, d.spec!.template!.metadata.labels), d.metadata.name).toBe(true);
  });

  it("covers the router pods, and only them, with a PodDisruptionBudget that leaves room to evict", () => {
    const router = deploymentFor("router")!;
    const pdbs = byKind("PodDisruptionBudget").filter((p) => selects(p.spec!.selector!.matchLabels!, router.spec!.template!.metadata.labels));
    expect(pdbs).toHaveLength(1);
    const pdb = pdbs[0]!;
    for (const d of deployments.filter((d) => d !== router)) expect(selects(pdb.spec!.selector!.matchLabels!, d.spec!.template!.metadata.labels), d.metadata.name).toBe(false);
    expect(typeof pdb.spec!.minAvailable).toBe("number");
    expect(pdb.spec!.minAvailable as number).toBeGreaterThanOrEqual(1);
    expect(pdb.spec!.minAvailable as number).toBeLessThan(router.spec!.replicas!);
  });

  it("serves the gateway and the sim-provider on the ports their commands listen on, through Services", () => {
    for (const [command, portFlag] of [["gateway", "--listen"], ["sim-provider", "--port"]] as const) {
      const d = deploymentFor(command)!;
      const c = container(d);
      const port = Number(flag(c.args!, portFlag)!.split(":").at(-1));
      expect(c.ports?.find((p) => p.name === "http")?.containerPort, command).toBe(port);
      const service = byKind("Service").find((s) => selects(s.spec!.selector as Record<string, string>, d.spec!.template!.metadata.labels));
      expect(service, `a Service for ${command}`).toBeDefined();
      expect(service!.spec!.ports![0]!.targetPort).toBe("http");
    }
    // The config's providers reach the sim-provider through its Service.
    const sim = byKind("Service").find((s) => selects(s.spec!.selector as Record<string, string>, deploymentFor("sim-provider")!.spec!.template!.metadata.labels))!;
    for (const d of deployments) {
      const url = envOf(container(d)).SIM_PROVIDER_URL;
      if (url === undefined) continue;
      expect(new URL(url).hostname, d.metadata.name).toBe(sim.metadata.name);
      expect(Number(new URL(url).port), d.metadata.name).toBe(sim.spec!.ports![0]!.port);
    }
  });

  it("points every service at the NATS the chart installs (release `nats`)", () => {
    for (const d of deployments.filter((d) => container(d).args?.[0] !== "sim-provider")) {
      const url = new URL(envOf(container(d)).NATS_URL!);
      expect(url.hostname, d.metadata.name).toBe("nats");
      expect(url.port || "4222").toBe("4222");
    }
  });

  it("mounts the ConfigMap where SWITCHYARD_CONFIG looks, and its config loads", () => {
    const configMap = byKind("ConfigMap")[0]!;
    for (const d of deployments.filter((d) => container(d).args?.[0] !== "sim-provider")) {
      const c = container(d);
      const file = envOf(c).SWITCHYARD_CONFIG!;
      const volume = d.spec!.template!.spec.volumes!.find((v) => v.configMap?.name === configMap.metadata.name);
      expect(volume, `${d.metadata.name}: a volume from ${configMap.metadata.name}`).toBeDefined();
      const mount = c.volumeMounts!.find((m) => m.name === volume!.name)!;
      expect(mount.readOnly).toBe(true);
      expect(file.startsWith(`${mount.mountPath}/`), `${d.metadata.name}: ${file} in ${mount.mountPath}`).toBe(true);
      expect(configMap.data![file.slice(mount.mountPath.length + 1)], `${d.metadata.name}: ${file}`).toBeDefined();
    }
    const env = envOf(container(deploymentFor("router")!));
    const config = parseConfig(configMap.data!["switchyard.yaml"]!, "deploy/kubernetes/configmap.yaml", env);
    expect(Object.keys(config.tasks).length).toBeGreaterThan(0);
    expect(natsValues.config.cluster.enabled).toBe(true);
    expect(natsValues.config.cluster.replicas, "NATS servers for streams.replicas").toBeGreaterThanOrEqual(config.streams.replicas);
  });

  it("keeps secrets out of the manifests: provider keys come from a Secret, the config names only variables", () => {
    expect(byKind("Secret"), "a Secret with its values in the repository").toEqual([]);
    const secretName = /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i;
    for (const d of deployments) {
      const c = container(d);
      for (const e of c.env ?? []) if (secretName.test(e.name)) expect(e.value, `${d.metadata.name}: ${e.name} inline`).toBeUndefined();
    }
    for (const command of ["router", "pricing", "gateway"]) {
      const refs = (container(deploymentFor(command)!).envFrom ?? []).map((f) => f.secretRef?.name);
      expect(refs, command).toContain("switchyard-provider-keys");
    }
    const text = byKind("ConfigMap")[0]!.data!["switchyard.yaml"]!;
    const keys = [...text.matchAll(/^\s*api_key:\s*(.*)$/gm)].map((m) => m[1]!.trim());
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) expect(k, "api_key must be a ${VARIABLE}").toMatch(/^\$\{[A-Z0-9_]+(:-[^}]*)?\}$/);
  });

  it("runs NATS with JetStream on persistent volumes (values for the nats/nats chart)", () => {
    const { jetstream } = natsValues.config;
    expect(jetstream.enabled).toBe(true);
    expect(jetstream.fileStore.enabled).toBe(true);
    expect(jetstream.fileStore.pvc.enabled).toBe(true);
    expect(jetstream.fileStore.pvc.size).toMatch(/^\d+(Gi|Ti)$/);
  });
});
