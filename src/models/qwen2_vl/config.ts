/**
 * Qwen2-VL / Qwen2.5-VL `config.json` (model_type "qwen2_vl" / "qwen2_5_vl"), normalised. Text fields sit at the
 * top level (Hub checkpoints) or in `text_config` (transformers ≥ 4.52); both are read. The text model is a
 * Qwen2 decoder with M-RoPE (`rope_scaling.mrope_section`).
 */
import {
  ConfigError,
  type Json,
  num,
  parseText,
  readConfigJson,
  str,
  type TextConfig,
} from "../../hf/config.js";

export const QWEN_VL_MODEL_TYPES = ["qwen2_vl", "qwen2_5_vl"] as const;
export type QwenVlModelType = (typeof QWEN_VL_MODEL_TYPES)[number];

export interface QwenVisionConfig {
  /** Qwen2-VL: LayerNorm + GELU-family MLP, full attention; Qwen2.5-VL: RMSNorm + SwiGLU, windows. */
  kind: QwenVlModelType;
  depth: number;
  /** ViT width (Qwen2-VL `embed_dim`, Qwen2.5-VL `hidden_size`). */
  width: number;
  /** MLP inner width (Qwen2-VL: width · mlp_ratio). */
  intermediateSize: number;
  numHeads: number;
  hiddenAct: string;
  /** Merger output width (= text hidden size). */
  outHiddenSize: number;
  patchSize: number;
  mergeSize: number;
  temporalPatchSize: number;
  inChannels: number;
  /** Qwen2.5-VL: window side in pixels (0 = full attention everywhere). */
  windowSize: number;
  /** Qwen2.5-VL: blocks that attend over the whole image. */
  fullAttBlocks: number[];
}

export interface QwenVlConfig {
  modelType: QwenVlModelType;
  imageTokenId: number;
  visionStartTokenId: number;
  visionEndTokenId: number;
  vision: QwenVisionConfig;
  text: TextConfig;
}

function intList(v: unknown, file: string, key: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x >= 0))
    throw new ConfigError(`${file}: ${key} must be a list of non-negative integers`);
  return v as number[];
}

/** Defaults of transformers' Qwen2VLVisionConfig / Qwen2_5_VLVisionConfig. */
function parseQwenVision(kind: QwenVlModelType, v: Json, file: string): QwenVisionConfig {
  const q2 = kind === "qwen2_vl";
  const width = q2 ? num(v, "embed_dim", 1280, file) : num(v, "hidden_size", 3584, file);
  const heads = num(v, "num_heads", 16, file);
  if (width % heads !== 0)
    throw new ConfigError(`${file}: vision width ${width} not divisible by vision_config.num_heads ${heads}`);
  if ((width / heads) % 4 !== 0)
    throw new ConfigError(`${file}: vision head size ${width / heads} must be a multiple of 4 (2-D rotary)`);
  const depth = num(v, "depth", 32, file);
  const full = q2
    ? []
    : intList(v.fullatt_block_indexes ?? [7, 15, 23, 31], file, "vision_config.fullatt_block_indexes");
  return {
    kind,
    depth,
    width,
    intermediateSize: q2 ? width * num(v, "mlp_ratio", 4, file) : num(v, "intermediate_size", 3420, file),
    numHeads: heads,
    hiddenAct: str(v, "hidden_act", q2 ? "quick_gelu" : "silu", file),
    outHiddenSize: q2 ? num(v, "hidden_size", 3584, file) : num(v, "out_hidden_size", 3584, file),
    patchSize: num(v, "patch_size", 14, file),
    mergeSize: num(v, "spatial_merge_size", 2, file),
    temporalPatchSize: num(v, "temporal_patch_size", 2, file),
    inChannels: num(v, "in_channels", num(v, "in_chans", 3, file), file),
    windowSize: q2 ? 0 : num(v, "window_size", 112, file),
    fullAttBlocks: full.filter((b) => b < depth),
  };
}

export function parseQwenVlConfig(json: unknown, file = "config.json"): QwenVlConfig {
  if (typeof json !== "object" || json === null) throw new ConfigError(`${file}: not a JSON object`);
  const c = json as Json;
  const mt = str(c, "model_type", "", file);
  if (!(QWEN_VL_MODEL_TYPES as readonly string[]).includes(mt))
    throw new ConfigError(`${file}: model_type "${mt}" is not ${QWEN_VL_MODEL_TYPES.join(" or ")}`);
  const kind = mt as QwenVlModelType;
  // Nested layout: text_config holds the text fields; flat layout: the top level does.
  const nested = typeof c.text_config === "object" && c.text_config !== null;
  const textRaw = (nested ? c.text_config : c) as Json;
  const topTie = typeof c.tie_word_embeddings === "boolean" ? c.tie_word_embeddings : undefined;
  // transformers v5 calls the rope dict `rope_parameters` and moves rope_theta into it.
  const v5 = (typeof textRaw.rope_parameters === "object" ? textRaw.rope_parameters : null) as Json | null;
  const text = parseText(
    {
      ...textRaw,
      model_type: "qwen2",
      rope_scaling: textRaw.rope_scaling ?? v5,
      rope_theta: textRaw.rope_theta ?? v5?.rope_theta,
    },
    file,
    topTie,
  );
  const sec = text.ropeScaling.mropeSection;
  if (sec?.length !== 3)
    throw new ConfigError(`${file}: rope_scaling.mrope_section must list 3 sections (t, h, w) for ${mt}`);
  const vision = parseQwenVision(kind, (c.vision_config ?? {}) as Json, file);
  if (vision.outHiddenSize !== text.hiddenSize)
    throw new ConfigError(
      `${file}: the vision merger outputs ${vision.outHiddenSize} features but the text model's hidden_size is ${text.hiddenSize}`,
    );
  return {
    modelType: kind,
    imageTokenId: num(c, "image_token_id", 151655, file),
    visionStartTokenId: num(c, "vision_start_token_id", 151652, file),
    visionEndTokenId: num(c, "vision_end_token_id", 151653, file),
    vision,
    text,
  };
}

export function readQwenVlConfig(dir: string): QwenVlConfig {
  const { file, json } = readConfigJson(dir);
  return parseQwenVlConfig(json, file);
}
