import { defineConfig } from "vitest/config";

// With NATS_URL set, the tests share that one server (test/harness/nats.ts resets the streams
// on it), so test files must not run at once. Otherwise each file spawns its own server.
const sharedServer = Boolean(process.env.NATS_URL);

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "shared/**/*.test.ts"],
    // Real nats-server processes and end-to-end routing: slower than unit tests.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Child processes rather than worker threads: tests spawn and kill servers and handle signals.
    pool: "forks",
    fileParallelism: !sharedServer,
    // Most files wait on servers and processes rather than the CPU: three at a time on two cores
    // took the suite from 8 m 20 s to 4 m 14 s (74 files) without starving the timing-bound ones.
    maxWorkers: sharedServer ? 1 : 3,
  },
});
