/**
 * The web app's server: Fastify REST + server-sent events over saved runs, and the built web UI.
 *
 * Routes validate their input (zod) and call the library only: model jobs go through the one-at-a-time queue
 * into the model worker; read-only views go to the analysis worker, which returns small JSON (aggregates and
 * slices, never whole attention tensors). The routes live in plugins under ./routes/ (one per concern), sharing
 * one ServerContext (./route-context.ts). Every error reaches the client as `{ "error": "<readable message>" }`
 * with a 4xx status for bad input.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import fastifyStatic from "@fastify/static";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import { PROJECT_ROOT } from "../cli/default-model.js";
import type { KernelChoice, WeightFormat } from "../contracts/lists.js";
import { readModelSummary } from "../models/registry.js";
import { AnalysisClient } from "./analysis-client.js";
import { HttpError, quoted } from "./http-error.js";
import { SqliteJobJournal } from "./job-journal.js";
import { JobQueue } from "./jobs.js";
import { ModelRunner } from "./model-runner.js";
import { expectedBody, guardRequestBodies } from "./request-body.js";
import type { ServerContext, ServerLimits } from "./route-context.js";
import { analysisJobRoutes } from "./routes/analysis-jobs.js";
import { archiveRoutes } from "./routes/archive.js";
import { compareRoutes } from "./routes/compare.js";
import { faithfulnessRoutes } from "./routes/faithfulness.js";
import { generateRoutes } from "./routes/generate.js";
import { infoRoutes } from "./routes/info.js";
import { jobRoutes } from "./routes/jobs.js";
import { runRoutes } from "./routes/runs.js";
import { viewRoutes } from "./routes/views.js";
import { RunStore } from "./run-store.js";

export { MAX_WAITING_JOBS, type ServerLimits } from "./route-context.js";

export const DEFAULT_LIMITS: ServerLimits = {
  maxUploadBytes: 20 * 2 ** 20,
  maxPixels: 40_000_000,
  maxPromptChars: 4000,
  maxNewTokens: 1024,
  maxImportBytes: 4 * 2 ** 30,
  // A 7B run with f32 attention weighs GBs (32 layers × 32 heads × S² × 4 bytes: ~1.5 GB at S = 600, ~12 GB
  // at S = 1700); 16 GiB holds that. Real runs gzip about 2×, a bomb ~1000× (docs/web-app.md).
  maxUnpackedBytes: 16 * 2 ** 30,
  maxImportRatio: 100,
};

export interface ServerOptions {
  modelDir: string;
  dataDir: string;
  /** Folder of the built web UI (default dist/web). */
  webDir?: string;
  kernels?: KernelChoice;
  /** "int8": the model's language-model matrices quantised at load (opt-in). Default "stored". */
  weights?: WeightFormat;
  limits?: Partial<ServerLimits>;
  /** The address the server will bind; loopback binds only accept loopback Host headers. */
  host?: string;
  logger?: boolean;
}

export interface LvlmServer {
  app: FastifyInstance;
  store: RunStore;
  queue: JobQueue;
  limits: ServerLimits;
  /** Every registered route (method and URL pattern), e.g. for tests that sweep all endpoints. */
  routes: { method: string; url: string }[];
  close(): Promise<void>;
}

const LOOPBACK_NAMES = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

export async function buildServer(opts: ServerOptions): Promise<LvlmServer> {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const modelSummary = readModelSummary(opts.modelDir);
  const store = RunStore.open(opts.dataDir);
  const journal = new SqliteJobJournal(store.database);
  const queue = new JobQueue(journal);
  queue.restore(journal.interrupted());
  const model = new ModelRunner({
    modelDir: opts.modelDir,
    kernels: opts.kernels ?? "auto",
    weights: opts.weights ?? "stored",
  });
  const analysis = new AnalysisClient({ modelDir: opts.modelDir });
  model.start();

  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: 1 * 2 ** 20,
    // Errors raised before routing (bad URL encoding, over-long parameters) in the same { error } shape.
    frameworkErrors: (err, _req, reply: FastifyReply) => {
      const status = (err as FastifyError).statusCode ?? 400;
      const message =
        (err as FastifyError).code === "FST_ERR_MAX_PARAM_LENGTH"
          ? "a path parameter is too long"
          : `bad request: ${err.message.slice(0, 200)}`;
      reply.code(status).send({ error: message });
    },
  });
  const loopbackOnly = !opts.host || LOOPBACK_NAMES.has(opts.host);
  const routes: { method: string; url: string }[] = [];
  app.addHook("onRoute", (r) => {
    for (const method of [r.method].flat()) routes.push({ method, url: r.url });
  });

  // DNS-rebinding and cross-site protection for a local tool: loopback Host only; no cross-origin writes.
  app.addHook("onRequest", async (req) => {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    if (loopbackOnly && !LOOPBACK_NAMES.has(host))
      throw new HttpError(403, `refused: unexpected Host ${quoted(host)} for a server bound to loopback`);
    const origin = req.headers.origin;
    if (origin && req.method !== "GET" && req.method !== "HEAD") {
      let o = "";
      try {
        o = new URL(origin).host;
      } catch {
        // Not a URL: treated as foreign.
      }
      if (o !== req.headers.host)
        throw new HttpError(403, `refused: cross-origin ${req.method} from ${quoted(origin)}`);
    }
  });
  app.addHook("onSend", async (_req, reply, payload) => {
    reply.header("x-content-type-options", "nosniff");
    reply.header("referrer-policy", "no-referrer");
    const ct = String(reply.getHeader("content-type") ?? "");
    if (ct.startsWith("text/html")) {
      reply.header(
        "content-security-policy",
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'",
      );
    }
    return payload;
  });

  app.setErrorHandler((err: FastifyError | HttpError | Error, req: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof HttpError) return reply.code(err.status).send({ error: err.message });
    const e = err as FastifyError;
    const code = e.code ?? "";
    const status = e.statusCode && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
    let message = e.message;
    if (code === "FST_ERR_CTP_INVALID_JSON_BODY" || (status === 400 && /JSON/i.test(message)))
      message = `malformed JSON body: ${message}`;
    else if (code === "FST_ERR_CTP_EMPTY_JSON_BODY") message = "empty JSON body: send a JSON object";
    else if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE")
      message = `unsupported content type ${quoted(
        String(req.headers["content-type"] ?? "none")
          .split(";")[0]
          .trim(),
      )}: ${expectedBody(req)}`;
    else if (code === "FST_ERR_CTP_BODY_TOO_LARGE") message = "request body too large";
    else if (code === "FST_REQ_FILE_TOO_LARGE")
      message = `image file is larger than the ${(limits.maxUploadBytes / 2 ** 20).toFixed(0)} MiB upload limit`;
    else if (code === "FST_INVALID_MULTIPART_CONTENT_TYPE")
      message = "send the image and fields as multipart/form-data";
    if (status >= 500) req.log.error(err);
    return reply
      .code(status)
      .send({ error: status >= 500 ? `internal error: ${message.split("\n")[0]}` : message.split("\n")[0] });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no such endpoint: ${req.method} ${quoted(req.url.split("?")[0], 100)}` }),
  );

  // JSON everywhere (multipart and archives only in their routes' scopes, below); any other body is a 415.
  guardRequestBodies(app);

  const webDir = opts.webDir ?? path.join(PROJECT_ROOT, "dist/web");
  if (fs.existsSync(path.join(webDir, "index.html"))) {
    await app.register(fastifyStatic, {
      root: webDir,
      prefix: "/",
      index: ["index.html"],
      wildcard: false,
      dotfiles: "deny",
    });
  } else {
    app.get("/", async (_req, reply) =>
      reply
        .type("text/html")
        .send(
          `<!doctype html><title>lvlm-interpret</title><p>The web app is not built: run <code>npm run build:web</code> (the API is up at /api).</p>`,
        ),
    );
  }

  const ctx: ServerContext = { modelDir: opts.modelDir, modelSummary, limits, store, queue, model, analysis };
  for (const routes of [
    infoRoutes,
    runRoutes,
    viewRoutes,
    compareRoutes,
    analysisJobRoutes,
    faithfulnessRoutes,
    archiveRoutes,
    generateRoutes,
    jobRoutes,
  ])
    await app.register(routes, { ctx });

  return {
    app,
    store,
    queue,
    limits,
    routes,
    async close() {
      queue.close();
      await app.close();
      await model.close();
      await analysis.close();
      store.close();
    },
  };
}
