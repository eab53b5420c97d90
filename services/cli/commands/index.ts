/**
 * Every `switchyard` command, in help order. Kept apart from main.ts, which runs the CLI on
 * import, so tests and tools can list the commands without starting anything.
 */
import { batchesCommand } from "./batches.ts";
import { budgetsCommand } from "./budgets.ts";
import { demoCommand } from "./demo.ts";
import { dlqCommand } from "./dlq.ts";
import { gatewayCommand } from "./gateway.ts";
import { pricesCommand } from "./prices.ts";
import { pricingCommand } from "./pricing.ts";
import { provisionCommand } from "./provision.ts";
import { publishCommand } from "./publish.ts";
import { replayCommand } from "./replay.ts";
import { routerCommand } from "./router.ts";
import { simProviderCommand } from "./sim-provider.ts";
import { spendCommand } from "./spend.ts";
import { streamsCommand } from "./streams.ts";
import { tailCommand } from "./tail.ts";
import type { Command } from "./types.ts";
import { upCommand } from "./up.ts";
import { verifyCommand } from "./verify.ts";

export const COMMANDS: readonly Command[] = [upCommand, routerCommand, gatewayCommand, pricingCommand, pricesCommand, budgetsCommand, simProviderCommand, publishCommand, tailCommand, dlqCommand, spendCommand, replayCommand, provisionCommand, batchesCommand, streamsCommand, verifyCommand, demoCommand];
