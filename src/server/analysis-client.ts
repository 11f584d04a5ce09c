/** Calls into the analysis worker; errors come back as {@link HttpError}s with the worker's message. */
import { Worker } from "node:worker_threads";
import type { AnalysisHandlers } from "./analysis-worker.js";
import { HttpError } from "./http-error.js";
import type { AnalysisWorkerData, FromAnalysisWorker, ToAnalysisWorker } from "./worker-protocol.js";

export class AnalysisClient {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor(private readonly data: AnalysisWorkerData) {}

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL("./analysis-worker.js", import.meta.url), { workerData: this.data });
    w.on("message", (m: FromAnalysisWorker) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new HttpError(m.status, m.message));
    });
    const fail = (msg: string) => {
      if (this.worker === w) this.worker = null;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new HttpError(500, msg));
      }
    };
    w.on("error", (e) => fail(`analysis worker crashed: ${e.message}`));
    w.on("exit", (code) => fail(`analysis worker exited (code ${code})`));
    this.worker = w;
    return w;
  }

  /** Runs one of the worker's queries; the answer has the type that query returns there. */
  call<K extends keyof AnalysisHandlers>(
    fn: K,
    ...args: Parameters<AnalysisHandlers[K]>
  ): Promise<Awaited<ReturnType<AnalysisHandlers[K]>>> {
    const w = this.ensure();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      w.postMessage({ id, fn, args } satisfies ToAnalysisWorker);
    });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }
}
