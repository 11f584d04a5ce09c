#!/usr/bin/env node
/**
 * Makes a fresh clone runnable: `npm test` and `npm start` call this first, so nothing else has to be run after
 * `npm install`. Plain Node (no TypeScript, no dependencies) because it runs before the project is compiled.
 *
 * better-sqlite3 ships no binary we can use (.npmrc disables install scripts, and its prebuilt download needs
 * the network), so its addon is compiled here once, from source, against this Node's headers. The compiler's
 * output goes to a log file; the terminal gets one progress line.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const LOG_DIR = path.join(ROOT, ".cache");
const SQLITE_LOG = path.join(LOG_DIR, "sqlite-build.log");

/** True when the addon loads and opens a database in a child process (a bad binary may crash its loader). */
function sqliteAddonWorks() {
  const probe = spawnSync(process.execPath, ["-e", "require('better-sqlite3')(':memory:').close()"], {
    cwd: ROOT,
    stdio: "ignore",
  });
  return probe.status === 0;
}

function buildSqliteAddon() {
  const pkgDir = path.join(ROOT, "node_modules", "better-sqlite3");
  if (!fs.existsSync(path.join(pkgDir, "package.json"))) {
    fail("node_modules/better-sqlite3 is missing: run `npm install` first");
  }
  fs.mkdirSync(LOG_DIR, { recursive: true });
  const log = fs.openSync(SQLITE_LOG, "w");
  const env = { ...process.env };
  // Debian's nodejs keeps its headers under /usr/include/node; node-gyp would otherwise try to download them.
  if (!env.npm_config_nodedir && fs.existsSync("/usr/include/node/node.h")) env.npm_config_nodedir = "/usr";
  const label = `setup: compiling better-sqlite3's SQLite addon (first run only, about 1–2 min; log: ${path.relative(ROOT, SQLITE_LOG)})`;
  const tty = process.stderr.isTTY;
  const started = Date.now();
  process.stderr.write(tty ? `${label} 0 s` : `${label}\n`);
  const ticker = tty
    ? setInterval(
        () => process.stderr.write(`\r${label} ${Math.round((Date.now() - started) / 1000)} s`),
        1000,
      )
    : undefined;
  return new Promise((resolve) => {
    const child = spawn("npm", ["run", "build-release"], { cwd: pkgDir, env, stdio: ["ignore", log, log] });
    child.on("error", (e) => finish(`cannot start npm (${e.message})`));
    child.on("exit", (code) => finish(code === 0 ? null : `the build exited with code ${code}`));
    function finish(error) {
      if (ticker) clearInterval(ticker);
      fs.closeSync(log);
      const secs = Math.round((Date.now() - started) / 1000);
      if (tty) process.stderr.write("\n");
      if (error || !sqliteAddonWorks()) {
        const tail = fs.readFileSync(SQLITE_LOG, "utf8").trimEnd().split("\n").slice(-15).join("\n");
        fail(
          `${tail}\nsetup: building the SQLite addon failed (${error ?? "the built addon does not load"}); ` +
            `it needs python3, make and a C++ compiler — full log: ${SQLITE_LOG}`,
        );
      }
      process.stderr.write(`setup: SQLite addon built in ${secs} s\n`);
      resolve();
    }
  });
}

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

if (!sqliteAddonWorks()) await buildSqliteAddon();
