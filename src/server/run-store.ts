/**
 * The server's runs: run directories inside one data directory, indexed in SQLite (`index.sqlite`) so the
 * sidebar lists them instantly and they survive restarts.
 *
 * Safety: a run id is a plain name (letters, digits, `-`, `_`; no dots, no slashes), looked up in the index
 * first; its directory must be a real directory directly inside the data directory (not a symlink, and its
 * real path must stay inside). Writes into the data directory go through temporary names starting with a dot,
 * which never match a run id, and are renamed into place when whole; only then is the run indexed.
 *
 * Concurrency: a new run's id is reserved from {@link RunStore.newId} until the run is indexed (or released):
 * the listing's reconcile skips reserved ids, so a folder that has just been renamed into place is indexed
 * once, by the job that wrote it. Indexing is an upsert, so indexing the same folder twice never fails.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import Database from "better-sqlite3";
import type { RunSummary } from "../contracts/http.js";
import type { RunSource } from "../contracts/lists.js";
import type { RunManifest } from "../run/manifest.js";
import { makeDirs } from "../run/out-dir.js";
import { readRunManifest } from "../run/run-dir.js";
import { HttpError } from "./http-error.js";

export const RUN_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$/;
export const INDEX_FILE = "index.sqlite";
const TMP_DIR = ".tmp";

export type { RunSource, RunSummary };

/** Checks a client-supplied run id; 400 with a readable message when it is not a plain run name. */
export function checkRunId(id: string): string {
  if (typeof id !== "string" || !RUN_ID_RE.test(id)) {
    throw new HttpError(
      400,
      `invalid run id ${JSON.stringify(String(id).slice(0, 100))}: use letters, digits, "-" and "_" only`,
    );
  }
  return id;
}

/** A manifest read from disk (format 1 converted), or null when the folder is not a readable run. */
export function readManifest(dir: string): RunManifest | null {
  return readRunManifest(dir);
}

export class RunStore {
  private readonly db: Database.Database;
  /** Ids handed out by newId whose folders are still being written (by a job) and not yet indexed. */
  private readonly reserved = new Set<string>();

  private constructor(readonly dataDir: string) {
    try {
      this.db = new Database(path.join(dataDir, INDEX_FILE));
    } catch (e) {
      const msg = (e as Error).message;
      if (/bindings file|better_sqlite3\.node|NODE_MODULE_VERSION/.test(msg)) {
        throw new Error(
          "the SQLite run index needs better-sqlite3's native addon, which is not built here: run `npm run build:sqlite`",
        );
      }
      throw new Error(`${path.join(dataDir, INDEX_FILE)}: cannot open the run index (${msg.split("\n")[0]})`);
    }
    this.db.pragma("journal_mode = WAL");
    this.db.exec(`CREATE TABLE IF NOT EXISTS runs (
      id TEXT PRIMARY KEY,
      created_at TEXT NOT NULL,
      prompt TEXT NOT NULL,
      answer TEXT NOT NULL,
      n_tokens INTEGER NOT NULL,
      seq_len INTEGER NOT NULL,
      model TEXT NOT NULL,
      image_mode TEXT NOT NULL,
      source TEXT NOT NULL,
      indexed_at TEXT NOT NULL
    )`);
    // Indexes made before imports recorded their origin lack the column: added, empty for older rows.
    const columns = this.db.prepare("PRAGMA table_info(runs)").all() as { name: string }[];
    if (!columns.some((c) => c.name === "origin")) this.db.exec("ALTER TABLE runs ADD COLUMN origin TEXT");
  }

  /** Opens (creating if needed) the data directory and its index, then reconciles index and folders. */
  static open(dataDir: string): RunStore {
    makeDirs(dataDir);
    const real = fs.realpathSync(dataDir);
    const store = new RunStore(real);
    fs.rmSync(path.join(real, TMP_DIR), { recursive: true, force: true });
    store.reconcile();
    return store;
  }

  /**
   * Drops index rows whose folder is gone or no longer a run, and indexes run folders that are not indexed
   * (a run whose indexing was interrupted, or one copied in by hand).
   */
  reconcile(opts: { prune?: boolean } = {}): { added: string[]; removed: string[] } {
    const added: string[] = [];
    const removed: string[] = [];
    const rows =
      opts.prune === false ? [] : (this.db.prepare("SELECT id FROM runs").all() as { id: string }[]);
    for (const { id } of rows) {
      if (!this.safeDir(id) || !readManifest(path.join(this.dataDir, id))) {
        this.db.prepare("DELETE FROM runs WHERE id = ?").run(id);
        removed.push(id);
      }
    }
    for (const name of fs.readdirSync(this.dataDir)) {
      if (!RUN_ID_RE.test(name) || this.reserved.has(name) || this.has(name) || !this.safeDir(name)) continue;
      const m = readManifest(path.join(this.dataDir, name));
      if (m) {
        this.add(name, m, "found");
        added.push(name);
      }
    }
    return { added, removed };
  }

  /** Directory of a run when `id` is a safe name of a real directory inside the data dir; otherwise null. */
  private safeDir(id: string): string | null {
    if (!RUN_ID_RE.test(id)) return null;
    const p = path.join(this.dataDir, id);
    try {
      const st = fs.lstatSync(p);
      if (!st.isDirectory() || st.isSymbolicLink()) return null;
      if (fs.realpathSync(p) !== p) return null;
    } catch {
      return null;
    }
    return p;
  }

  /** The index database; the job journal keeps its table there too. */
  get database(): Database.Database {
    return this.db;
  }

  has(id: string): boolean {
    return this.db.prepare("SELECT 1 FROM runs WHERE id = ?").get(id) !== undefined;
  }

  list(): RunSummary[] {
    return this.db.prepare("SELECT * FROM runs ORDER BY created_at DESC, id DESC").all() as RunSummary[];
  }

  get(id: string): RunSummary | undefined {
    return this.db.prepare("SELECT * FROM runs WHERE id = ?").get(id) as RunSummary | undefined;
  }

  /** The directory of an indexed run: 400 for a malformed id, 404 for an unknown or vanished one. */
  dir(id: string): string {
    checkRunId(id);
    if (!this.has(id)) throw new HttpError(404, `no run with id "${id}"`);
    const d = this.safeDir(id);
    if (!d)
      throw new HttpError(404, `run "${id}" is indexed but its folder is missing or not a plain directory`);
    return d;
  }

  /**
   * A fresh, unused run id (creation time plus random suffix), reserved until {@link add} indexes it or
   * {@link release} gives it up.
   */
  newId(): string {
    for (;;) {
      const t = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
      const id = `${t}-${randomBytes(3).toString("hex")}`;
      if (!this.reserved.has(id) && !this.has(id) && !fs.existsSync(path.join(this.dataDir, id))) {
        this.reserved.add(id);
        return id;
      }
    }
  }

  /** Gives up a reserved id whose run was not made (a failed or cancelled job). */
  release(id: string): void {
    this.reserved.delete(id);
  }

  /** Path for a new run folder (not created). */
  pathFor(id: string): string {
    checkRunId(id);
    return path.join(this.dataDir, id);
  }

  /** A private scratch folder inside the data dir (same filesystem, so renames into place are atomic). */
  scratch(prefix: string): string {
    const base = path.join(this.dataDir, TMP_DIR);
    fs.mkdirSync(base, { recursive: true });
    return fs.mkdtempSync(path.join(base, `${prefix}-`));
  }

  /** Indexes a run folder; indexing one that is already indexed updates its row. */
  add(id: string, m: RunManifest, source: RunSource, origin: string | null = null): RunSummary {
    checkRunId(id);
    const row: RunSummary = {
      id,
      created_at: String(m.created_at ?? ""),
      prompt: String(m.prompt ?? ""),
      answer: String(m.answer ?? ""),
      n_tokens: Array.isArray(m.generated_ids) ? m.generated_ids.length : 0,
      seq_len: Number(m.seq_len) || 0,
      model: `${m.model?.text_model_type ?? "?"}/${m.model?.vision_model_type ?? "?"} ${path.basename(String(m.model?.dir ?? ""))}`,
      image_mode: String(m.settings?.image_mode ?? "default"),
      source,
      indexed_at: new Date().toISOString(),
      origin,
    };
    this.db
      .prepare(
        `INSERT INTO runs (id, created_at, prompt, answer, n_tokens, seq_len, model, image_mode, source, indexed_at, origin)
         VALUES (@id, @created_at, @prompt, @answer, @n_tokens, @seq_len, @model, @image_mode, @source, @indexed_at, @origin)
         ON CONFLICT(id) DO UPDATE SET created_at = excluded.created_at, prompt = excluded.prompt,
           answer = excluded.answer, n_tokens = excluded.n_tokens, seq_len = excluded.seq_len,
           model = excluded.model, image_mode = excluded.image_mode, source = excluded.source,
           indexed_at = excluded.indexed_at, origin = excluded.origin`,
      )
      .run(row);
    this.reserved.delete(id);
    return row;
  }

  /** Removes a run from the index, then its folder (renamed aside first, so it disappears at once). */
  remove(id: string): void {
    const d = this.dir(id);
    this.db.prepare("DELETE FROM runs WHERE id = ?").run(id);
    const trash = path.join(this.scratch("deleted"), id);
    fs.renameSync(d, trash);
    fs.rmSync(path.dirname(trash), { recursive: true, force: true });
  }

  close(): void {
    this.db.close();
  }
}
