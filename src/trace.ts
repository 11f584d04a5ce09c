/**
 * `trace`: image + question → answer + a run directory with everything the views need (attention of every
 * LLM and vision layer, logits, features, the image the model saw). The CLI and the server call this.
 */
import * as path from "node:path";
import type { AttnDtype, ImageMode } from "./contracts/lists.js";
import { type GenerationAttention, generate } from "./generate/generate.js";
import { decodeImage, encodePng, type RgbImage } from "./hf/image-decode.js";
import type { TensorToWrite } from "./hf/safetensors.js";
import type { Kernels } from "./kernels/types.js";
import { type ImageLayout, layoutBoxes } from "./models/image-layout.js";
import { TowerAttentionStore } from "./models/tower-attention-store.js";
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
 * Bytes of the language model's prefill attention, and as many of the tower's, a trace keeps in memory until
 * the run is written; the rest waits in unlinked files under TMPDIR (a full-depth llava-1.5-7b's are ~1.4 GB
 * and ~0.5 GB, next to ~13 GiB of weights).
 */
const ATTENTION_MEMORY_BYTES = 2 ** 27;

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
  /**
   * Bytes of the prefill's attention, and of the tower's, kept in memory until the run is written (default
   * 128 MiB each; see ATTENTION_MEMORY_BYTES).
   */
  attentionMemoryBytes?: number;
  onProgress?: (stage: string, done: number, total: number) => void;
  onToken?: (index: number, id: number, text: string) => void;
  /**
   * Refuses the request for this image by throwing, once it is preprocessed and before the model runs (e.g.
   * relevancy maps to add afterwards that this model cannot give for it).
   */
  check?: (layout: ImageLayout) => void;
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
  req.check?.(pre.layout);

  const budget = req.attentionMemoryBytes ?? ATTENTION_MEMORY_BYTES;
  // The tower's attention waits off the heap too, from the encoder's hook until the writer stacks each layer.
  const towerStore = new TowerAttentionStore(budget);
  let llmAttn: GenerationAttention | null = null;
  try {
    t0 = performance.now();
    const vitLayers = info.vitLayers;
    const image = await model.encodeImage(kernels, pre.pixels, {
      layout: pre.layout,
      onLayer: (i) => progress("vision", i + 1, vitLayers),
      onAttention: (l, pass, probs) => towerStore.add(l, pass, probs),
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
      attentionMemoryBytes: budget,
    });
    llmAttn = gen.llmAttn;
    Object.assign(timings, gen.timingsMs);

    const G = gen.generatedIds.length;
    const V = info.vocabSize;
    // Every family hands its tower's attention to the store (onAttention) and says how a layer's passes stack.
    const towerShape = image.towerAttentionShape;
    const towerPasses = towerShape.length === 4 ? towerShape[0] : 1;
    const towerAttention = (l: number) => towerStore.take(l, towerPasses);
    // Attention tensors are made when the writer gets to them: each layer's square is assembled (its blocks
    // read back from a file where they waited) one at a time.
    const attnTensor = (name: string, shape: number[], make: () => Float32Array): TensorToWrite => ({
      name,
      dtype: req.attnDtype === "f16" ? "F16" : "F32",
      shape,
      data: () => (req.attnDtype === "f16" ? toF16(make()) : make()),
    });
    // Windowed blocks keep only their windows' keys: [H, N, w] and each patch's window (docs/trace-format.md).
    const towerAttentionTensors = (l: number, windows: Int32Array | null): TensorToWrite[] => {
      const make = () => towerAttention(l);
      if (!windows) return [attnTensor(`vit_attn.${l}`, towerShape, make)];
      const heads = towerShape[0];
      return [
        attnTensor(`vit_attn.${l}`, [heads, windows.length, packedWidth(windows)], () =>
          packWindowed(make(), heads, windows),
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
      ...Array.from({ length: gen.llmAttn.layers }, (_, l) =>
        attnTensor(`llm_attn.${l}`, [H, gen.seqLen, gen.seqLen], () => gen.llmAttn.take(l)),
      ),
      ...Array.from({ length: towerStore.layers }, (_, l) =>
        towerAttentionTensors(l, image.towerWindows?.[l] ?? null),
      ).flat(),
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
    // What is left of the attention, and the files it needed, if any.
    llmAttn?.dispose();
    towerStore.dispose();
  }
}
