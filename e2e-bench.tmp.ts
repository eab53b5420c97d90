import { FULL } from "./bench/lib/profile.ts";
import { startStack } from "./bench/lib/stack.ts";
import { endToEnd } from "./bench/scenarios/throughput.ts";
const stack = await startStack({});
try {
  const p = { ...FULL, reps: 5 };
  const one = await endToEnd(stack, p, 1);
  const two = await endToEnd(stack, p, 2);
  console.log(JSON.stringify({ one: { jps: one.jobsPerSec, cpu: one.consumerCpuMsPer1k }, two: { jps: two.jobsPerSec, cpu: two.consumerCpuMsPer1k } }));
} finally {
  await stack.close();
}
