/**
 * The faithfulness check of a map in the app: POST queues it on the model worker (it re-runs the model);
 * GET returns a stored result (faithfulness/<k>.<map>.json in the run, the library's numbers as written).
 */
import type { FastifyInstance } from "fastify";
import { faithfulnessJobBody, faithfulnessQuery, runIdParams } from "../../contracts/http.js";
import { formatMapSpec, parseMapSpec } from "../../interpret/faithfulness/index.js";
import { HttpError } from "../http-error.js";
import { checkAnswerToken, manifestOf, parse, type RoutesOptions, submitRunJob } from "../route-context.js";

/** The canonical form of a map spec, or a 400 saying what is wrong with it. */
function mapOf(spec: string): string {
  try {
    return formatMapSpec(parseMapSpec(spec));
  } catch (e) {
    throw new HttpError(400, (e as Error).message);
  }
}

export async function faithfulnessRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  app.post("/api/runs/:id/faithfulness", { config: { body: "json" } }, async (req, reply) => {
    const { id } = parse(runIdParams, req.params, "run");
    const b = parse(faithfulnessJobBody, req.body === undefined ? {} : req.body, "body");
    const map = mapOf(b.map);
    const { dir, m } = manifestOf(ctx, id);
    checkAnswerToken(m, b.token);
    // Refused up front when the run lacks the map's inputs (relevancy or causal not computed yet).
    await ctx.analysis.call("faithCheckable", dir, map, b.token);
    const asked = { ...b, map };
    const job = submitRunJob(ctx, id, "faithfulness", `check ${map} token ${b.token}`, asked, (d) => ({
      kind: "faithfulness",
      payload: { runDir: d, token: b.token, map, steps: b.steps, seeds: b.seeds },
    }));
    return reply.code(202).send({ job });
  });

  app.get("/api/runs/:id/faithfulness", async (req) => {
    const { id } = parse(runIdParams, req.params, "run");
    const q = parse(faithfulnessQuery, req.query, "query");
    const map = mapOf(q.map);
    const { dir, m } = manifestOf(ctx, id);
    checkAnswerToken(m, q.token);
    return ctx.analysis.call("faithfulness", dir, map, q.token);
  });
}
