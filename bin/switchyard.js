#!/usr/bin/env node
// The `switchyard` command. The installed package and the image carry the JavaScript that
// `npm run build` compiled into dist/, and no TypeScript: they run that. A checkout has the
// TypeScript sources and runs them through tsx (a dev dependency), so `npm start` and `npm test`
// need no build step and never run a dist/ older than the sources beside it.
// (`node dist/services/cli/main.js` runs a checkout's compiled output, after `npm run build`.)
import { existsSync } from "node:fs";
import module from "node:module";

const source = new URL("../services/cli/main.ts", import.meta.url);
const compiled = new URL("../dist/services/cli/main.js", import.meta.url);

async function registerTsx() {
  try {
    const { register } = await import("tsx/esm/api");
    register();
    return true;
  } catch (err) {
    if (err?.code === "ERR_MODULE_NOT_FOUND") return false;
    throw err;
  }
}

if (existsSync(source) && (await registerTsx())) {
  await import(source.href);
} else if (existsSync(compiled)) {
  // Node 22.1+ keeps V8's compiled code between runs (in the OS temp dir): a faster start. A
  // cache it cannot write is skipped, never an error.
  module.enableCompileCache?.();
  await import(compiled.href);
} else {
  process.stderr.write(
    existsSync(source)
      ? "switchyard: this checkout has neither tsx (npm ci installs it) nor a build (npm run build)\n"
      : "switchyard: dist/ is missing from this package; reinstall it, or run `npm run build` in a checkout\n",
  );
  process.exitCode = 1;
}
