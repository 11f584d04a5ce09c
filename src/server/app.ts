/**
 * The web app's server: Fastify REST + server-sent events over saved runs, and the built web UI.
 *
 * Routes validate their input (zod) and call the library only: model jobs go through the one-at-a-time queue
 * into the model worker; read-only views go to the analysis worker, which returns small JSON (aggregates and
 * slices, never whole attention tensors). Every error reaches the client as `{ "error": "<readable message>" }`
 * with a 4xx status for bad input.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Readable } from "node:stream";
import fastifyMultipart from "@fastify/multipart";
import fastifyStatic from "@fastify/static";
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import { z } from "zod";
import { PROJECT_ROOT } from "../cli/default-model.js";
import { decodeImage, IMAGE_EXTENSIONS, ImageError, sniffImageFormat } from "../hf/image-decode.js";
import type { TextProcessor } from "../hf/tokenizer.js";
import { RELEVANCY_MODES } from "../interpret/relevancy/index.js";
import type { ImageGeometry } from "../interpret/views/image-tokens.js";
import { RELEVANCY_MAP_KINDS } from "../interpret/views/relevancy-panels.js";
import { loadTextProcessor, readModelSummary } from "../models/registry.js";
import type { RunManifest } from "../run/manifest.js";
import { AnalysisClient } from "./analysis-client.js";
import { checkExportable, exportRunStream, importArchive } from "./archive.js";
import { checkQuestion, fieldSizeLimit, readGenerateForm } from "./generate-request.js";
import { HttpError, quoted } from "./http-error.js";
import { SqliteJobJournal } from "./job-journal.js";
import { type JobEvent, JobQueue } from "./jobs.js";
import { ModelRunner } from "./model-runner.js";
import { expectedBody, guardRequestBodies } from "./request-body.js";
import { RunStore, readManifest } from "./run-store.js";
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
  kernels?: "auto" | "ts" | "ort";
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

function parse<T extends z.ZodTypeAny>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new HttpError(400, `${what}: ${zodMessage(r.error)}`);
  return r.data;
}

const idParams = z.object({ id: z.string() });

/** "1,2,5" or "" → numbers; used for token lists in query strings. */
const intList = z
  .string()
  .max(20000)
  .regex(/^(\d+(,\d+)*)?$/, "a comma-separated list of non-negative integers")
  .transform((s) => (s ? s.split(",").map(Number) : []));

export async function buildServer(opts: ServerOptions): Promise<LvlmServer> {
  const limits: ServerLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const modelConfig = readModelSummary(opts.modelDir);
  const store = RunStore.open(opts.dataDir);
  const journal = new SqliteJobJournal(store.database);
  const queue = new JobQueue(journal);
  queue.restore(journal.interrupted());
  const model = new ModelRunner({ modelDir: opts.modelDir, kernels: opts.kernels ?? "auto" });
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

  // ---------------------------------------------------------------- info
  app.get("/api/health", async () => ({
    ok: true,
    model: model.status,
    queue: queue.list().filter((j) => j.state === "queued" || j.state === "running").length,
  }));

  app.get("/api/config", async () => ({
    model: {
      name: path.basename(path.resolve(opts.modelDir)),
      model_type: modelConfig.modelType,
      text_model_type: modelConfig.textModelType,
      vision_model_type: modelConfig.visionModelType,
      llm_layers: modelConfig.llmLayers,
      llm_heads: modelConfig.llmHeads,
      vit_layers: modelConfig.vitLayers,
      status: model.status,
    },
    limits,
    image_types: ["image/png", "image/jpeg", "image/webp"],
  }));

  // ---------------------------------------------------------------- runs
  // Run folders written into the data dir by other means (e.g. `lvlm-interpret trace --out <data>/name`) appear.
  app.get("/api/runs", async () => {
    store.reconcile({ prune: false });
    return { runs: store.list() };
  });

  const manifestOf = (id: string): { dir: string; m: RunManifest } => {
    const dir = store.dir(id);
    const m = readManifest(dir);
    if (!m) throw new HttpError(422, `run "${id}" has an unreadable manifest`);
    return { dir, m };
  };
  /** 400 naming the valid range when an answer token index is past the run's answer. */
  const checkAnswerToken = (m: RunManifest, token: number): void => {
    const G = m.generated_ids.length;
    if (token >= G)
      throw new HttpError(400, `answer token ${token} is out of range (the answer has tokens 0…${G - 1})`);
  };

  app.get("/api/runs/:id", async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const { dir, m } = manifestOf(id);
    const extras = await analysis.call<{
      promptTokens: string[];
      image: ImageGeometry;
      relevancy: unknown;
      causal: number[];
      warnings: string[];
    }>("runExtras", dir);
    return {
      id,
      index: store.get(id),
      created_at: m.created_at,
      prompt: m.prompt,
      answer: m.answer,
      tokens: m.generated_tokens,
      settings: m.settings,
      timings_ms: m.timings_ms,
      attn_dtype: m.attn_dtype,
      model: { ...m.model, dir: path.basename(m.model.dir) },
      layout: {
        T: m.input_ids.length,
        G: m.generated_ids.length,
        S: m.seq_len,
        layers: m.model.llm_layers,
        heads: m.model.llm_heads,
      },
      image: extras.image,
      prompt_tokens: extras.promptTokens,
      warnings: extras.warnings,
      analyses: { relevancy: extras.relevancy, causal: extras.causal },
    };
  });

  app.delete("/api/runs/:id", async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const dir = store.dir(id);
    const busy = queue.list().find((j) => j.runId === id && (j.state === "queued" || j.state === "running"));
    if (busy) throw new HttpError(409, `run "${id}" has a ${busy.kind} job in progress; cancel it first`);
    await analysis.call("forget", dir);
    store.remove(id);
    return { deleted: id };
  });

  /** Streams a plain file of a run (no symlinks followed). */
  const sendRunFile = (reply: FastifyReply, dir: string, name: string, type: string) => {
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
  };

  app.get("/api/runs/:id/image", async (req, reply) => {
    const { id } = parse(idParams, req.params, "run");
    const { dir, m } = manifestOf(id);
    return sendRunFile(reply, dir, m.image_file, "image/png");
  });

  app.get("/api/runs/:id/input", async (req, reply) => {
    const { id } = parse(idParams, req.params, "run");
    const { dir, m } = manifestOf(id);
    const ext = path.extname(m.original_image_file).toLowerCase();
    return sendRunFile(
      reply,
      dir,
      m.original_image_file,
      ({ ".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp" } as Record<string, string>)[ext] ??
        "application/octet-stream",
    );
  });

  // ---------------------------------------------------------------- attention views
  app.get("/api/runs/:id/attention/summary", async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const q = parse(z.object({ tokens: intList.optional() }), req.query, "query");
    return analysis.call("summary", store.dir(id), q.tokens);
  });

  app.get("/api/runs/:id/attention/heads", async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const q = parse(
      z.object({ layer: z.coerce.number().int().min(0), tokens: intList.optional() }),
      req.query,
      "query",
    );
    return analysis.call("heads", store.dir(id), q.layer, q.tokens);
  });

  app.post("/api/runs/:id/attention/patches", { config: { body: "json" } }, async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const b = parse(
      z.object({
        layer: z.number().int().min(0),
        patches: z.array(z.number().int().min(0)).min(1, "select at least one image patch").max(100_000),
      }),
      req.body,
      "body",
    );
    return analysis.call("patches", store.dir(id), b.layer, b.patches);
  });

  // ---------------------------------------------------------------- relevancy and causality
  const modeSchema = z.enum(RELEVANCY_MODES);
  const kindSchema = z.enum(RELEVANCY_MAP_KINDS);
  const checkQueueRoom = () => {
    const waiting = queue.list().filter((j) => j.state === "queued").length;
    if (waiting >= MAX_WAITING_JOBS)
      throw new HttpError(
        429,
        `the job queue is full (${waiting} waiting); try again when some have finished`,
      );
  };
  /**
   * A run job (relevancy, causal) on an indexed run; refused while another job of the same run waits. `asked`
   * is the client's request, kept with the job.
   */
  const submitRunJob = (
    id: string,
    kind: "relevancy" | "causal",
    label: string,
    asked: Record<string, unknown>,
    request: (dir: string) => ModelJobRequest,
  ) => {
    const dir = store.dir(id);
    checkQueueRoom();
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
      async (ctx) => ({ runId: id, ...(await model.run(request(dir), ctx)) }),
      asked,
    );
  };

  app.post("/api/runs/:id/relevancy", { config: { body: "json" } }, async (req, reply) => {
    const { id } = parse(idParams, req.params, "run");
    const b = parse(
      z.object({
        mode: modeSchema.default("exact"),
        kind: kindSchema.default("llm"),
        tokens: z
          .union([z.literal("all"), z.array(z.number().int().min(0)).min(1).max(100_000)])
          .default("all"),
      }),
      req.body === undefined ? {} : req.body,
      "body",
    );
    const { m } = manifestOf(id);
    if (Array.isArray(b.tokens)) for (const t of b.tokens) checkAnswerToken(m, t);
    const job = submitRunJob(id, "relevancy", `relevancy ${b.mode} ${b.kind}`, b, (dir) => ({
      kind: "relevancy",
      payload: { runDir: dir, mode: b.mode, tokens: b.tokens, vision: b.kind === "llm" ? [] : [b.kind] },
    }));
    return reply.code(202).send({ job });
  });

  app.get("/api/runs/:id/relevancy/maps", async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const q = parse(
      z.object({
        mode: modeSchema.default("exact"),
        kind: kindSchema.default("llm"),
        by: z.enum(["word", "token"]).default("word"),
        normalized: z.enum(["true", "false"]).default("true"),
      }),
      req.query,
      "query",
    );
    return analysis.call("relMaps", store.dir(id), q.mode, q.kind, q.by, q.normalized === "true");
  });

  app.get("/api/runs/:id/relevancy/text", async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const q = parse(
      z.object({ mode: modeSchema.default("exact"), token: z.coerce.number().int().min(0) }),
      req.query,
      "query",
    );
    const { dir, m } = manifestOf(id);
    checkAnswerToken(m, q.token);
    return analysis.call("relText", dir, q.mode, q.token);
  });

  app.get("/api/runs/:id/relevancy/reliance", async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const q = parse(z.object({ mode: modeSchema.default("exact") }), req.query, "query");
    return analysis.call("relReliance", store.dir(id), q.mode);
  });

  app.post("/api/runs/:id/causal", { config: { body: "json" } }, async (req, reply) => {
    const { id } = parse(idParams, req.params, "run");
    const b = parse(
      z.object({ token: z.number().int().min(0), layer: z.number().int().min(0).optional() }),
      req.body === undefined ? {} : req.body,
      "body",
    );
    const { m } = manifestOf(id);
    checkAnswerToken(m, b.token);
    if (b.layer !== undefined && b.layer >= m.model.llm_layers) {
      throw new HttpError(
        400,
        `layer ${b.layer} is out of range (the model has LLM layers 0…${m.model.llm_layers - 1})`,
      );
    }
    const job = submitRunJob(id, "causal", `causal token ${b.token}`, b, (dir) => ({
      kind: "causal",
      payload: { runDir: dir, token: b.token, layer: b.layer },
    }));
    return reply.code(202).send({ job });
  });

  app.get("/api/runs/:id/causal/:token", async (req) => {
    const p = parse(z.object({ id: z.string(), token: z.coerce.number().int().min(0) }), req.params, "path");
    const { dir, m } = manifestOf(p.id);
    checkAnswerToken(m, p.token);
    return analysis.call("causal", dir, p.token);
  });

  // ---------------------------------------------------------------- export / import
  app.get("/api/runs/:id/export", async (req, reply) => {
    const { id } = parse(idParams, req.params, "run");
    const dir = store.dir(id);
    // Only what would import back leaves the server (409 otherwise): the importer's own validation.
    await checkExportable(dir, limits);
    reply
      .type("application/gzip")
      .header("content-disposition", `attachment; filename="lvlm-run-${id}.tar.gz"`);
    return reply.send(exportRunStream(dir));
  });

  // Run archives arrive as the raw request body (only here), streamed through the importer's checks.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      ["application/gzip", "application/x-gzip", "application/x-tar", "application/octet-stream"],
      (_req, payload, done) => done(null, payload),
    );
    scope.post("/api/import", { config: { body: "archive" } }, importRoute);
  });
  async function importRoute(req: FastifyRequest, reply: FastifyReply) {
    const body = req.body as Readable | undefined;
    if (!body || typeof (body as Readable).pipe !== "function") {
      throw new HttpError(415, "send the run archive as the request body with content-type application/gzip");
    }
    // Streamed straight through the checks: a bomb is refused while it arrives, never stored first.
    const id = await importArchive(store, body, {
      maxArchiveBytes: limits.maxImportBytes,
      maxUnpackedBytes: limits.maxUnpackedBytes,
      maxRatio: limits.maxImportRatio,
    });
    return reply.code(201).send({ run: store.get(id) });
  }

  // ---------------------------------------------------------------- jobs
  // Multipart forms are parsed only here.
  await app.register(async (scope) => {
    await scope.register(fastifyMultipart, {
      limits: {
        fileSize: limits.maxUploadBytes,
        files: 1,
        fields: 20,
        fieldSize: fieldSizeLimit(limits.maxPromptChars),
        parts: 30,
      },
    });
    scope.post("/api/generate", { config: { body: "multipart" } }, generateRoute);
  });
  /** The server model's tokenizer on this thread, loaded on first use, to check questions before queuing. */
  let tokenizer: TextProcessor | null | undefined;
  const questionTokenizer = (): TextProcessor | null => {
    if (tokenizer === undefined) {
      try {
        tokenizer = loadTextProcessor(opts.modelDir);
      } catch {
        tokenizer = null;
      }
    }
    return tokenizer;
  };
  async function generateRoute(req: FastifyRequest, reply: FastifyReply) {
    const { fields: f, image } = await readGenerateForm(req, limits);
    const warnings = checkQuestion(questionTokenizer(), f.prompt);
    if (!image) throw new HttpError(400, 'no image: send the picture as the multipart file field "image"');
    const fmt = sniffImageFormat(image.bytes);
    if (!fmt) throw new HttpError(415, `${quoted(image.name)}: not a PNG, JPEG or WebP image`);
    try {
      await decodeImage(image.bytes, image.name, { maxPixels: limits.maxPixels });
    } catch (e) {
      if (e instanceof ImageError)
        throw new HttpError(/megapixel limit/.test(e.message) ? 413 : 400, e.message);
      throw e;
    }
    checkQueueRoom();
    const id = store.newId();
    const out = store.pathFor(id);
    const name = `upload${IMAGE_EXTENSIONS[fmt]}`;
    const request = {
      ...f,
      image: { name: image.name.slice(0, 200), bytes: image.bytes.length },
    };
    const job = queue.submit(
      "generate",
      f.prompt.slice(0, 80),
      id,
      async (ctx) => {
        try {
          await model.run(
            {
              kind: "generate",
              payload: {
                image: new Uint8Array(image.bytes),
                imageName: name,
                prompt: f.prompt,
                maxNewTokens: f.max_new_tokens,
                temperature: f.temperature,
                topP: f.top_p,
                seed: f.seed,
                imageMode: f.image_mode,
                attnDtype: f.attn_dtype,
                out,
              },
            },
            ctx,
          );
          const m = readManifest(out);
          if (!m) throw new Error("the run folder was not written");
          store.add(id, m, "generated");
          return { runId: id, answer: m.answer, tokens: m.generated_tokens };
        } catch (e) {
          // Nothing half-done stays: a run that is not indexed is removed.
          if (!store.has(id)) {
            fs.rmSync(out, { recursive: true, force: true });
            store.release(id);
          }
          throw e;
        }
      },
      request,
    );
    return reply.code(202).send({ job, runId: id, warnings });
  }

  app.get("/api/jobs", async () => ({ jobs: queue.list() }));

  const jobParams = z.object({ id: z.string().regex(/^job-[a-z0-9]+-[0-9a-f]{8}$/, "not a job id") });

  app.get("/api/jobs/:id", async (req) => {
    const { id } = parse(jobParams, req.params, "job");
    const j = queue.get(id);
    if (!j) throw new HttpError(404, `no job with id "${id}"`);
    return j;
  });

  // Dismisses a finished job (e.g. an interrupted one the user has seen) from the list.
  app.delete("/api/jobs/:id", async (req) => {
    const { id } = parse(jobParams, req.params, "job");
    const j = queue.get(id);
    if (!j) throw new HttpError(404, `no job with id "${id}"`);
    if (!queue.dismiss(id)) throw new HttpError(409, `job "${id}" is ${j.state}; cancel it first`);
    return { dismissed: id };
  });

  app.post("/api/jobs/:id/cancel", async (req) => {
    const { id } = parse(jobParams, req.params, "job");
    const j = queue.get(id);
    if (!j) throw new HttpError(404, `no job with id "${id}"`);
    const cancelled = queue.cancel(id);
    return { id, cancelled, state: queue.get(id)?.state };
  });

  app.get("/api/jobs/:id/events", async (req, reply) => {
    const { id } = parse(jobParams, req.params, "job");
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
