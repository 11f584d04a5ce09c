#!/usr/bin/env node
// Launcher for `npx lvlm-interpret`: builds the TypeScript once if dist/ is missing, then runs the CLI.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const main = join(root, "dist/src/cli/main.js");
if (!existsSync(main)) {
  process.stderr.write("building lvlm-interpret (first run)…\n");
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.json")], { stdio: "inherit" });
}
await import(pathToFileURL(main).href);
