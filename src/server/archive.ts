/**
 * A run as one archive (`.tar.gz`, entries under `run/`), and its import.
 *
 * Import never trusts the archive and never holds it whole. The upload streams through the checks in one pass:
 * compressed bytes are counted (the archive limit), gunzip runs on libuv's thread pool (never on the event
 * loop), unpacked bytes are counted against the unpacked limit and the compression ratio (a decompression
 * bomb is refused while streaming, long before it is written), and each tar entry is checked from its header
 * before its data is read — plain files and folders only (no links or devices), names of letters, digits,
 * `.`, `-`, `_` without leading dots, at most two levels below the one top folder, no duplicates, bounded count
 * and declared size. Entries are written into a private scratch folder; the run is then validated in full on
 * a worker thread ({@link validateRunDirOffThread}) and only a run that passes is moved into the data
 * directory under a fresh id and indexed. Any failure removes the scratch folder.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { finished, type Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import * as zlib from "node:zlib";
import * as tar from "tar";
import { HttpError } from "./http-error.js";
import type { RunStore } from "./run-store.js";
import { RunValidationError, validateRunDirOffThread } from "./run-validate.js";

export const ARCHIVE_TOP = "run";
const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const MAX_ENTRIES = 10_000;
const MAX_DEPTH = 3; // top/dir/file
/** The ratio is judged only past this many unpacked bytes: a small archive's tar padding compresses very well. */
export const RATIO_FLOOR_BYTES = 16 * 2 ** 20;
/** Pax/GNU long-name headers of a run's short names are tiny; a larger one is refused, not buffered. */
const MAX_META_ENTRY_BYTES = 64 * 1024;

const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
/** An entry's name as shown in a message: quoted (one line whatever it holds) and cut short. */
const shownPath = (p: string) => JSON.stringify(p.length > 120 ? `${p.slice(0, 117)}…` : p);

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

/** Bytes of the tar stream {@link exportRunStream} writes for these files (headers, padding, end blocks). */
function tarSize(dir: string, files: string[]): number {
  const dirs = new Set(files.filter((f) => f.includes("/")).map((f) => f.split("/")[0]));
  let n = 512 * (1 + dirs.size) + 1024;
  for (const f of files) n += 512 + Math.ceil(fs.lstatSync(path.join(dir, f)).size / 512) * 512;
  return n;
}

/**
 * Refuses (409) to export a run that would not import back: it must pass the importer's validation and fit
 * the unpacked-size limit.
 */
export async function checkExportable(runDir: string, limits: Pick<ImportLimits, "maxUnpackedBytes">) {
  try {
    await validateRunDirOffThread(runDir);
  } catch (e) {
    if (e instanceof RunValidationError)
      throw new HttpError(409, `this run cannot be exported, it would not import back: ${e.message}`);
    throw e;
  }
  const size = tarSize(runDir, runFiles(runDir));
  if (size > limits.maxUnpackedBytes)
    throw new HttpError(
      409,
      `this run cannot be exported: it unpacks to ${mib(size)}, more than the ${mib(limits.maxUnpackedBytes)} unpacked-size limit of imports (--max-unpacked-mb)`,
    );
}

/** A gzip'd tar stream of the run folder, entries named `run/<file>`; gzip runs off the event loop. */
export function exportRunStream(runDir: string): Readable {
  const files = runFiles(runDir);
  const pack = tar.create({ cwd: runDir, prefix: ARCHIVE_TOP, portable: true, follow: false }, files);
  const gz = zlib.createGzip({ level: 3 });
  pack.on("error", (e: unknown) => gz.destroy(e as Error));
  pack.pipe(gz);
  return gz;
}

export interface ImportLimits {
  /** Largest archive accepted, in bytes (compressed). */
  maxArchiveBytes: number;
  /** Largest unpacked tar stream (files, headers and padding), in bytes. */
  maxUnpackedBytes: number;
  /** Largest unpacked ÷ compressed ratio, judged past {@link RATIO_FLOOR_BYTES} unpacked. */
  maxRatio: number;
}

/** Passes bytes through, counting them; `check` turns a running total into a refusal. */
class ByteCounter extends Transform {
  bytes = 0;
  constructor(private readonly check: (total: number, chunk: Buffer) => HttpError | null) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    const err = this.check(this.bytes, chunk);
    if (err) cb(err);
    else cb(null, chunk);
  }
}

/** Header checks of the entries seen so far; each problem is one line naming the entry. */
class EntryRules {
  count = 0;
  declared = 0;
  top: string | null = null;
  /** Path (top folder stripped) → "file" | "dir", to refuse duplicates and files used as folders. */
  readonly kinds = new Map<string, "file" | "dir">();

  constructor(private readonly limits: ImportLimits) {}

  /** The entry's path below the top folder ("" for the top folder itself), or a refusal. */
  check(e: tar.ReadEntry): string {
    const reject = (msg: string) => new HttpError(400, `rejected archive: ${msg}`);
    const p = e.path.replace(/\/+$/, "");
    const shown = shownPath(p);
    if (++this.count > MAX_ENTRIES) throw reject(`archive has more than ${MAX_ENTRIES} entries`);
    if (e.type !== "File" && e.type !== "OldFile" && e.type !== "Directory")
      throw reject(`entry ${shown} is a ${e.type}; only files and folders are allowed`);
    const parts = p.split("/");
    if (p.startsWith("/") || parts.some((s) => !SEGMENT_RE.test(s)))
      throw reject(`entry ${shown} has an unsafe name (absolute, "..", hidden or odd characters)`);
    if (parts.length > MAX_DEPTH) throw reject(`entry ${shown} is nested too deep`);
    this.top ??= parts[0];
    if (parts[0] !== this.top)
      throw reject(
        `archive holds more than one top folder (${JSON.stringify(this.top)}, ${JSON.stringify(parts[0])})`,
      );
    const kind = e.type === "Directory" ? "dir" : "file";
    if (kind === "file" && parts.length < 2) throw reject(`entry ${shown} is not inside the run folder`);
    const rel = parts.slice(1).join("/");
    if (rel === "") return rel;
    if (this.kinds.has(rel)) throw reject(`entry ${shown} appears twice`);
    if (parts.length === 3 && this.kinds.get(parts[1]) === "file")
      throw reject(`entry ${shown} is inside ${JSON.stringify(parts[1])}, which is a file`);
    this.kinds.set(rel, kind);
    if (parts.length === 3 && !this.kinds.has(parts[1])) this.kinds.set(parts[1], "dir");
    // Declared sizes count before any data is read: a header promising a huge file is refused at once.
    this.declared += e.size ?? 0;
    if (this.declared > this.limits.maxUnpackedBytes)
      throw new HttpError(
        413,
        `archive unpacks to more than the ${mib(this.limits.maxUnpackedBytes)} unpacked-size limit (entry ${shown} declares ${e.size} bytes); for a real run that large, raise the server's --max-unpacked-mb`,
      );
    return rel;
  }
}

/** A failure to write the import into the data folder: the server's problem, told without host paths. */
function diskError(e: unknown): HttpError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === "ENOSPC" || code === "EDQUOT")
    return new HttpError(507, "the server's disk is full; the run was not imported");
  return new HttpError(
    500,
    `could not write the imported run into the data folder (${code ?? "unknown error"})`,
  );
}

const CHOOSE_EXPORT = "choose a .tar.gz saved with “Export run”";

/**
 * A one-line reason from a zlib or tar error, in words a user can act on: the libraries' codes and messages
 * ("Z_DATA_ERROR", "TAR_BAD_ARCHIVE", "invalid base256 encoding") say nothing to someone importing a run.
 */
export function reason(e: unknown): string {
  const code = String((e as NodeJS.ErrnoException)?.code ?? "");
  const message = String((e as Error)?.message ?? e)
    .split("\n")[0]
    .replace(/^TAR_[A-Z_]+: /, "");
  if (code === "Z_DATA_ERROR") return `the file is not gzip-compressed; ${CHOOSE_EXPORT}`;
  if (code === "Z_BUF_ERROR" || /unexpected end of file/i.test(message))
    return "the file ends early (an incomplete download or copy?); export or copy the run again";
  if (code.startsWith("TAR_") || /archive format|base256|checksum/i.test(message))
    return `it is gzip-compressed, but what it holds is not a run's tar archive; ${CHOOSE_EXPORT}`;
  return message;
}

/**
 * Unpacks the archive stream under the limits, one pass, nothing buffered whole, into the empty folder
 * `dest()` gives (asked for at the first entry, so a refused upload often touches no disk at all). Throws an
 * {@link HttpError} naming the first problem; files written so far stay for the caller to remove.
 */
async function unpackInto(source: Readable, dest: () => string, limits: ImportLimits): Promise<void> {
  const rules = new EntryRules(limits);
  const abort = new AbortController();
  let failure: Error | null = null;
  const fail = (e: Error) => {
    failure ??= e;
    abort.abort(failure);
  };
  const compressed = new ByteCounter((n) =>
    n > limits.maxArchiveBytes
      ? new HttpError(
          413,
          `archive is larger than the ${mib(limits.maxArchiveBytes)} import limit; for a real run that large, raise the server's --max-import-mb`,
        )
      : null,
  );
  let head = Buffer.alloc(0);
  const unpacked = new ByteCounter((n, chunk) => {
    if (head.length < 2) {
      head = Buffer.concat([head, chunk.subarray(0, 2)]);
      // tar's parser would gunzip a nested gzip stream itself, synchronously: refuse it.
      if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b)
        return new HttpError(400, "rejected archive: it is compressed twice (a .tar.gz inside the gzip)");
    }
    if (n > limits.maxUnpackedBytes)
      return new HttpError(
        413,
        `archive unpacks to more than the ${mib(limits.maxUnpackedBytes)} unpacked-size limit; for a real run that large, raise the server's --max-unpacked-mb`,
      );
    if (n > RATIO_FLOOR_BYTES && n > limits.maxRatio * compressed.bytes)
      return new HttpError(
        413,
        `archive expands more than ${limits.maxRatio}× when unpacked (a decompression bomb?); real runs gzip about 2×, for one that does not raise the server's --max-import-ratio`,
      );
    return null;
  });

  const writers = new Set<Promise<void>>();
  const outs = new Set<fs.WriteStream>();
  const parser = new tar.Parser({ strict: true, zstd: false, maxMetaEntrySize: MAX_META_ENTRY_BYTES });
  parser.on("error", (e: Error) =>
    fail(new HttpError(400, `not a readable run archive (.tar.gz): ${reason(e)}`)),
  );
  parser.on("ignoredEntry", (e: tar.ReadEntry) =>
    fail(
      new HttpError(
        400,
        e.meta
          ? `rejected archive: a ${e.type} header of ${e.size} bytes, far more than a run's file names need`
          : `rejected archive: entry ${shownPath(e.path)} has an unsupported type (${e.type})`,
      ),
    ),
  );
  parser.on("entry", (e: tar.ReadEntry) => {
    let rel: string;
    try {
      rel = rules.check(e);
    } catch (err) {
      e.resume();
      return fail(err as Error);
    }
    if (failure) return e.resume();
    try {
      writeEntry(e, path.join(dest(), rel));
    } catch (err) {
      e.resume();
      fail(diskError(err));
    }
  });

  /** Creates a checked entry in the scratch folder: a folder, or a file streamed from the archive. */
  const writeEntry = (e: tar.ReadEntry, target: string) => {
    if (e.type === "Directory") {
      fs.mkdirSync(target, { recursive: true, mode: 0o755 });
      return e.resume();
    }
    fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 });
    // "wx": a fresh file only; the scratch folder holds nothing but what the checked entries created.
    const out = fs.createWriteStream(target, { flags: "wx", mode: 0o644 });
    outs.add(out);
    writers.add(
      new Promise<void>((resolve) => {
        finished(out, (err) => {
          if (err) fail(diskError(err));
          resolve();
        });
      }),
    );
    out.on("error", () => e.resume());
    e.pipe(out);
  };

  /** Resolves on the parser's `event` or on a failure, whichever comes first. */
  const parserOrFailure = (event: "drain" | "end", start?: () => void) =>
    new Promise<void>((resolve) => {
      const done = () => {
        parser.off(event, done);
        abort.signal.removeEventListener("abort", done);
        resolve();
      };
      parser.on(event, done);
      abort.signal.addEventListener("abort", done);
      start?.();
    });
  /** Feeds the tar parser, honouring its back-pressure; stops at the first failure. */
  const feed = async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) {
      if (failure) throw failure;
      if (!parser.write(chunk)) await parserOrFailure("drain");
      if (failure) throw failure;
    }
    await parserOrFailure("end", () => parser.end());
    if (failure) throw failure;
  };

  // The upload is piped in (not part of the pipeline) so a refusal leaves the request readable for the reply.
  finished(source, (err) => {
    if (err) fail(new HttpError(400, "the upload was interrupted before the archive was complete"));
  });
  source.pipe(compressed);
  try {
    await pipeline(compressed, zlib.createGunzip(), unpacked, feed, { signal: abort.signal });
  } catch (e) {
    if (compressed.bytes === 0 && !failure)
      fail(new HttpError(400, "empty upload: send the run archive (.tar.gz) as the request body"));
    else if (e instanceof HttpError) fail(e);
    else fail(new HttpError(400, `not a readable run archive (.tar.gz): ${reason(e)}`));
  }
  // Stop reading the upload (the rest is discarded so the reply still reaches the client), close every file.
  source.unpipe(compressed);
  source.resume();
  if (failure) for (const out of outs) out.destroy();
  await Promise.all(writers);
  if (failure) throw failure;
  if (compressed.bytes === 0)
    throw new HttpError(400, "empty upload: send the run archive (.tar.gz) as the request body");
  if (rules.count === 0) throw new HttpError(400, "not a run archive: it has no entries");
}

/**
 * Imports an archive stream (an upload) into the store. Returns the new run's id. Any failure leaves nothing
 * behind in the data directory or the index.
 */
export async function importArchive(
  store: RunStore,
  source: Readable,
  limits: ImportLimits,
  /** The uploaded file's name, kept in the index so the list tells an import from its original. */
  origin: string | null = null,
): Promise<string> {
  let scratch: string | null = null;
  let folder: string | null = null;
  const dest = () => {
    if (folder) return folder;
    scratch = store.scratch("import");
    folder = path.join(scratch, "x");
    fs.mkdirSync(folder);
    return folder;
  };
  try {
    await unpackInto(source, dest, limits);
    let manifest: Awaited<ReturnType<typeof validateRunDirOffThread>>;
    try {
      manifest = await validateRunDirOffThread(dest());
    } catch (e) {
      if (e instanceof RunValidationError) throw new HttpError(422, `not a valid run: ${e.message}`);
      throw e;
    }
    const id = store.newId();
    try {
      fs.renameSync(dest(), store.pathFor(id));
    } catch (e) {
      throw diskError(e);
    }
    try {
      store.add(id, manifest, "imported", origin);
    } catch (e) {
      await fs.promises.rm(store.pathFor(id), { recursive: true, force: true });
      throw e;
    }
    return id;
  } finally {
    if (scratch) await fs.promises.rm(scratch, { recursive: true, force: true });
  }
}
