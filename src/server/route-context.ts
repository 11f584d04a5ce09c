/**
 * What every route plugin shares: the server's long-lived parts (run store, job queue, model and analysis
 * workers, limits) and the few request helpers more than one plugin needs (parsing with a 400, run lookups,
 * answer-token range checks, run jobs). `buildServer` makes one and hands it to each plugin in src/server/routes/.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { FastifyReply } from "fastify";
import { z } from "zod";
import type { ModelSummary } from "../models/registry.js";
import type { RunManifest } from "../run/manifest.js";
import type { AnalysisClient } from "./analysis-client.js";
import { HttpError } from "./http-error.js";
import type { JobQueue } from "./jobs.js";
import type { ModelRunner } from "./model-runner.js";
import { type RunStore, readManifest } from "./run-store.js";
import { zodMessage } from "./run-validate.js";
import type { ModelJobRequest } from "./worker-protocol.js";

/** Jobs allowed to wait in the queue at once; more is a 429. */
export const MAX_WAITING_JOBS = 32;

export interface ServerLimits {
  /** Largest image upload, bytes. */
  maxUploadBytes: number;
  /** Largest decoded image, pixels. */
  maxPixels: number;
  maxPromptChars: number;
  maxNewTokens: number;
  /** Largest run archive upload (compressed), bytes. */
  maxImportBytes: number;
  /** Largest run archive content (the unpacked tar stream), bytes. */
  maxUnpackedBytes: number;
  /** Largest unpacked ÷ compressed ratio of a run archive (past 16 MiB unpacked): refuses decompression bombs. */
  maxImportRatio: number;
}

export interface ServerContext {
  modelDir: string;
  modelSummary: ModelSummary;
  limits: ServerLimits;
  store: RunStore;
  queue: JobQueue;
  model: ModelRunner;
  analysis: AnalysisClient;
}

/** A route plugin's options: the shared context. */
export interface RoutesOptions {
  ctx: ServerContext;
}

export function parse<T extends z.ZodTypeAny>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new HttpError(400, `${what}: ${zodMessage(r.error)}`);
  return r.data;
}

export const idParams = z.object({ id: z.string() });

/** "1,2,5" or "" → numbers; used for token lists in query strings. */
export const intList = z
  .string()
  .max(20000)
  .regex(/^(\d+(,\d+)*)?$/, "a comma-separated list of non-negative integers")
  .transform((s) => (s ? s.split(",").map(Number) : []));

/** An indexed run's folder and manifest; 422 when the manifest cannot be read. */
export function manifestOf(ctx: ServerContext, id: string): { dir: string; m: RunManifest } {
  const dir = ctx.store.dir(id);
  const m = readManifest(dir);
  if (!m) throw new HttpError(422, `run "${id}" has an unreadable manifest`);
  return { dir, m };
}

/** 400 naming the valid range when an answer token index is past the run's answer. */
export function checkAnswerToken(m: RunManifest, token: number): void {
  const G = m.generated_ids.length;
  if (token >= G)
    throw new HttpError(400, `answer token ${token} is out of range (the answer has tokens 0…${G - 1})`);
}

/** Streams a plain file of a run (no symlinks followed). */
export function sendRunFile(reply: FastifyReply, dir: string, name: string, type: string) {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name))
    throw new HttpError(422, `run file name ${JSON.stringify(name)} is not a plain name`);
  let fd: number;
  try {
    fd = fs.openSync(path.join(dir, name), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    throw new HttpError(
      404,
      `run file ${name} is missing or not a plain file (${(e as NodeJS.ErrnoException).code})`,
    );
  }
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    throw new HttpError(404, `run file ${name} is not a plain file`);
  }
  reply.type(type).header("cache-control", "no-cache");
  return reply.send(fs.createReadStream("", { fd }));
}

/** 429 when the queue already holds its most waiting jobs. */
export function checkQueueRoom(ctx: ServerContext): void {
  const waiting = ctx.queue.list().filter((j) => j.state === "queued").length;
  if (waiting >= MAX_WAITING_JOBS)
    throw new HttpError(429, `the job queue is full (${waiting} waiting); try again when some have finished`);
}

/**
 * A run job (relevancy, causal) on an indexed run; refused while another job of the same run waits. `asked`
 * is the client's request, kept with the job.
 */
export function submitRunJob(
  ctx: ServerContext,
  id: string,
  kind: "relevancy" | "causal" | "faithfulness",
  label: string,
  asked: Record<string, unknown>,
  request: (dir: string) => ModelJobRequest,
) {
  const { store, queue, model } = ctx;
  const dir = store.dir(id);
  checkQueueRoom(ctx);
  const busy = queue
    .list()
    .find((j) => j.runId === id && j.kind === kind && (j.state === "queued" || j.state === "running"));
  if (busy)
    throw new HttpError(
      409,
      `a ${kind} job for this run is already ${busy.state} (${busy.id}); wait for it or cancel it`,
    );
  return queue.submit(
    kind,
    label,
    id,
    async (jobCtx) => ({ runId: id, ...(await model.run(request(dir), jobCtx)) }),
    asked,
  );
}
