/**
 * The model job queue: one job runs at a time; waiting jobs know their position. Every job keeps its event log
 * (state changes, progress, streamed tokens, the end) so a client that connects late, or reconnects, replays it
 * and then follows live events (server-sent events in the routes).
 *
 * With a {@link JobJournal}, every waiting and running job is also written down durably, so jobs a stopped
 * server left unfinished (killed, crashed or shut down) are reported as "interrupted" when it starts again.
 */
import { randomBytes } from "node:crypto";
import type { JobEventData, JobEventType, JobInfo } from "../contracts/http.js";
import type { JobKind, JobState } from "../contracts/lists.js";

export type { JobInfo, JobKind, JobState };

/** One server-sent event of a job; its data is the contract's for its type (contracts/http.ts). */
export type JobEvent = {
  [K in JobEventType]: { seq: number; type: K; data: JobEventData[K] };
}[JobEventType];

/** Thrown by runners (or raised by the queue) when a job was cancelled. */
export class CancelledError extends Error {
  override name = "CancelledError";
  constructor() {
    super("cancelled");
  }
}

export interface JobContext {
  signal: AbortSignal;
  progress(stage: string, done: number, total: number): void;
  /** A streamed answer token; `special`: a control token the answer text leaves out (e.g. "</s>"). */
  token(index: number, text: string, special?: boolean): void;
}

export type JobRunner = (ctx: JobContext) => Promise<Record<string, unknown>>;

/** Durable record of the jobs not yet finished (see the SQLite journal in job-journal.ts). */
export interface JobJournal {
  queued(job: JobInfo): void;
  started(id: string): void;
  /** The job finished, or a finished job was dismissed or pruned: nothing more to report about it. */
  forget(id: string): void;
}

interface Job extends JobInfo {
  events: JobEvent[];
  listeners: Set<(e: JobEvent) => void>;
  controller: AbortController;
  runner: JobRunner;
}

const TERMINAL = new Set<JobState>(["done", "error", "cancelled", "interrupted"]);
const KEEP_FINISHED = 200;

export function errorMessage(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0] || "unknown error";
}

export class JobQueue {
  private readonly jobs = new Map<string, Job>();
  private readonly waiting: Job[] = [];
  private running: Job | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(private journal: JobJournal | null = null) {}

  submit(
    kind: JobKind,
    label: string,
    runId: string | null,
    runner: JobRunner,
    request: Record<string, unknown> = {},
  ): JobInfo {
    const job: Job = {
      id: `job-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`,
      kind,
      runId,
      label,
      state: "queued",
      position: 0,
      created_at: new Date().toISOString(),
      result: null,
      error: null,
      request,
      events: [],
      listeners: new Set(),
      controller: new AbortController(),
      runner,
    };
    this.journal?.queued(this.info(job));
    this.jobs.set(job.id, job);
    this.waiting.push(job);
    this.prune();
    this.updatePositions();
    queueMicrotask(() => this.pump());
    return this.info(job);
  }

  /**
   * Adds jobs a previous server left unfinished, as finished with state "interrupted"; a client following one
   * gets its end as a "failed" event with the reason.
   */
  restore(interrupted: JobInfo[]): void {
    for (const info of interrupted) {
      const message = info.error ?? "interrupted: the server stopped before this job finished";
      const job: Job = {
        ...info,
        state: "interrupted",
        position: 0,
        result: null,
        error: message,
        events: [],
        listeners: new Set(),
        controller: new AbortController(),
        runner: async () => ({}),
      };
      this.jobs.set(job.id, job);
      this.emit(job, "failed", { message, interrupted: true });
    }
    this.prune();
  }

  get(id: string): JobInfo | undefined {
    const j = this.jobs.get(id);
    return j ? this.info(j) : undefined;
  }

  list(): JobInfo[] {
    return [...this.jobs.values()].map((j) => this.info(j));
  }

  /** The events so far and a live subscription; the listener is dropped after a terminal event. */
  subscribe(
    id: string,
    listener: (e: JobEvent) => void,
  ): { past: JobEvent[]; unsubscribe: () => void } | undefined {
    const j = this.jobs.get(id);
    if (!j) return undefined;
    const past = [...j.events];
    if (!TERMINAL.has(j.state)) j.listeners.add(listener);
    return { past, unsubscribe: () => j.listeners.delete(listener) };
  }

  /** Cancels a queued job at once, or asks the running one to stop. False when it already finished. */
  cancel(id: string): boolean {
    const j = this.jobs.get(id);
    if (!j || TERMINAL.has(j.state)) return false;
    if (j.state === "queued") {
      this.waiting.splice(this.waiting.indexOf(j), 1);
      this.finish(j, { state: "cancelled" });
      this.updatePositions();
    } else {
      j.controller.abort();
    }
    return true;
  }

  /** Removes a finished job from the list (and the journal). False when it is unknown or not finished. */
  dismiss(id: string): boolean {
    const j = this.jobs.get(id);
    if (!j || !TERMINAL.has(j.state)) return false;
    this.jobs.delete(id);
    this.journal?.forget(id);
    return true;
  }

  /** Resolves when nothing is running or waiting. */
  idle(): Promise<void> {
    if (!this.running && this.waiting.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Cancels everything (server shutdown). */
  cancelAll(): void {
    for (const j of [...this.waiting]) this.cancel(j.id);
    if (this.running) this.cancel(this.running.id);
  }

  /**
   * Server shutdown: stops every job, but leaves the unfinished ones in the journal, so the next start reports
   * them as interrupted instead of losing them.
   */
  close(): void {
    this.journal = null;
    this.cancelAll();
  }

  private info(j: Job): JobInfo {
    const { id, kind, runId, label, state, position, created_at, result, error, request } = j;
    return { id, kind, runId, label, state, position, created_at, result, error, request };
  }

  private emit<K extends JobEventType>(j: Job, type: K, data: JobEventData[K]): void {
    const e = { seq: j.events.length, type, data } as JobEvent;
    j.events.push(e);
    for (const l of [...j.listeners]) {
      try {
        l(e);
      } catch {
        j.listeners.delete(l);
      }
    }
  }

  private finish(
    j: Job,
    end:
      | { state: "done"; result: JobEventData["done"] }
      | { state: "error"; message: string }
      | { state: "cancelled" },
  ): void {
    j.state = end.state;
    j.position = 0;
    if (end.state === "done") {
      j.result = end.result;
      this.emit(j, "done", end.result);
    } else if (end.state === "error") {
      j.error = end.message;
      this.emit(j, "failed", { message: end.message });
    } else this.emit(j, "cancelled", {});
    j.listeners.clear();
    this.journal?.forget(j.id);
  }

  private updatePositions(): void {
    const ahead = this.running ? 1 : 0;
    this.waiting.forEach((j, i) => {
      const pos = ahead + i;
      if (j.position !== pos || j.events.length === 0) {
        j.position = pos;
        this.emit(j, "state", { state: "queued", position: pos });
      }
    });
  }

  private prune(): void {
    const finished = [...this.jobs.values()].filter((j) => TERMINAL.has(j.state));
    for (const j of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) {
      this.jobs.delete(j.id);
      this.journal?.forget(j.id);
    }
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    const j = this.waiting.shift();
    if (!j) {
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    this.running = j;
    j.state = "running";
    j.position = 0;
    this.journal?.started(j.id);
    this.emit(j, "state", { state: "running", position: 0 });
    this.updatePositions();
    const ctx: JobContext = {
      signal: j.controller.signal,
      progress: (stage, done, total) => this.emit(j, "progress", { stage, done, total }),
      token: (index, text, special = false) => this.emit(j, "token", { index, text, special }),
    };
    try {
      // A runner that returns has finished its work (a run written and indexed): that is "done" even when a
      // cancel arrived too late to stop it.
      this.finish(j, { state: "done", result: await j.runner(ctx) });
    } catch (e) {
      if (e instanceof CancelledError || j.controller.signal.aborted) this.finish(j, { state: "cancelled" });
      else this.finish(j, { state: "error", message: errorMessage(e) });
    } finally {
      this.running = null;
      this.updatePositions();
      void this.pump();
    }
  }
}
