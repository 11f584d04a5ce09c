/**
 * `trace`: image + question → answer + a run directory with everything the views need (attention of every
 * LLM and vision layer, logits, features, the image the model saw). The CLI and the server call this.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { generate } from "./generate/generate.js";
import { decodeImage, encodePng, type RgbImage } from "./hf/image-decode.js";
import {
  type ImageMode,
  type ImageProcessorConfig,
  parseImageProcessorConfig,
  preprocessImage,
} from "./hf/image-processor.js";
import type { TensorToWrite } from "./hf/safetensors.js";
import type { Kernels } from "./kernels/types.js";
import type { LlavaModel } from "./models/llava.js";
import { RUN_FORMAT, type RunManifest } from "./run/manifest.js";
import { checkRunOut, writeRun } from "./run/run-dir.js";
import { f32ToF16 } from "./tensor/half.js";

export class TraceError extends Error {}

export interface TraceRequest {
  /** Encoded PNG/JPEG/WebP bytes and a label for messages (usually the file path). */
  image: { bytes: Uint8Array; name: string };
  prompt: string;
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  seed: number;
  imageMode: ImageMode;
  attnDtype: "f32" | "f16";
  out: string;
  overwrite?: boolean;
  onProgress?: (stage: string, done: number, total: number) => void;
  onToken?: (index: number, id: number, text: string) => void;
}

export interface TraceResult {
  runDir: string;
  manifest: RunManifest;
}

export function imageProcessorFor(model: LlavaModel): ImageProcessorConfig {
  return parseImageProcessorConfig(
    model.preprocessorJson,
    path.join(model.dir, "preprocessor_config.json"),
    model.config.vision.modelType,
    model.config.vision.imageSize,
  );
}

/** Ids that end generation: config/generation_config EOS plus the tokenizer's, and gemma's `<end_of_turn>`. */
export function stopTokenIds(model: LlavaModel): number[] {
  const ids = new Set<number>(model.config.text.eosTokenIds);
  const gen = path.join(model.dir, "generation_config.json");
  if (fs.existsSync(gen)) {
    try {
      const eos = JSON.parse(fs.readFileSync(gen, "utf8")).eos_token_id;
      for (const id of Array.isArray(eos) ? eos : [eos]) if (typeof id === "number") ids.add(id);
    } catch {
      // A malformed generation_config only loses its extra stop ids.
    }
  }
  const eosTok = model.text.special("eos_token");
  const eosId = eosTok === null ? undefined : model.text.tokenId(eosTok);
  if (eosId !== undefined) ids.add(eosId);
  if (model.config.text.modelType === "gemma") {
    const eot = model.text.tokenId("<end_of_turn>");
    if (eot !== undefined) ids.add(eot);
  }
  return [...ids];
}

function toF16(a: Float32Array): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToF16(a[i]);
  return out;
}

function stack(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export async function traceWithModel(
  model: LlavaModel,
  kernels: Kernels,
  req: TraceRequest,
): Promise<TraceResult> {
  if (!req.prompt.trim()) throw new TraceError("the prompt is empty");
  if (!Number.isInteger(req.maxNewTokens) || req.maxNewTokens < 1)
    throw new TraceError(`max new tokens must be a positive integer, got ${req.maxNewTokens}`);
  const progress = req.onProgress ?? (() => {});
  const timings: Record<string, number> = {};

  // Cheap refusals first, so nothing is computed for a request that cannot succeed.
  const count = model.imageTokenCount;
  const enc = model.text.encodePrompt(req.prompt, count);
  const T = enc.inputIds.length;
  const maxPos = model.config.text.maxPositionEmbeddings;
  if (T + req.maxNewTokens - 1 > maxPos) {
    throw new TraceError(
      `prompt is ${T} tokens (${count} of them image tokens); with ${req.maxNewTokens} new tokens it exceeds the model's context of ${maxPos} positions`,
    );
  }
  checkRunOut(req.out, { overwrite: req.overwrite });

  let t0 = performance.now();
  const rgb: RgbImage = await decodeImage(req.image.bytes, req.image.name);
  const ipc = imageProcessorFor(model);
  const pre = preprocessImage(rgb, ipc, req.imageMode);
  const S = model.config.vision.imageSize;
  if (pre.height !== S || pre.width !== S) {
    throw new TraceError(
      `${ipc.file}: the processor outputs ${pre.width}×${pre.height} pixels but the vision tower expects ${S}×${S}`,
    );
  }
  timings.preprocess = performance.now() - t0;

  t0 = performance.now();
  const vitLayers = model.config.vision.numLayers;
  const image = await model.encodeImage(kernels, pre.pixelValues, (i) =>
    progress("vision", i + 1, vitLayers),
  );
  timings.vision = performance.now() - t0;

  const gen = await generate(model, kernels, enc.inputIds, image, {
    maxNewTokens: req.maxNewTokens,
    temperature: req.temperature,
    topP: req.topP,
    seed: req.seed,
    stopIds: stopTokenIds(model),
    onProgress: progress,
    onToken: (i, id) => req.onToken?.(i, id, model.text.decode([id])),
  });
  Object.assign(timings, gen.timingsMs);

  const G = gen.generatedIds.length;
  const V = model.config.text.vocabSize;
  const attnTensor = (name: string, shape: number[], data: Float32Array): TensorToWrite =>
    req.attnDtype === "f16"
      ? { name, dtype: "F16", shape, data: toF16(data) }
      : { name, dtype: "F32", shape, data };
  const H = model.config.text.numHeads;
  const Hv = model.config.vision.numHeads;
  const P = image.vision.seqLen;
  const tensors: TensorToWrite[] = [
    { name: "pixel_values", dtype: "F32", shape: [3, S, S], data: pre.pixelValues },
    { name: "logits", dtype: "F32", shape: [G, V], data: stack(gen.stepLogits) },
    {
      name: "vision_features",
      dtype: "F32",
      shape: [count, model.config.text.hiddenSize],
      data: image.features,
    },
    ...gen.llmAttn.map((a, l) => attnTensor(`llm_attn.${l}`, [H, gen.seqLen, gen.seqLen], a)),
    ...image.vision.attentions.map((a, l) => attnTensor(`vit_attn.${l}`, [Hv, P, P], a)),
  ];
  const ext = /\.jpe?g$/i.test(req.image.name)
    ? ".jpg"
    : path.extname(req.image.name).toLowerCase() || ".img";
  const originalName = `input${ext}`;
  const manifest: RunManifest = {
    format: RUN_FORMAT,
    created_at: new Date().toISOString(),
    model: {
      dir: path.resolve(model.dir),
      text_model_type: model.config.text.modelType,
      vision_model_type: model.config.vision.modelType,
      llm_layers: model.config.text.numLayers,
      llm_heads: H,
      llm_kv_heads: model.config.text.numKvHeads,
      vit_layers: vitLayers,
      vit_heads: Hv,
      patch_grid: model.patchGrid,
      has_cls: model.config.vision.hasCls,
      vision_feature_layer: model.config.visionFeatureLayers[0],
    },
    prompt: req.prompt,
    chat_text: enc.chatText,
    input_ids: enc.inputIds,
    image_token_start: enc.imageTokenStart,
    image_token_count: count,
    generated_ids: gen.generatedIds,
    generated_tokens: gen.generatedIds.map((id) => model.text.decode([id])),
    answer: model.text.decode(gen.generatedIds, true).trim(),
    seq_len: gen.seqLen,
    settings: {
      max_new_tokens: req.maxNewTokens,
      temperature: req.temperature,
      top_p: req.topP,
      seed: req.seed,
      image_mode: req.imageMode,
    },
    timings_ms: timings,
    image_file: "image.png",
    original_image_file: originalName,
    attn_dtype: req.attnDtype,
    tensor_files: [],
  };
  progress("write", 0, 1);
  writeRun(
    req.out,
    {
      manifest,
      tensors,
      files: [
        { name: "image.png", data: encodePng(pre.processed) },
        { name: originalName, data: req.image.bytes },
      ],
    },
    { overwrite: req.overwrite },
  );
  progress("write", 1, 1);
  return { runDir: path.resolve(req.out), manifest };
}
