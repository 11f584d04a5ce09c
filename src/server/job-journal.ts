/**
 * The job queue's durable record, a `jobs` table in the run index (SQLite): a row is written when a job is
 * queued, marked when it starts and deleted when it finishes. Rows still there when a server starts belong to
 * jobs the previous server never finished (it was killed, crashed or shut down): they become "interrupted"
 * with the reason, and stay reported until the user dismisses them.
 */
import type Database from "better-sqlite3";
import type { JobInfo, JobJournal, JobKind } from "./jobs.js";

/** Interrupted jobs kept at most (the oldest are dropped first). */
const KEEP_INTERRUPTED = 200;

interface JobRow {
  id: string;
  kind: JobKind;
  run_id: string | null;
  label: string;
  request: string;
  created_at: string;
  state: "queued" | "running" | "interrupted";
  error: string | null;
}

export class SqliteJobJournal implements JobJournal {
  constructor(private readonly db: Database.Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS jobs (
      id TEXT PRIMARY KEY,
      kind TEXT NOT NULL,
      run_id TEXT,
      label TEXT NOT NULL,
      request TEXT NOT NULL,
      created_at TEXT NOT NULL,
      state TEXT NOT NULL,
      error TEXT
    )`);
  }

  queued(job: JobInfo): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO jobs (id, kind, run_id, label, request, created_at, state, error)
         VALUES (?, ?, ?, ?, ?, ?, 'queued', NULL)`,
      )
      .run(job.id, job.kind, job.runId, job.label, JSON.stringify(job.request), job.created_at);
  }

  started(id: string): void {
    this.db.prepare("UPDATE jobs SET state = 'running' WHERE id = ?").run(id);
  }

  forget(id: string): void {
    this.db.prepare("DELETE FROM jobs WHERE id = ?").run(id);
  }

  /**
   * Marks the jobs a previous server left queued or running as interrupted (with the reason), and returns
   * every interrupted job, oldest first. Call once, before the queue takes new jobs.
   */
  interrupted(): JobInfo[] {
    const rows = this.db.transaction(() => {
      this.db
        .prepare(
          `UPDATE jobs SET state = 'interrupted', error = CASE state
             WHEN 'running' THEN ? ELSE ? END
           WHERE state IN ('queued', 'running')`,
        )
        .run(
          "interrupted: the server stopped while this job was running; nothing of it was saved — submit it again",
          "interrupted: the server stopped while this job was waiting in the queue; it never ran — submit it again",
        );
      this.db
        .prepare(
          `DELETE FROM jobs WHERE state = 'interrupted' AND id NOT IN
             (SELECT id FROM jobs WHERE state = 'interrupted' ORDER BY created_at DESC, id DESC LIMIT ?)`,
        )
        .run(KEEP_INTERRUPTED);
      return this.db
        .prepare("SELECT * FROM jobs WHERE state = 'interrupted' ORDER BY created_at, id")
        .all() as JobRow[];
    })();
    return rows.map((r) => ({
      id: r.id,
      kind: r.kind,
      runId: r.run_id,
      label: r.label,
      state: "interrupted",
      position: 0,
      created_at: r.created_at,
      result: null,
      error: r.error,
      request: parseRequest(r.request),
    }));
  }
}

function parseRequest(text: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}
