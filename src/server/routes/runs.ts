/**
 * The run index and one run: its details, its two images, deletion.
 */
import * as path from "node:path";
import type { FastifyInstance } from "fastify";
import { type RunDeleted, type RunDetail, type RunsResponse, runIdParams } from "../../contracts/http.js";
import { IMAGE_EXTENSIONS, IMAGE_MEDIA_TYPES, type ImageFormat } from "../../hf/image-decode.js";
import { HttpError } from "../http-error.js";
import { manifestOf, parse, type RoutesOptions, sendRunFile } from "../route-context.js";

export async function runRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const { store, queue, analysis } = ctx;
  // Run folders written into the data dir by other means (e.g. `lvlm-interpret trace --out <data>/name`) appear.
  app.get("/api/runs", async (): Promise<RunsResponse> => {
    store.reconcile({ prune: false });
    return { runs: store.list() };
  });

  app.get("/api/runs/:id", async (req): Promise<RunDetail> => {
    const { id } = parse(runIdParams, req.params, "run");
    const { dir, m } = manifestOf(ctx, id);
    const extras = await analysis.call("runExtras", dir);
    // Deleted while the worker read it: gone, rather than an answer without its index row.
    const index = store.get(id);
    if (!index) throw new HttpError(404, `no run with id "${id}"`);
    return {
      id,
      index,
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

  app.delete("/api/runs/:id", async (req): Promise<RunDeleted> => {
    const { id } = parse(runIdParams, req.params, "run");
    const dir = store.dir(id);
    const busy = queue.list().find((j) => j.runId === id && (j.state === "queued" || j.state === "running"));
    if (busy) throw new HttpError(409, `run "${id}" has a ${busy.kind} job in progress; cancel it first`);
    await analysis.call("forget", dir);
    store.remove(id);
    return { deleted: id };
  });

  app.get("/api/runs/:id/image", async (req, reply) => {
    const { id } = parse(runIdParams, req.params, "run");
    const { dir, m } = manifestOf(ctx, id);
    return sendRunFile(reply, dir, m.image_file, "image/png");
  });

  app.get("/api/runs/:id/input", async (req, reply) => {
    const { id } = parse(runIdParams, req.params, "run");
    const { dir, m } = manifestOf(ctx, id);
    const ext = path.extname(m.original_image_file).toLowerCase();
    const format = (Object.keys(IMAGE_EXTENSIONS) as ImageFormat[]).find((f) => IMAGE_EXTENSIONS[f] === ext);
    return sendRunFile(
      reply,
      dir,
      m.original_image_file,
      format ? IMAGE_MEDIA_TYPES[format] : "application/octet-stream",
    );
  });
}
