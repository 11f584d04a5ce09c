/**
 * The parts of a Hugging Face `config.json` that model families share, normalised: the text decoder's and the
 * vision tower's configs with the config classes' defaults filled in where the file is silent, and reading the
 * file itself. Each family (src/models/<family>/config.ts) parses its own top level with these.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export const SUPPORTED_TEXT_MODELS = ["llama", "mistral", "gemma", "qwen2"] as const;
export const SUPPORTED_VISION_MODELS = ["clip_vision_model", "siglip_vision_model"] as const;
export type TextModelType = (typeof SUPPORTED_TEXT_MODELS)[number];
export type VisionModelType = (typeof SUPPORTED_VISION_MODELS)[number];

export class ConfigError extends Error {}

export interface VisionConfig {
  modelType: VisionModelType;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numChannels: number;
  imageSize: number;
  patchSize: number;
  hiddenAct: string;
  layerNormEps: number;
  /** CLIP prepends a class token; SigLIP does not. */
  hasCls: boolean;
}

export interface RopeScaling {
  type: "default" | "linear" | "llama3";
  factor: number;
  /** M-RoPE (Qwen2-VL): rotary frequencies per position axis (t, h, w), summing to head_dim / 2. */
  mropeSection?: number[];
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

export interface TextConfig {
  modelType: TextModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  hiddenAct: string;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Biases on q/k/v projections (qwen2: always; llama: `attention_bias`). */
  qkvBias: boolean;
  /** Bias on o_proj (llama `attention_bias`). */
  oBias: boolean;
  mlpBias: boolean;
  tieWordEmbeddings: boolean;
  /** Window of the sliding attention mask, null when the model attends to the whole prefix. */
  slidingWindow: number | null;
  /** Gemma: RMSNorm scales by (1 + w) and the input embeddings are multiplied by sqrt(hidden). */
  gemmaStyle: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}

export type Json = Record<string, unknown>;

export function num(o: Json, key: string, dflt: number, file: string): number {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v))
    throw new ConfigError(`${file}: "${key}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

export function str(o: Json, key: string, dflt: string, file: string): string {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "string")
    throw new ConfigError(`${file}: "${key}" must be a string, got ${JSON.stringify(v)}`);
  return v;
}

export function bool(o: Json, key: string, dflt: boolean): boolean {
  const v = o[key];
  return typeof v === "boolean" ? v : dflt;
}

/** A CLIP or SigLIP `vision_config` with the config classes' defaults filled in. */
export function parseVision(v: Json, file: string): VisionConfig {
  const modelType = str(v, "model_type", "clip_vision_model", file);
  if (!(SUPPORTED_VISION_MODELS as readonly string[]).includes(modelType)) {
    throw new ConfigError(
      `${file}: unsupported vision_config.model_type "${modelType}" (supported: ${SUPPORTED_VISION_MODELS.join(", ")})`,
    );
  }
  const clip = modelType === "clip_vision_model";
  // Defaults of transformers' CLIPVisionConfig / SiglipVisionConfig.
  return {
    modelType: modelType as VisionModelType,
    hiddenSize: num(v, "hidden_size", 768, file),
    intermediateSize: num(v, "intermediate_size", 3072, file),
    numLayers: num(v, "num_hidden_layers", 12, file),
    numHeads: num(v, "num_attention_heads", 12, file),
    numChannels: num(v, "num_channels", 3, file),
    imageSize: num(v, "image_size", 224, file),
    patchSize: num(v, "patch_size", clip ? 32 : 16, file),
    hiddenAct: str(v, "hidden_act", clip ? "quick_gelu" : "gelu_pytorch_tanh", file),
    layerNormEps: num(v, "layer_norm_eps", clip ? 1e-5 : 1e-6, file),
    hasCls: clip,
  };
}

// Defaults of transformers' LlamaConfig / MistralConfig / GemmaConfig / Qwen2Config that differ by family.
const TEXT_DEFAULTS: Record<TextModelType, Json> = {
  llama: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    hidden_act: "silu",
  },
  mistral: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 131072,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    hidden_act: "silu",
    sliding_window: 4096,
  },
  gemma: {
    vocab_size: 256000,
    hidden_size: 3072,
    intermediate_size: 24576,
    num_hidden_layers: 28,
    num_attention_heads: 16,
    num_key_value_heads: 16,
    head_dim: 256,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    hidden_act: "gelu_pytorch_tanh",
  },
  qwen2: {
    vocab_size: 151936,
    hidden_size: 4096,
    intermediate_size: 22016,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    max_position_embeddings: 32768,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    hidden_act: "silu",
    sliding_window: 4096,
    use_sliding_window: false,
  },
};

function parseRopeScaling(t: Json, file: string): RopeScaling {
  const rs = (t.rope_scaling ?? null) as Json | null;
  if (!rs) return { type: "default", factor: 1 };
  const type = str(rs, "rope_type", str(rs, "type", "default", file), file);
  if (type === "mrope" || (type === "default" && rs.mrope_section !== undefined)) {
    const sec = rs.mrope_section;
    if (!Array.isArray(sec) || sec.length === 0 || !sec.every((x) => Number.isInteger(x) && x > 0))
      throw new ConfigError(`${file}: rope_scaling.mrope_section must be a list of positive integers`);
    return { type: "default", factor: 1, mropeSection: sec as number[] };
  }
  if (type === "default") return { type: "default", factor: 1 };
  if (type === "linear") return { type: "linear", factor: num(rs, "factor", 1, file) };
  if (type === "llama3") {
    return {
      type: "llama3",
      factor: num(rs, "factor", 8, file),
      lowFreqFactor: num(rs, "low_freq_factor", 1, file),
      highFreqFactor: num(rs, "high_freq_factor", 4, file),
      originalMaxPositionEmbeddings: num(rs, "original_max_position_embeddings", 8192, file),
    };
  }
  throw new ConfigError(
    `${file}: unsupported rope_scaling type "${type}" (supported: default, linear, llama3)`,
  );
}

/** A llama/mistral/gemma/qwen2 `text_config` with the config classes' defaults filled in. */
export function parseText(raw: Json, file: string, topTie: boolean | undefined): TextConfig {
  const modelType = str(raw, "model_type", "llama", file);
  if (!(SUPPORTED_TEXT_MODELS as readonly string[]).includes(modelType)) {
    throw new ConfigError(
      `${file}: unsupported text_config.model_type "${modelType}" (supported: ${SUPPORTED_TEXT_MODELS.join(", ")})`,
    );
  }
  const mt = modelType as TextModelType;
  const t: Json = {
    ...TEXT_DEFAULTS[mt],
    ...Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== null)),
  };
  const hidden = num(t, "hidden_size", 4096, file);
  const heads = num(t, "num_attention_heads", 32, file);
  const kv = num(t, "num_key_value_heads", heads, file);
  const headDim = num(t, "head_dim", hidden / heads, file);
  if (!Number.isInteger(headDim))
    throw new ConfigError(`${file}: hidden_size ${hidden} not divisible by num_attention_heads ${heads}`);
  if (heads % kv !== 0)
    throw new ConfigError(
      `${file}: num_attention_heads ${heads} not a multiple of num_key_value_heads ${kv}`,
    );
  const act =
    mt === "gemma"
      ? str(t, "hidden_activation", str(t, "hidden_act", "gelu_pytorch_tanh", file), file)
      : str(t, "hidden_act", "silu", file);
  const attnBias = bool(t, "attention_bias", false);
  let sliding: number | null = null;
  if (mt === "mistral" && t.sliding_window != null) sliding = num(t, "sliding_window", 4096, file);
  if (mt === "qwen2" && bool(t, "use_sliding_window", false) && t.sliding_window != null)
    sliding = num(t, "sliding_window", 4096, file);
  const eos = t.eos_token_id;
  const eosIds = Array.isArray(eos)
    ? eos.filter((x): x is number => typeof x === "number")
    : typeof eos === "number"
      ? [eos]
      : [];
  return {
    modelType: mt,
    vocabSize: num(t, "vocab_size", 32000, file),
    hiddenSize: hidden,
    intermediateSize: num(t, "intermediate_size", 11008, file),
    numLayers: num(t, "num_hidden_layers", 32, file),
    numHeads: heads,
    numKvHeads: kv,
    headDim,
    hiddenAct: act,
    maxPositionEmbeddings: num(t, "max_position_embeddings", 2048, file),
    rmsNormEps: num(t, "rms_norm_eps", 1e-6, file),
    ropeTheta: num(t, "rope_theta", 10000, file),
    ropeScaling: parseRopeScaling(t, file),
    qkvBias: mt === "qwen2" ? true : attnBias,
    oBias: mt === "qwen2" ? false : attnBias,
    mlpBias: bool(t, "mlp_bias", false),
    // text_config decides; a top-level tie_word_embeddings fills in when text_config is silent.
    tieWordEmbeddings:
      typeof raw.tie_word_embeddings === "boolean"
        ? raw.tie_word_embeddings
        : (topTie ?? bool(t, "tie_word_embeddings", false)),
    slidingWindow: sliding,
    gemmaStyle: mt === "gemma",
    bosTokenId: typeof t.bos_token_id === "number" ? t.bos_token_id : null,
    eosTokenIds: eosIds,
  };
}

/** config.json of a checkpoint folder as JSON, with one-line errors naming the file. */
export function readConfigJson(dir: string): { file: string; json: Json } {
  const file = path.join(dir, "config.json");
  if (!fs.existsSync(file))
    throw new ConfigError(`${file}: not found (is ${dir} a llava-hf checkpoint folder?)`);
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new ConfigError(`${file}: invalid JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new ConfigError(`${file}: not a JSON object`);
  return { file, json: json as Json };
}
