/**
 * The job queue seen from the client: list, one job, its events (server-sent, resumable by Last-Event-ID),
 * cancel, and dismissing a finished one.
 */
import type { FastifyInstance } from "fastify";
import {
  type JobCancelled,
  type JobDismissed,
  type JobInfo,
  type JobsResponse,
  jobIdParams,
} from "../../contracts/http.js";
import { HttpError } from "../http-error.js";
import type { JobEvent } from "../jobs.js";
import { parse, type RoutesOptions } from "../route-context.js";

export async function jobRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const { queue } = ctx;
  app.get("/api/jobs", async (): Promise<JobsResponse> => ({ jobs: queue.list() }));

  app.get("/api/jobs/:id", async (req): Promise<JobInfo> => {
    const { id } = parse(jobIdParams, req.params, "job");
    const j = queue.get(id);
    if (!j) throw new HttpError(404, `no job with id "${id}"`);
    return j;
  });

  // Dismisses a finished job (e.g. an interrupted one the user has seen) from the list.
  app.delete("/api/jobs/:id", async (req): Promise<JobDismissed> => {
    const { id } = parse(jobIdParams, req.params, "job");
    const j = queue.get(id);
    if (!j) throw new HttpError(404, `no job with id "${id}"`);
    if (!queue.dismiss(id)) throw new HttpError(409, `job "${id}" is ${j.state}; cancel it first`);
    return { dismissed: id };
  });

  app.post("/api/jobs/:id/cancel", async (req): Promise<JobCancelled> => {
    const { id } = parse(jobIdParams, req.params, "job");
    const j = queue.get(id);
    if (!j) throw new HttpError(404, `no job with id "${id}"`);
    const cancelled = queue.cancel(id);
    return { id, cancelled, state: queue.get(id)?.state };
  });

  app.get("/api/jobs/:id/events", async (req, reply) => {
    const { id } = parse(jobIdParams, req.params, "job");
    const write = (e: JobEvent) =>
      reply.raw.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      clearInterval(ping);
      sub?.unsubscribe();
      reply.raw.end();
    };
    const onEvent = (e: JobEvent) => {
      write(e);
      if (e.type === "done" || e.type === "failed" || e.type === "cancelled") setImmediate(end);
    };
    const sub = queue.subscribe(id, onEvent);
    if (!sub) throw new HttpError(404, `no job with id "${id}"`);
    reply.hijack();
    reply.raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    const ping = setInterval(() => reply.raw.write(": ping\n\n"), 15_000);
    req.raw.on("close", end);
    const last = Number(req.headers["last-event-id"] ?? -1);
    for (const e of sub.past) if (e.seq > last) onEvent(e);
  });
}
