import { jetstreamManager } from "@nats-io/jetstream";
import { configPath, loadConfig } from "../../../shared/config/load.ts";
import { connectNats, natsFromEnvironment } from "../../../shared/nats/connect.ts";
import { authorizationConfig } from "../../../shared/nats/permissions.ts";
import { namesOf } from "../../../shared/contract/subjects.ts";
import { allResources, applyResources, compareResources, describeDifference, describeResource, type Comparison, type ProvisionAction } from "../../../shared/nats/provision.ts";
import { parse } from "../args.ts";
import { table } from "../table.ts";
import type { Command } from "./types.ts";
import { summaryOf } from "./catalog.ts";

export const provisionCommand: Command = {
  name: "provision",
  summary: summaryOf("provision"),
  usage: `switchyard provision [--check] [--permissions]

Creates every stream, durable consumer, KV bucket and object store the stack uses — JOBS,
RESULTS, DLQ, BATCH_LINES; the router's two lanes on JOBS and the gateways' batch
collectors on RESULTS and DLQ; the buckets switchyard-models, switchyard-prices,
switchyard-pricing-lease, switchyard-batches and switchyard-responses; the object store
switchyard-files — and brings any that differs from the config (SWITCHYARD_CONFIG) to it.
With a namespace (config \`namespace:\` or SWITCHYARD_NAMESPACE) every name carries it: STAGING_JOBS,
staging-switchyard-models, … (README, "Namespaces"). Idempotent: run it again
after a config change. Prints each resource with what it did: created, updated (and what
changed), or unchanged. Needs JetStream admin rights (the README's admin user).

With \`provision: check\` in the config, services only check these at start and stop with
an error naming what is missing or different, so they can run with least privilege
(README, "Least privilege").

--check        change nothing: print what differs; exit 1 when anything is missing or different
--permissions  print the nats-server authorization block with every Switchyard user's
               permissions (passwords from $ADMIN_PASS, $ROUTER_PASS, … in the server's environment)`,
  async run(argv) {
    const { values } = parse("provision", argv, { check: { type: "boolean" }, permissions: { type: "boolean" } });
    if (values.permissions) {
      // The names of the deployment SWITCHYARD_NAMESPACE (or the config's `namespace`) selects.
      process.stdout.write(`${authorizationConfig(undefined, namesOf(loadConfig(configPath())))}\n`);
      return 0;
    }
    const config = loadConfig(configPath());
    const nc = await connectNats(natsFromEnvironment(), "switchyard-provision");
    try {
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      const resources = allResources(config).map((e) => e.resource);
      if (values.check) {
        const comparisons = await compareResources(jsm, resources);
        process.stdout.write(renderCheck(comparisons));
        return comparisons.some((c) => c.state !== "ok") ? 1 : 0;
      }
      process.stdout.write(renderActions(await applyResources(jsm, resources)));
      return 0;
    } finally {
      await nc.drain().catch(() => {});
    }
  },
};

/** One line per resource, then every change in full (a table would cut long ones). */
export function renderActions(actions: readonly ProvisionAction[]): string {
  const rows = actions.map((a) => [describeResource(a.resource), a.action]);
  const changes = actions.flatMap((a) => a.changes.map((c) => `${describeResource(a.resource)}: ${c}\n`));
  const count = (what: ProvisionAction["action"]) => actions.filter((a) => a.action === what).length;
  return `${table(["resource", "done"], rows)}${changes.length > 0 ? `\nchanged:\n${changes.map((c) => `  ${c}`).join("")}` : ""}\n${count("created")} created, ${count("updated")} updated, ${count("unchanged")} unchanged\n`;
}

export function renderCheck(comparisons: readonly Comparison[]): string {
  const rows = comparisons.map((c) => [describeResource(c.resource), c.state === "ok" ? "as configured" : c.state]);
  const diffs = comparisons.flatMap((c) => (c.state === "different" ? c.differences.map((d) => `  ${describeResource(c.resource)}: ${describeDifference(d)}\n`) : []));
  const bad = comparisons.filter((c) => c.state !== "ok").length;
  return `${table(["resource", "state"], rows)}${diffs.length > 0 ? `\ndifferent:\n${diffs.join("")}` : ""}\n${bad === 0 ? "everything as the config says" : `${bad} to provision: run \`switchyard provision\``}\n`;
}
