/**
 * Read-only views of a run (attention, relevancy maps and text, reliance, causal explanations): small JSON
 * computed by the analysis worker from the run directory.
 */
import type { FastifyInstance } from "fastify";
import {
  type AttentionSummary,
  attentionHeadsQuery,
  attentionPatchesBody,
  attentionSummaryQuery,
  type CausalView,
  causalParams,
  type HeadImageMaps,
  type PatchAttention,
  type RelevancyMapsView,
  type RelevancyRelianceView,
  type RelevancyTextView,
  relevancyMapsQuery,
  relevancyRelianceQuery,
  relevancyTextQuery,
  runIdParams,
} from "../../contracts/http.js";
import { checkAnswerToken, manifestOf, parse, type RoutesOptions } from "../route-context.js";

export async function viewRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const { store, analysis } = ctx;
  app.get("/api/runs/:id/attention/summary", async (req): Promise<AttentionSummary> => {
    const { id } = parse(runIdParams, req.params, "run");
    const q = parse(attentionSummaryQuery, req.query, "query");
    return analysis.call("summary", store.dir(id), q.tokens);
  });

  app.get("/api/runs/:id/attention/heads", async (req): Promise<HeadImageMaps> => {
    const { id } = parse(runIdParams, req.params, "run");
    const q = parse(attentionHeadsQuery, req.query, "query");
    return analysis.call("heads", store.dir(id), q.layer, q.tokens);
  });

  app.post(
    "/api/runs/:id/attention/patches",
    { config: { body: "json" } },
    async (req): Promise<PatchAttention> => {
      const { id } = parse(runIdParams, req.params, "run");
      const b = parse(attentionPatchesBody, req.body, "body");
      return analysis.call("patches", store.dir(id), b.layer, b.patches);
    },
  );

  app.get("/api/runs/:id/relevancy/maps", async (req): Promise<RelevancyMapsView> => {
    const { id } = parse(runIdParams, req.params, "run");
    const q = parse(relevancyMapsQuery, req.query, "query");
    return analysis.call("relMaps", store.dir(id), q.mode, q.kind, q.by, q.normalized === "true");
  });

  app.get("/api/runs/:id/relevancy/text", async (req): Promise<RelevancyTextView> => {
    const { id } = parse(runIdParams, req.params, "run");
    const q = parse(relevancyTextQuery, req.query, "query");
    const { dir, m } = manifestOf(ctx, id);
    checkAnswerToken(m, q.token);
    return analysis.call("relText", dir, q.mode, q.token);
  });

  app.get("/api/runs/:id/relevancy/reliance", async (req): Promise<RelevancyRelianceView> => {
    const { id } = parse(runIdParams, req.params, "run");
    const q = parse(relevancyRelianceQuery, req.query, "query");
    return analysis.call("relReliance", store.dir(id), q.mode);
  });

  app.get("/api/runs/:id/causal/:token", async (req): Promise<CausalView> => {
    const p = parse(causalParams, req.params, "path");
    const { dir, m } = manifestOf(ctx, p.id);
    checkAnswerToken(m, p.token);
    return analysis.call("causal", dir, p.token);
  });
}
