/**
 * Health and configuration: what the UI asks before anything else.
 */
import * as path from "node:path";
import type { FastifyInstance } from "fastify";
import type { ConfigResponse, HealthResponse } from "../../contracts/http.js";
import { IMAGE_MEDIA_TYPES } from "../../hf/image-decode.js";
import type { RoutesOptions } from "../route-context.js";

export async function infoRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const { modelSummary, limits, queue, model } = ctx;
  app.get(
    "/api/health",
    async (): Promise<HealthResponse> => ({
      ok: true,
      model: model.status,
      queue: queue.list().filter((j) => j.state === "queued" || j.state === "running").length,
    }),
  );

  app.get(
    "/api/config",
    async (): Promise<ConfigResponse> => ({
      model: {
        name: path.basename(path.resolve(ctx.modelDir)),
        model_type: modelSummary.modelType,
        text_model_type: modelSummary.textModelType,
        vision_model_type: modelSummary.visionModelType,
        llm_layers: modelSummary.llmLayers,
        llm_heads: modelSummary.llmHeads,
        vit_layers: modelSummary.vitLayers,
        status: model.status,
      },
      limits,
      image_types: Object.values(IMAGE_MEDIA_TYPES),
    }),
  );
}
