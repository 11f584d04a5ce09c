/**
 * Worker thread for {@link explainLayer}: explains one head per message. The layer's attention arrives once as
 * a SharedArrayBuffer; each job names a head by its offset into it.
 */
import { parentPort } from "node:worker_threads";
import { type CleannParams, explainHead, type TokenLayout } from "./cleann.js";

export interface HeadJob {
  buffer: SharedArrayBuffer;
  /** Float32 offset of the head's S×S matrix in `buffer`. */
  offset: number;
  size: number;
  x: number;
  layout: TokenLayout;
  params: CleannParams;
  head: number;
}

const port = parentPort;
if (port) {
  port.on("message", (job: HeadJob) => {
    try {
      const att = new Float32Array(job.buffer, job.offset * 4, job.size * job.size);
      const { record } = explainHead(att, job.size, job.x, job.layout, job.params, job.head);
      port.postMessage({ ok: true, head: job.head, record });
    } catch (e) {
      port.postMessage({ ok: false, head: job.head, error: e instanceof Error ? e.message : String(e) });
    }
  });
}
