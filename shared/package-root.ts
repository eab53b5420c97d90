/**
 * Where Switchyard's own files are: the directory holding its package.json — the repository in
 * a checkout, `node_modules/<package>` once installed, `/app` in the image. Files shipped beside
 * the code (`config/switchyard.yaml`, `config/sim-scenario.yaml`, `config/samples/`) are found
 * from here. A fixed `../..` from a module would not do: the TypeScript runs from `shared/`, the
 * compiled JavaScript from `dist/shared/`, one level deeper.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(from: string): string {
  for (let dir = from; ; ) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`switchyard: no package.json above ${from}`);
    dir = parent;
  }
}

export const PACKAGE_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

/** A path inside the package: `packagePath("config", "switchyard.yaml")`. */
export function packagePath(...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts);
}

/** The package's version (package.json), for `switchyard --version`. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;
}
