/** Which scenarios make up `npm run chaos`, in the order they run. */
import { clusterLeaderKills, deadlines, hostile, natsRestart, pricingRestarts, providerStorms, workerKills, type Scenario } from "./scenarios.ts";
import { replays } from "./replay-scenario.ts";

export const ALL_SCENARIOS: readonly Scenario[] = [workerKills, natsRestart, clusterLeaderKills, providerStorms, pricingRestarts, hostile, deadlines, replays];
