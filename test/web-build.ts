/** The built web app for the browser tests: rebuilt (vite) when missing or older than a source file of the app. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { ROOT } from "./fixture-utils.js";

export const WEB_DIR = path.join(ROOT, "dist/web");

/** The web build is missing or older than a source file of the app (web/, or the view code it bundles). */
function webBuildStale(): boolean {
  const built = path.join(WEB_DIR, "index.html");
  if (!fs.existsSync(built)) return true;
  const t = fs.statSync(built).mtimeMs;
  const newer = (dir: string): boolean =>
    fs.readdirSync(dir, { withFileTypes: true }).some((e) => {
      const p = path.join(dir, e.name);
      return e.isDirectory() ? newer(p) : fs.statSync(p).mtimeMs > t;
    });
  // The app also bundles view code from src/interpret/views (map-layers.ts).
  return newer(path.join(ROOT, "web")) || newer(path.join(ROOT, "src/interpret/views"));
}

export function ensureWebBuild(): void {
  if (!webBuildStale()) return;
  const r = spawnSync(
    process.execPath,
    [
      path.join(ROOT, "node_modules/vite/bin/vite.js"),
      "build",
      "--config",
      "web/vite.config.ts",
      "--logLevel",
      "warn",
    ],
    { cwd: ROOT, encoding: "utf8" },
  );
  assert.equal(r.status, 0, `vite build failed: ${r.stderr}`);
}
