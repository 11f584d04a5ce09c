/**
 * The CLI's relaunch with glibc's huge-page tunable (src/cli/huge-pages.ts): where it applies, the command runs
 * in a child that has the tunable, its exit status and signals pass through, and the child does not outlive a
 * killed parent; `LVLM_INTERPRET_HUGEPAGES=0` runs it in place.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

const moduleUrl = pathToFileURL(
  path.join(path.dirname(fileURLToPath(import.meta.url)), "../src/cli/huge-pages.js"),
).href;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "huge-pages-test-"));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Prints what the command process sees, then exits with argv[2] or, given "wait", waits. */
const script = path.join(dir, "command.mjs");
fs.writeFileSync(
  script,
  `import { relaunchWithHugePages } from ${JSON.stringify(moduleUrl)};
if (!(await relaunchWithHugePages())) {
  console.log(JSON.stringify({ pid: process.pid, ppid: process.ppid, tunables: process.env.GLIBC_TUNABLES ?? null, mark: process.env.LVLM_INTERPRET_RELAUNCHED ?? null }));
  if (process.argv[2] === "wait") setInterval(() => {}, 1000);
  else process.exit(Number(process.argv[2]));
}
`,
);

function applies(): boolean {
  if (process.platform !== "linux") return false;
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } };
  if (!report?.header?.glibcVersionRuntime) return false;
  try {
    return !fs.readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8").includes("[never]");
  } catch {
    return false;
  }
}

const baseEnv = { ...process.env };
delete baseEnv.GLIBC_TUNABLES;
delete baseEnv.LVLM_INTERPRET_HUGEPAGES;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  for (const t0 = Date.now(); Date.now() - t0 < ms; ) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return cond();
}

/** Starts the command waiting; resolves with the parent and what the command process printed. */
function startWaiting(): Promise<{ parent: ReturnType<typeof spawn>; seen: { pid: number } }> {
  const parent = spawn(process.execPath, [script, "wait"], {
    env: baseEnv,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    parent.stdout?.on("data", (c) => {
      out += c;
      if (out.includes("\n")) resolve({ parent, seen: JSON.parse(out.split("\n")[0]) });
    });
    parent.on("exit", (c) => reject(new Error(`exited (${c}) before printing`)));
  });
}

describe("relaunch with huge pages", () => {
  test("the command runs with the tunable where it applies, and its exit status passes through", () => {
    const r = spawnSync(process.execPath, [script, "3"], { env: baseEnv, encoding: "utf8" });
    assert.equal(r.status, 3, r.stderr);
    const seen = JSON.parse(r.stdout.trim());
    if (applies()) {
      assert.equal(seen.tunables, "glibc.malloc.hugetlb=1");
      assert.equal(seen.ppid, r.pid, "ran in a child of the process started");
    } else {
      assert.equal(seen.tunables, null);
      assert.equal(seen.pid, r.pid);
    }
    assert.equal(seen.mark, null, "what the command starts is not taken for a relaunched child");
  });

  test("other tunables are kept; LVLM_INTERPRET_HUGEPAGES=0 runs the command in place", () => {
    const kept = spawnSync(process.execPath, [script, "0"], {
      env: { ...baseEnv, GLIBC_TUNABLES: "glibc.malloc.arena_max=2" },
      encoding: "utf8",
    });
    assert.equal(kept.status, 0, kept.stderr);
    assert.equal(
      JSON.parse(kept.stdout.trim()).tunables,
      applies() ? "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1" : "glibc.malloc.arena_max=2",
    );
    const off = spawnSync(process.execPath, [script, "0"], {
      env: { ...baseEnv, LVLM_INTERPRET_HUGEPAGES: "0" },
      encoding: "utf8",
    });
    const seen = JSON.parse(off.stdout.trim());
    assert.equal(seen.tunables, null);
    assert.equal(seen.pid, off.pid, "ran in the process started");
    assert.equal(off.status, 0);
  });

  test("SIGTERM reaches the command, a terminal's Ctrl-C once; a SIGKILLed parent does not leave it running", {
    skip: !applies(),
  }, async () => {
    const a = await startWaiting();
    const exited = new Promise<NodeJS.Signals | null>((r) => a.parent.on("exit", (_c, s) => r(s)));
    a.parent.kill("SIGTERM");
    assert.equal(await exited, "SIGTERM", "the parent ends by the same signal");
    assert.ok(await until(() => !alive(a.seen.pid), 5000), "the command got the signal");

    // A terminal's Ctrl-C goes to the whole group; the parent waits for the command instead of signalling it again.
    const c = await startWaiting();
    const cExited = new Promise<NodeJS.Signals | null>((r) => c.parent.on("exit", (_c, s) => r(s)));
    c.parent.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(alive(c.seen.pid) && c.parent.exitCode === null, "SIGINT to the parent alone is not passed on");
    process.kill(c.seen.pid, "SIGINT");
    assert.equal(await cExited, "SIGINT", "the parent ends as the command did");

    const b = await startWaiting();
    b.parent.kill("SIGKILL");
    assert.ok(await until(() => !alive(b.seen.pid), 5000), "the command exits when its parent is gone");
  });
});
