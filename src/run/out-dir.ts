/**
 * Output folders given on the command line (a run's --out, a training --out or --checkpoint, the server's
 * --data): checked before any long work starts, and created without Node's recursive mkdir.
 *
 * Why not `fs.mkdirSync(dir, { recursive: true })`: when mkdir of a missing folder fails with ENOENT although
 * its parent exists (as in /proc and other pseudo file systems), Node's recursive mkdir creates the parent
 * (EEXIST, fine) and tries the folder again, forever, at 100 % CPU.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export class OutDirError extends Error {}

const REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  ENOENT: "the file system there does not take new folders",
  ENOTDIR: "a part of the path is a file",
  ENAMETOOLONG: "the name is too long",
};

function reason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code ? `${REASONS[code] ?? "cannot create it"} (${code})` : String((e as Error).message ?? e);
}

/** The deepest existing folder on the way to `dir` (resolved), and the missing folders below it, top first. */
function existingBase(dir: string, label: string): { base: string; missing: string[] } {
  const missing: string[] = [];
  let d = path.resolve(dir);
  for (;;) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOENT")
        throw new OutDirError(`${label}: cannot look at ${d}: ${reason(e)}; choose another folder`);
    }
    if (st) {
      if (!st.isDirectory())
        throw new OutDirError(`${label}: ${d} is a file, not a folder; choose another path`);
      return { base: d, missing: missing.reverse() };
    }
    missing.push(d);
    const up = path.dirname(d);
    if (up === d) throw new OutDirError(`${label}: no part of the path exists`);
    d = up;
  }
}

/**
 * Creates `dir` and any missing parents, one level at a time (each mkdir runs once, so a file system that
 * refuses gives an error instead of a retry loop). `label` names the path in messages (e.g. the option).
 */
export function makeDirs(dir: string, label = dir): void {
  const { missing } = existingBase(dir, label);
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      // A folder made meanwhile by someone else is as good as ours.
      if ((e as NodeJS.ErrnoException).code === "EEXIST" && fs.statSync(d).isDirectory()) continue;
      throw new OutDirError(`${label}: cannot create ${d}: ${reason(e)}; choose a writable folder`);
    }
  }
}

/** Options of the checks: `label` names the path in messages, `overwriteHint` says what to do instead. */
export interface NewDirOptions {
  overwrite?: boolean;
  label?: string;
  overwriteHint?: string;
}

/** Refuses an existing `dir` (a non-empty folder, or anything else) unless `overwrite`; an empty folder is fine. */
export function checkNotExisting(dir: string, opts: NewDirOptions = {}): void {
  if (opts.overwrite) return;
  const target = path.resolve(dir);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(target);
  } catch {
    return;
  }
  if (st.isDirectory() && fs.readdirSync(target).length === 0) return;
  throw new OutDirError(
    `${opts.label ?? dir}: already exists and is not empty (${opts.overwriteHint ?? "choose another folder or remove it"})`,
  );
}

/** `mkdtemp` in `base`, its failure told as one line naming `label`. */
export function makeTempDir(base: string, prefix: string, label: string = base): string {
  try {
    return fs.mkdtempSync(path.join(base, prefix));
  } catch (e) {
    throw new OutDirError(
      `${label}: cannot create folders in ${base}: ${reason(e)}; choose a writable folder`,
    );
  }
}

/**
 * Fails fast when `dir` could not be written as a new folder: it exists (see `checkNotExisting`), or its
 * nearest existing parent is not a folder that takes new folders. That is tried for real with a probe folder,
 * removed at once, since permission bits lie for root and for pseudo file systems. Creates nothing that stays.
 */
export function checkNewDir(dir: string, opts: NewDirOptions = {}): void {
  const label = opts.label ?? dir;
  checkNotExisting(dir, opts);
  const { base } = existingBase(path.dirname(path.resolve(dir)), label);
  fs.rmdirSync(makeTempDir(base, ".lvlm-probe-", label));
}
