/**
 * Read-only views of a run (attention, relevancy maps and text, reliance, causal explanations): small JSON
 * computed by the analysis worker from the run directory.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { RELEVANCY_MODES } from "../../interpret/relevancy/index.js";
import { RELEVANCY_MAP_KINDS } from "../../interpret/views/relevancy-panels.js";
import {
  checkAnswerToken,
  idParams,
  intList,
  manifestOf,
  parse,
  type RoutesOptions,
} from "../route-context.js";

export async function viewRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const { store, analysis } = ctx;
  const modeSchema = z.enum(RELEVANCY_MODES);
  const kindSchema = z.enum(RELEVANCY_MAP_KINDS);
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
    const { dir, m } = manifestOf(ctx, id);
    checkAnswerToken(m, q.token);
    return analysis.call("relText", dir, q.mode, q.token);
  });

  app.get("/api/runs/:id/relevancy/reliance", async (req) => {
    const { id } = parse(idParams, req.params, "run");
    const q = parse(z.object({ mode: modeSchema.default("exact") }), req.query, "query");
    return analysis.call("relReliance", store.dir(id), q.mode);
  });

  app.get("/api/runs/:id/causal/:token", async (req) => {
    const p = parse(z.object({ id: z.string(), token: z.coerce.number().int().min(0) }), req.params, "path");
    const { dir, m } = manifestOf(ctx, p.id);
    checkAnswerToken(m, p.token);
    return analysis.call("causal", dir, p.token);
  });
}
