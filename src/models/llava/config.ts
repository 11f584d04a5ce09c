/**
 * The llava-hf `config.json` (model_type "llava"), normalised: every key the engine reads, with Hugging Face's
 * config-class defaults filled in where the file is silent.
 */
import {
  bool,
  ConfigError,
  type Json,
  num,
  parseText,
  parseVision,
  readConfigJson,
  str,
  type TextConfig,
  type VisionConfig,
} from "../../hf/config.js";

export interface LlavaConfig {
  imageTokenIndex: number;
  projectorHiddenAct: string;
  projectorBias: boolean;
  /** One layer index, or several whose features are concatenated (newer llava-hf configs). */
  visionFeatureLayers: number[];
  visionFeatureSelectStrategy: "default" | "full";
  tieWordEmbeddings: boolean;
  vision: VisionConfig;
  text: TextConfig;
}

export function parseLlavaConfig(json: unknown, file = "config.json"): LlavaConfig {
  if (typeof json !== "object" || json === null) throw new ConfigError(`${file}: not a JSON object`);
  const c = json as Json;
  const mt = str(c, "model_type", "", file);
  if (mt !== "llava")
    throw new ConfigError(`${file}: model_type "${mt}" is not supported (supported: llava)`);
  return parseLlavaFields(c, file);
}

/** The fields every llava-hf family shares (LLaVA-NeXT and OneVision add theirs on top). */
export function parseLlavaFields(c: Json, file: string): LlavaConfig {
  const strategy = str(c, "vision_feature_select_strategy", "default", file);
  if (strategy !== "default" && strategy !== "full") {
    throw new ConfigError(`${file}: vision_feature_select_strategy "${strategy}" is not "default" or "full"`);
  }
  const vfl = c.vision_feature_layer ?? -2;
  const layers = Array.isArray(vfl) ? vfl : [vfl];
  if (!layers.every((x) => Number.isInteger(x)))
    throw new ConfigError(`${file}: vision_feature_layer must be an integer or a list of integers`);
  const vision = parseVision((c.vision_config ?? {}) as Json, file);
  for (const l of layers as number[]) {
    const idx = l < 0 ? vision.numLayers + 1 + l : l;
    if (idx < 0 || idx > vision.numLayers)
      throw new ConfigError(
        `${file}: vision_feature_layer ${l} out of range for ${vision.numLayers} vision layers`,
      );
  }
  const topTie = typeof c.tie_word_embeddings === "boolean" ? (c.tie_word_embeddings as boolean) : undefined;
  const text = parseText((c.text_config ?? {}) as Json, file, topTie);
  return {
    imageTokenIndex: num(c, "image_token_index", num(c, "image_token_id", 32000, file), file),
    projectorHiddenAct: str(c, "projector_hidden_act", "gelu", file),
    projectorBias: bool(c, "multimodal_projector_bias", true),
    visionFeatureLayers: layers as number[],
    visionFeatureSelectStrategy: strategy,
    tieWordEmbeddings: text.tieWordEmbeddings,
    vision,
    text,
  };
}

export function readLlavaConfig(dir: string): LlavaConfig {
  const { file, json } = readConfigJson(dir);
  return parseLlavaConfig(json, file);
}
