/**
 * Runs scenario 6 with hedging off and on in the same run (bench/scenarios/hedging.ts), alone:
 * `npx tsx bench/hedging.ts [--quick]`. Prints the figures as JSON.
 */
import { FULL, QUICK } from "./lib/profile.ts";
import { startStack } from "./lib/stack.ts";
import { hedging } from "./scenarios/hedging.ts";

const profile = process.argv.includes("--quick") ? QUICK : FULL;
const stack = await startStack();
try {
  process.stdout.write(`${JSON.stringify(await hedging(stack, profile), null, 2)}\n`);
} finally {
  await stack.close();
}
process.exit(0);
