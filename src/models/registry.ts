/**
 * The model families this engine runs, keyed by config.json's `model_type`. Everything above src/models loads
 * a checkpoint through here and gets a {@link VisionLanguageModel}; a new family is a folder under models/ and
 * one entry below.
 */
import * as fs from "node:fs";
import { ConfigError, type Json, readConfigJson } from "../hf/config.js";
import { TextProcessor } from "../hf/tokenizer.js";
import { parseLlavaConfig } from "./llava/config.js";
import { LlavaModel } from "./llava/model.js";
import { parseAnyresConfig } from "./llava_next/config.js";
import { AnyresLlavaModel } from "./llava_next/model.js";
import { parseQwenVlConfig, QWEN_VL_MODEL_TYPES } from "./qwen2_vl/config.js";
import { QwenVlModel } from "./qwen2_vl/model.js";
import type { LoadOptions, VisionLanguageModel } from "./types.js";

/** What the server shows before a model is loaded (config.json only). */
export interface ModelSummary {
  modelType: string;
  textModelType: string;
  visionModelType: string;
  llmLayers: number;
  llmHeads: number;
  vitLayers: number;
  imageTokenId: number;
}

export interface ModelFamily {
  /** config.json `model_type`. */
  modelType: string;
  load(dir: string, opts?: LoadOptions): VisionLanguageModel;
  /** The config's summary, without loading weights (throws a ConfigError naming the file). */
  summarize(json: Json, file: string): ModelSummary;
}

const llava: ModelFamily = {
  modelType: "llava",
  load: (dir, opts) => LlavaModel.load(dir, opts),
  summarize: (json, file) => {
    const c = parseLlavaConfig(json, file);
    return {
      modelType: "llava",
      textModelType: c.text.modelType,
      visionModelType: c.vision.modelType,
      llmLayers: c.text.numLayers,
      llmHeads: c.text.numHeads,
      vitLayers: c.vision.numLayers,
      imageTokenId: c.imageTokenIndex,
    };
  },
};

/** LLaVA-NeXT and LLaVA-OneVision: one implementation, two model types. */
function anyres(modelType: "llava_next" | "llava_onevision"): ModelFamily {
  return {
    modelType,
    load: (dir, opts) => AnyresLlavaModel.load(dir, opts),
    summarize: (json, file) => {
      const c = parseAnyresConfig(json, file);
      return {
        modelType,
        textModelType: c.text.modelType,
        visionModelType: c.vision.modelType,
        llmLayers: c.text.numLayers,
        llmHeads: c.text.numHeads,
        vitLayers: c.vision.numLayers,
        imageTokenId: c.imageTokenIndex,
      };
    },
  };
}

/** Qwen2-VL and Qwen2.5-VL: one implementation, the tower's variant read from the config. */
const qwenVl = (modelType: string): ModelFamily => ({
  modelType,
  load: (dir, opts) => QwenVlModel.load(dir, opts),
  summarize: (json, file) => {
    const c = parseQwenVlConfig(json, file);
    return {
      modelType: c.modelType,
      textModelType: c.text.modelType,
      visionModelType: c.modelType,
      llmLayers: c.text.numLayers,
      llmHeads: c.text.numHeads,
      vitLayers: c.vision.depth,
      imageTokenId: c.imageTokenId,
    };
  },
});

const FAMILIES: readonly ModelFamily[] = [
  llava,
  anyres("llava_next"),
  anyres("llava_onevision"),
  ...QWEN_VL_MODEL_TYPES.map(qwenVl),
];

export const SUPPORTED_MODEL_TYPES: readonly string[] = FAMILIES.map((f) => f.modelType);

function familyOf(json: Json, file: string): ModelFamily {
  const mt = json.model_type;
  const family = FAMILIES.find((f) => f.modelType === mt);
  if (!family)
    throw new ConfigError(
      `${file}: model_type ${JSON.stringify(mt ?? "")} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(", ")})`,
    );
  return family;
}

function checkFolder(dir: string): void {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
    throw new Error(`${dir}: model folder not found`);
}

/** Loads the checkpoint folder `dir` with the family its config.json names. */
export function loadModel(dir: string, opts: LoadOptions = {}): VisionLanguageModel {
  checkFolder(dir);
  const { file, json } = readConfigJson(dir);
  return familyOf(json, file).load(dir, opts);
}

/** The summary of a checkpoint's config (no weights read). */
export function readModelSummary(dir: string): ModelSummary {
  checkFolder(dir);
  const { file, json } = readConfigJson(dir);
  return familyOf(json, file).summarize(json, file);
}

/** The checkpoint's tokenizer and chat template alone (token strings for views; no weights read). */
export function loadTextProcessor(dir: string): TextProcessor {
  return TextProcessor.load(dir, readModelSummary(dir).imageTokenId);
}
