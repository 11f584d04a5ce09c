/**
 * glibc gives every large allocation (onnxruntime's per-run intermediates, V8's array buffers) fresh mmap'd
 * pages and returns them on free, so each layer call faults hundreds of MB back in, 4 KiB at a time: at 7B
 * shapes a third of the CPU time was the kernel's. With the tunable `glibc.malloc.hugetlb=1` those mappings
 * get transparent huge pages (docs/performance.md: the LLM backward at 0.70× the CPU time). Tunables are read
 * when a process starts, so the CLI starts itself once more with it set. `LVLM_INTERPRET_HUGEPAGES=0` opts out.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";

const TUNABLE = "glibc.malloc.hugetlb=1";
/** Set in the relaunched process: it must not relaunch again. */
const MARK = "LVLM_INTERPRET_RELAUNCHED";

/** Whether this process should start again with the tunable: Linux with glibc and THP not switched off. */
function wanted(): boolean {
  const env = process.env;
  if (process.platform !== "linux" || env[MARK] || env.LVLM_INTERPRET_HUGEPAGES === "0") return false;
  if (env.GLIBC_TUNABLES?.includes("glibc.malloc.hugetlb")) return false;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)
    ?.header;
  if (!header?.glibcVersionRuntime) return false;
  try {
    return !fs.readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8").includes("[never]");
  } catch {
    return false;
  }
}

/**
 * Runs this command again in a child with the tunable and ends this process as the child ends (its exit status
 * or signal passed on); false where it does not apply (then run the command here). SIGTERM is forwarded; SIGINT
 * and SIGHUP come from the terminal to its whole foreground group, the child included, so forwarding them too
 * would make a second Ctrl-C of a server's graceful shutdown. The child exits if this process dies (SIGKILL).
 */
export async function relaunchWithHugePages(): Promise<boolean> {
  if (process.env[MARK]) watchParent();
  if (!wanted()) return false;
  const tunables = process.env.GLIBC_TUNABLES ? `${process.env.GLIBC_TUNABLES}:${TUNABLE}` : TUNABLE;
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    env: { ...process.env, GLIBC_TUNABLES: tunables, [MARK]: String(process.pid) },
  });
  const forward = (s: NodeJS.Signals) => child.kill(s);
  const wait = () => {};
  process.on("SIGTERM", forward);
  process.on("SIGINT", wait);
  process.on("SIGHUP", wait);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (c, s) => resolve([c, s]));
  });
  process.off("SIGTERM", forward);
  process.off("SIGINT", wait);
  process.off("SIGHUP", wait);
  if (signal) process.kill(process.pid, signal);
  process.exit(code ?? 1);
}

function watchParent(): void {
  const parent = Number(process.env[MARK]);
  // Processes this one starts are not relaunched children (they inherit the tunable itself).
  delete process.env[MARK];
  setInterval(() => {
    if (process.ppid !== parent) process.exit(1);
  }, 1000).unref();
}
