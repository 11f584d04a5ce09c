/**
 * A run as one archive (`.tar.gz`, entries under `run/`), and its import.
 *
 * Import never trusts the archive: it is first listed and every entry checked (plain files and folders only —
 * no links or devices; names of letters, digits, `.`, `-`, `_` without leading dots, at most two levels below
 * the top folder; bounded count and total size; one top folder), then extracted into a private scratch folder,
 * then the extracted run validated in full ({@link validateRunDir}). Only a run that passes is moved into the
 * data directory under a fresh id and indexed.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Readable } from "node:stream";
import * as tar from "tar";
import { HttpError } from "./http-error.js";
import type { RunStore } from "./run-store.js";
import { RunValidationError, validateRunDir } from "./run-validate.js";

export const ARCHIVE_TOP = "run";
const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const MAX_ENTRIES = 10_000;
const MAX_DEPTH = 3; // top/dir/file

/** Files of a run folder to archive (plain files and folders; no symlinks, no temporary files). */
function runFiles(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
    if (!SEGMENT_RE.test(name) || name.includes(".tmp")) continue;
    const r = rel ? `${rel}/${name}` : name;
    const st = fs.lstatSync(path.join(dir, r));
    if (st.isFile()) out.push(r);
    else if (st.isDirectory() && !rel) out.push(...runFiles(dir, r));
  }
  return out;
}

/** A gzip'd tar stream of the run folder, entries named `run/<file>`. */
export function exportRunStream(runDir: string): Readable {
  const files = runFiles(runDir);
  return tar.create(
    { gzip: { level: 3 }, cwd: runDir, prefix: ARCHIVE_TOP, portable: true, follow: false },
    files,
  ) as unknown as Readable;
}

export interface ImportLimits {
  /** Largest archive accepted, in bytes (compressed). */
  maxArchiveBytes: number;
  /** Largest total of the files inside, in bytes. */
  maxUnpackedBytes: number;
}

/** Saves an upload stream to `file`, failing with 413 past `max` bytes. */
export async function saveUpload(stream: Readable, file: string, max: number): Promise<number> {
  let n = 0;
  const out = fs.createWriteStream(file, { flags: "wx" });
  try {
    for await (const chunk of stream) {
      n += (chunk as Buffer).length;
      if (n > max)
        throw new HttpError(413, `archive is larger than the ${(max / 2 ** 20).toFixed(0)} MiB import limit`);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
    }
  } finally {
    await new Promise<void>((r) => out.end(r));
  }
  if (n === 0) throw new HttpError(400, "empty upload: send the run archive (.tar.gz) as the request body");
  return n;
}

/** Checks every entry of the archive without extracting anything. */
async function checkEntries(file: string, limits: ImportLimits): Promise<void> {
  let count = 0;
  let total = 0;
  let top: string | null = null;
  const seen = new Set<string>();
  let problem: string | null = null;
  const flag = (msg: string) => {
    problem ??= msg;
  };
  try {
    await tar.list({
      file,
      strict: true,
      onReadEntry: (e) => {
        count++;
        if (count > MAX_ENTRIES) flag(`archive has more than ${MAX_ENTRIES} entries`);
        const p = e.path.replace(/\/+$/, "");
        const parts = p.split("/");
        if (e.type !== "File" && e.type !== "OldFile" && e.type !== "Directory")
          flag(`entry "${p}" is a ${e.type}; only files and folders are allowed`);
        if (p.startsWith("/") || parts.some((s) => !SEGMENT_RE.test(s)))
          flag(`entry "${p}" has an unsafe name (absolute, "..", hidden or odd characters)`);
        if (parts.length > MAX_DEPTH) flag(`entry "${p}" is nested too deep`);
        top ??= parts[0];
        if (parts[0] !== top) flag(`archive holds more than one top folder ("${top}", "${parts[0]}")`);
        if (e.type !== "Directory" && parts.length < 2) flag(`entry "${p}" is not inside the run folder`);
        if (seen.has(p)) flag(`entry "${p}" appears twice`);
        seen.add(p);
        total += e.size ?? 0;
        if (total > limits.maxUnpackedBytes)
          flag(`archive unpacks to more than ${(limits.maxUnpackedBytes / 2 ** 20).toFixed(0)} MiB`);
        e.resume();
      },
    });
  } catch (e) {
    throw new HttpError(400, `not a readable run archive (.tar.gz): ${(e as Error).message}`);
  }
  if (problem) throw new HttpError(400, `rejected archive: ${problem}`);
  if (count === 0) throw new HttpError(400, "not a run archive: it has no entries");
}

/**
 * Imports a saved archive file into the store. Returns the new run's id. Any failure leaves nothing behind in
 * the data directory or the index.
 */
export async function importArchive(
  store: RunStore,
  archiveFile: string,
  limits: ImportLimits,
): Promise<string> {
  await checkEntries(archiveFile, limits);
  const scratch = store.scratch("import");
  try {
    const dest = path.join(scratch, "x");
    fs.mkdirSync(dest);
    try {
      await tar.extract({
        file: archiveFile,
        cwd: dest,
        strip: 1,
        strict: true,
        preserveOwner: false,
        noChmod: true,
        filter: (p, e) => {
          const t = (e as tar.ReadEntry).type;
          return t === "File" || t === "OldFile" || t === "Directory";
        },
      });
    } catch (e) {
      throw new HttpError(400, `could not unpack the archive: ${(e as Error).message}`);
    }
    try {
      validateRunDir(dest);
    } catch (e) {
      if (e instanceof RunValidationError) throw new HttpError(422, `not a valid run: ${e.message}`);
      throw e;
    }
    const manifest = JSON.parse(fs.readFileSync(path.join(dest, "manifest.json"), "utf8"));
    const id = store.newId();
    fs.renameSync(dest, store.pathFor(id));
    try {
      store.add(id, manifest, "imported");
    } catch (e) {
      fs.rmSync(store.pathFor(id), { recursive: true, force: true });
      throw e;
    }
    return id;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
