/**
 * Queued analyses of a run: relevancy and causal explanations, computed by the model worker.
 */
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { RELEVANCY_MODES } from "../../interpret/relevancy/index.js";
import { RELEVANCY_MAP_KINDS } from "../../interpret/views/relevancy-panels.js";
import { HttpError } from "../http-error.js";
import {
  checkAnswerToken,
  idParams,
  manifestOf,
  parse,
  type RoutesOptions,
  submitRunJob,
} from "../route-context.js";

export async function analysisJobRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const modeSchema = z.enum(RELEVANCY_MODES);
  const kindSchema = z.enum(RELEVANCY_MAP_KINDS);
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
    const { m } = manifestOf(ctx, id);
    if (Array.isArray(b.tokens)) for (const t of b.tokens) checkAnswerToken(m, t);
    const job = submitRunJob(ctx, id, "relevancy", `relevancy ${b.mode} ${b.kind}`, b, (dir) => ({
      kind: "relevancy",
      payload: { runDir: dir, mode: b.mode, tokens: b.tokens, vision: b.kind === "llm" ? [] : [b.kind] },
    }));
    return reply.code(202).send({ job });
  });

  app.post("/api/runs/:id/causal", { config: { body: "json" } }, async (req, reply) => {
    const { id } = parse(idParams, req.params, "run");
    const b = parse(
      z.object({ token: z.number().int().min(0), layer: z.number().int().min(0).optional() }),
      req.body === undefined ? {} : req.body,
      "body",
    );
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
    return reply.code(202).send({ job });
  });
}
