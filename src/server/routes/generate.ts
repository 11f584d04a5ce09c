/**
 * Questions: a multipart form (image + question + settings) checked here, then queued as a generation whose
 * run directory is indexed when whole (and removed when not).
 */
import * as fs from "node:fs";
import fastifyMultipart from "@fastify/multipart";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { GenerateResponse } from "../../contracts/http.js";
import { decodeImage, IMAGE_EXTENSIONS, ImageError, sniffImageFormat } from "../../hf/image-decode.js";
import type { TextProcessor } from "../../hf/tokenizer.js";
import { loadTextProcessor } from "../../models/registry.js";
import { checkQuestion, fieldSizeLimit, readGenerateForm } from "../generate-request.js";
import { HttpError, quoted } from "../http-error.js";
import { checkQueueRoom, type RoutesOptions } from "../route-context.js";
import { readManifest } from "../run-store.js";

export async function generateRoutes(app: FastifyInstance, { ctx }: RoutesOptions): Promise<void> {
  const { store, queue, model, limits } = ctx;
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
        tokenizer = loadTextProcessor(ctx.modelDir);
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
    checkQueueRoom(ctx);
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
    return reply.code(202).send({ job, runId: id, warnings } satisfies GenerateResponse);
  }
}
