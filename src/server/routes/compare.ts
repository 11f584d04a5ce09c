/**
 * Two runs side by side (GET /api/compare: the library's compareRuns in the analysis worker) and the batch
 * report of the data folder (GET /api/batch), for the web app's compare view and batch browser.
 */
import * as path from "node:path";
import type { FastifyInstance } from "fastify";
import { type BatchView, type CompareView, compareQuery } from "../../contracts/http.js";
import type { RunManifest } from "../../run/manifest.js";
import { readBatchView } from "../batch-report.js";
import { HttpError } from "../http-error.js";
import { manifestOf, parse, type RoutesOptions } from "../route-context.js";

/** The model a run was made with, as the 409 for runs of different models names it. */
const modelName = (m: RunManifest) =>
  `${path.basename(m.model.dir)} (${m.model.llm_layers} layers × ${m.model.llm_heads} heads)`;

export async function compareRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const { store, analysis } = ctx;

  // Two runs side by side: one answer token of each (the same index), maps, image/question shares, difference.
  app.get("/api/compare", async (req): Promise<CompareView> => {
    const q = parse(compareQuery, req.query, "query");
    if (q.a === q.b) throw new HttpError(400, `query: a and b are the same run ("${q.a}"); choose two runs`);
    const A = manifestOf(ctx, q.a);
    const B = manifestOf(ctx, q.b);
    if (modelName(A.m) !== modelName(B.m))
      throw new HttpError(
        409,
        `runs "${q.a}" and "${q.b}" come from different models (${modelName(A.m)} vs ${modelName(B.m)}); compare runs of one model`,
      );
    for (const [label, side] of [
      ["A", A],
      ["B", B],
    ] as const) {
      const G = side.m.generated_ids.length;
      if (q.token >= G)
        throw new HttpError(
          400,
          `query: answer token ${q.token} is out of range for run ${label} (its answer has tokens 0…${G - 1})`,
        );
    }
    return analysis.call("compare", A.dir, B.dir, q.a, q.b, q.mode, q.token);
  });

  // The batch whose runs folder is the data folder (serve --data DIR/runs): DIR/report.json joined to the runs.
  app.get("/api/batch", async (): Promise<BatchView> => {
    store.reconcile({ prune: false });
    return readBatchView(store.dataDir, (id) => store.has(id));
  });
}
