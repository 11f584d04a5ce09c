/** The server side of the model worker: starts it, runs one job through it, forwards progress and cancel. */

import { Worker } from "node:worker_threads";
import type { ModelStatus } from "../contracts/http.js";
import { CancelledError, type JobContext } from "./jobs.js";
import type { FromModelWorker, ModelJobRequest, ModelWorkerData, ToModelWorker } from "./worker-protocol.js";

interface Pending {
  ctx: JobContext;
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

export class ModelRunner {
  private worker: Worker | null = null;
  private readonly pending = new Map<string, Pending>();
  private nextId = 0;
  /** "loading" until the worker reports; the model's load error if it failed. */
  status: ModelStatus = { state: "loading" };

  constructor(
    private readonly data: ModelWorkerData,
    private readonly hardCancelMs = 5000,
  ) {}

  start(): void {
    if (this.worker) return;
    const w = new Worker(new URL("./model-worker.js", import.meta.url), { workerData: this.data });
    this.status = { state: "loading" };
    w.on("message", (m: FromModelWorker) => this.onMessage(m));
    w.on("error", (e) => {
      if (this.worker === w) this.failAll(`model worker crashed: ${e.message}`);
    });
    w.on("exit", (code) => {
      if (this.worker !== w) return;
      this.worker = null;
      this.failAll(`model worker exited (code ${code})`);
    });
    this.worker = w;
  }

  private onMessage(m: FromModelWorker): void {
    if (m.type === "ready") {
      this.status = { state: "ready" };
      return;
    }
    if (m.type === "load-error") {
      this.status = { state: "error", message: m.message };
      return;
    }
    const p = this.pending.get(m.jobId);
    if (!p) return;
    switch (m.type) {
      case "progress":
        if (m.stage !== "load") this.status = { state: "ready" };
        p.ctx.progress(m.stage, m.done, m.total);
        break;
      case "token":
        p.ctx.token(m.index, m.text, m.special);
        break;
      case "done":
        this.pending.delete(m.jobId);
        this.status = { state: "ready" };
        p.resolve(m.result);
        break;
      case "error":
        this.pending.delete(m.jobId);
        p.reject(m.cancelled ? new CancelledError() : new Error(m.message));
        break;
    }
  }

  private failAll(message: string): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new Error(message));
    }
  }

  run(request: ModelJobRequest, ctx: JobContext): Promise<Record<string, unknown>> {
    this.start();
    const jobId = String(this.nextId++);
    const cancel = new SharedArrayBuffer(4);
    const flag = new Int32Array(cancel);
    return new Promise((resolve, reject) => {
      if (ctx.signal.aborted) return reject(new CancelledError());
      this.pending.set(jobId, { ctx, resolve, reject });
      ctx.signal.addEventListener(
        "abort",
        () => {
          Atomics.store(flag, 0, 1);
          // A job that does not stop at its next callback within the grace period is stopped hard: the worker is
          // terminated (nothing half-written survives: runs and analyses are written atomically at their end)
          // and started again for the next job.
          setTimeout(() => {
            if (!this.pending.has(jobId)) return;
            this.pending.delete(jobId);
            reject(new CancelledError());
            const w = this.worker;
            this.worker = null;
            void w?.terminate();
          }, this.hardCancelMs).unref();
        },
        { once: true },
      );
      this.worker!.postMessage({ type: "job", jobId, cancel, request } satisfies ToModelWorker);
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }
}
