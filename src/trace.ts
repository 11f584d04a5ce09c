/**
 * `trace`: image + question → answer + a run directory with everything the views need (attention of every
 * LLM and vision layer, logits, features, the image the model saw). The CLI and the server call this.
 */
import * as path from "node:path";
import type { AttnDtype, ImageMode } from "./contracts/lists.js";
import { generate } from "./generate/generate.js";
import { decodeImage, encodePng, type RgbImage } from "./hf/image-decode.js";
import type { TensorToWrite } from "./hf/safetensors.js";
import type { Kernels } from "./kernels/types.js";
import { layoutBoxes } from "./models/image-layout.js";
import type { VisionLanguageModel } from "./models/types.js";
import { RUN_FORMAT, type RunManifest } from "./run/manifest.js";
import {
  checkRunOut,
  IMAGE_BOXES_TENSOR,
  IMAGE_GRID_TENSOR,
  IMAGE_POSITIONS_TENSOR,
  vitWindowTensorName,
  writeRun,
} from "./run/run-dir.js";
import { packedWidth, packWindowed } from "./run/window-attention.js";
import { f32ToF16 } from "./tensor/half.js";

export class TraceError extends Error {}

/**
 * Bytes of the prefill's attention a trace keeps in memory until the run is written; the rest waits in an
 * unlinked file under TMPDIR (a full-depth 7B's is ~1.4 GB, next to ~13 GiB of weights).
 */
const ATTENTION_MEMORY_BYTES = 2 ** 28;

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
  attnDtype: AttnDtype;
  out: string;
  overwrite?: boolean;
  /** Bytes of the prefill's attention kept in memory until the run is written (default 256 MiB; see below). */
  attentionMemoryBytes?: number;
  onProgress?: (stage: string, done: number, total: number) => void;
  onToken?: (index: number, id: number, text: string) => void;
}

export interface TraceResult {
  runDir: string;
  manifest: RunManifest;
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
  model: VisionLanguageModel,
  kernels: Kernels,
  req: TraceRequest,
): Promise<TraceResult> {
  if (!req.prompt.trim()) throw new TraceError("the prompt is empty");
  if (!Number.isInteger(req.maxNewTokens) || req.maxNewTokens < 1)
    throw new TraceError(`max new tokens must be a positive integer, got ${req.maxNewTokens}`);
  const progress = req.onProgress ?? (() => {});
  const timings: Record<string, number> = {};
  // Cheap refusals first: the output folder, then (once the image's token count is known, which needs only the
  // processor) the prompt's length — nothing expensive runs for a request that cannot succeed.
  checkRunOut(req.out, { overwrite: req.overwrite });
  let t0 = performance.now();
  const rgb: RgbImage = await decodeImage(req.image.bytes, req.image.name);
  const pre = model.preprocess(rgb, req.imageMode);
  timings.preprocess = performance.now() - t0;

  const info = model.info;
  const count = pre.layout.token_count;
  const enc = model.text.encodePrompt(req.prompt, count);
  const T = enc.inputIds.length;
  const maxPos = info.maxPositions;
  if (T + req.maxNewTokens - 1 > maxPos) {
    throw new TraceError(
      `prompt is ${T} tokens (${count} of them image tokens); with ${req.maxNewTokens} new tokens it exceeds the model's context of ${maxPos} positions`,
    );
  }

  t0 = performance.now();
  const vitLayers = info.vitLayers;
  const image = await model.encodeImage(kernels, pre.pixels, {
    layout: pre.layout,
    onLayer: (i) => progress("vision", i + 1, vitLayers),
  });
  timings.vision = performance.now() - t0;

  const gen = await generate(model, kernels, enc.inputIds, image, pre.layout, {
    maxNewTokens: req.maxNewTokens,
    temperature: req.temperature,
    topP: req.topP,
    seed: req.seed,
    stopIds: [...model.stopTokenIds],
    onProgress: progress,
    onToken: (i, id) => req.onToken?.(i, id, model.text.decode([id])),
    attentionMemoryBytes: req.attentionMemoryBytes ?? ATTENTION_MEMORY_BYTES,
  });
  try {
    Object.assign(timings, gen.timingsMs);

    const G = gen.generatedIds.length;
    const V = info.vocabSize;
    const attnTensor = (name: string, shape: number[], data: Float32Array): TensorToWrite =>
      req.attnDtype === "f16"
        ? { name, dtype: "F16", shape, data: toF16(data) }
        : { name, dtype: "F32", shape, data };
    // Each layer's square is assembled (and its prefill block read back) only when the writer gets to it.
    const llmAttnTensor = (l: number): TensorToWrite => ({
      name: `llm_attn.${l}`,
      dtype: req.attnDtype === "f16" ? "F16" : "F32",
      shape: [H, gen.seqLen, gen.seqLen],
      data: () => {
        const a = gen.llmAttn.take(l);
        return req.attnDtype === "f16" ? toF16(a) : a;
      },
    });
    // Windowed blocks keep only their windows' keys: [H, N, w] and each patch's window (docs/trace-format.md).
    const towerAttentionTensors = (
      l: number,
      a: { data: Float32Array; shape: number[] },
      windows: Int32Array | null,
    ): TensorToWrite[] => {
      if (!windows) return [attnTensor(`vit_attn.${l}`, a.shape, a.data)];
      const heads = a.shape[0];
      return [
        attnTensor(
          `vit_attn.${l}`,
          [heads, windows.length, packedWidth(windows)],
          packWindowed(a.data, heads, windows),
        ),
        {
          name: vitWindowTensorName(l),
          dtype: "I64",
          shape: [windows.length],
          data: BigInt64Array.from(windows, BigInt),
        },
      ];
    };
    const H = info.llmHeads;
    const tensors: TensorToWrite[] = [
      { name: "pixel_values", dtype: "F32", shape: pre.pixels.shape, data: pre.pixels.data },
      // Patch-sequence pixel values (Qwen2-VL) need their grid to be encoded again (relevancy, causal).
      ...(pre.pixels.grid
        ? [
            {
              name: IMAGE_GRID_TENSOR,
              dtype: "I64" as const,
              shape: [1, pre.pixels.grid.length],
              data: BigInt64Array.from(pre.pixels.grid, BigInt),
            },
          ]
        : []),
      { name: "logits", dtype: "F32", shape: [G, V], data: stack(gen.stepLogits) },
      {
        name: "vision_features",
        dtype: "F32",
        shape: [count, info.hiddenSize],
        data: image.features,
      },
      ...Array.from({ length: gen.llmAttn.layers }, (_, l) => llmAttnTensor(l)),
      ...image.towerAttentions.flatMap((a, l) =>
        towerAttentionTensors(l, a, image.towerWindows?.[l] ?? null),
      ),
      {
        name: IMAGE_POSITIONS_TENSOR,
        dtype: "I64",
        shape: [count],
        data: BigInt64Array.from(model.imagePositions(enc.inputIds), BigInt),
      },
      { name: IMAGE_BOXES_TENSOR, dtype: "F32", shape: [count, 4], data: layoutBoxes(pre.layout) },
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
        model_type: info.modelType,
        text_model_type: info.textModelType,
        vision_model_type: info.visionModelType,
        llm_layers: info.llmLayers,
        llm_heads: H,
        llm_kv_heads: info.llmKvHeads,
        vit_layers: vitLayers,
        vit_heads: info.vitHeads,
        has_cls: info.hasCls,
        vision_feature_layer: info.visionFeatureLayer,
        position_axes: info.positionAxes,
        // Only when not as stored: the numbers of such a run are those of the quantised model.
        ...(info.weights !== "stored" ? { weights: info.weights } : {}),
      },
      prompt: req.prompt,
      chat_text: enc.chatText,
      input_ids: enc.inputIds,
      image_layout: pre.layout,
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
          { name: "image.png", data: encodePng(pre.seen) },
          { name: originalName, data: req.image.bytes },
        ],
      },
      { overwrite: req.overwrite },
    );
    progress("write", 1, 1);
    return { runDir: path.resolve(req.out), manifest };
  } finally {
    gen.llmAttn.dispose(); // what is left of it, and its file if the prefill's attention needed one
  }
}
