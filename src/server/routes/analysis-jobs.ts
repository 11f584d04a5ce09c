/**
 * Queued analyses of a run: relevancy and causal explanations, computed by the model worker.
 */
import type { FastifyInstance } from "fastify";
import { causalJobBody, type JobSubmitted, relevancyJobBody, runIdParams } from "../../contracts/http.js";
import { HttpError } from "../http-error.js";
import { checkAnswerToken, manifestOf, parse, type RoutesOptions, submitRunJob } from "../route-context.js";

export async function analysisJobRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  app.post("/api/runs/:id/relevancy", { config: { body: "json" } }, async (req, reply) => {
    const { id } = parse(runIdParams, req.params, "run");
    const b = parse(relevancyJobBody, req.body === undefined ? {} : req.body, "body");
    const { m } = manifestOf(ctx, id);
    if (Array.isArray(b.tokens)) for (const t of b.tokens) checkAnswerToken(m, t);
    const job = submitRunJob(ctx, id, "relevancy", `relevancy ${b.mode} ${b.kind}`, b, (dir) => ({
      kind: "relevancy",
      payload: { runDir: dir, mode: b.mode, tokens: b.tokens, vision: b.kind === "llm" ? [] : [b.kind] },
    }));
    return reply.code(202).send({ job } satisfies JobSubmitted);
  });

  app.post("/api/runs/:id/causal", { config: { body: "json" } }, async (req, reply) => {
    const { id } = parse(runIdParams, req.params, "run");
    const b = parse(causalJobBody, req.body === undefined ? {} : req.body, "body");
    const { m } = manifestOf(ctx, id);
    checkAnswerToken(m, b.token);
    if (b.layer !== undefined && b.layer >= m.model.llm_layers) {
      throw new HttpError(
        400,
        `layer ${b.layer} is out of range (the model has LLM layers 0…${m.model.llm_layers - 1})`,
      );
    }
    const job = submitRunJob(ctx, id, "causal", `causal token ${b.token}`, b, (dir) => ({
      kind: "causal",
      payload: { runDir: dir, token: b.token, layer: b.layer },
    }));
    return reply.code(202).send({ job } satisfies JobSubmitted);
  });
}
