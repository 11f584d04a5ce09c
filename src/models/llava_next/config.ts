/**
 * The llava-hf `config.json` of the any-resolution families: LLaVA-NeXT (model_type "llava_next") and
 * LLaVA-OneVision ("llava_onevision"). Both are LLaVA's fields plus `image_grid_pinpoints` (the canvases an
 * image may be tiled on); OneVision adds `vision_aspect_ratio` ("anyres_max_N": downsample the tile grid's
 * features past N tiles' worth). Hugging Face's config-class defaults fill what the file leaves out.
 */
import { ConfigError, type Json, readConfigJson, str } from "../../hf/config.js";
import { type LlavaConfig, parseLlavaFields } from "../llava/config.js";

export const ANYRES_MODEL_TYPES = ["llava_next", "llava_onevision"] as const;
export type AnyresModelType = (typeof ANYRES_MODEL_TYPES)[number];

export interface AnyresConfig extends LlavaConfig {
  modelType: AnyresModelType;
  /** Candidate canvases as [height, width] pixels, in the config's order (the first best one wins). */
  gridPinpoints: [number, number][];
  /** OneVision's N of "anyres_max_N"; null for LLaVA-NeXT (no downsampling). */
  maxNumPatches: number | null;
}

/** LlavaNextConfig's default pinpoints (336-px tiles). */
const NEXT_PINPOINTS: [number, number][] = [
  [336, 672],
  [672, 336],
  [672, 672],
  [1008, 336],
  [336, 1008],
];

/** LlavaOnevisionConfig's default pinpoints: every 384·i × 384·j canvas, i, j ∈ 1…6. */
function onevisionPinpoints(): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 1; i <= 6; i++) for (let j = 1; j <= 6; j++) out.push([384 * i, 384 * j]);
  return out;
}

export function parsePinpoints(v: unknown, key: string, file: string): [number, number][] {
  const ok =
    Array.isArray(v) &&
    v.length > 0 &&
    v.every(
      (p) => Array.isArray(p) && p.length === 2 && p.every((x) => Number.isInteger(x) && (x as number) > 0),
    );
  if (!ok)
    throw new ConfigError(
      `${file}: "${key}" must be a non-empty list of [height, width] positive integers, got ${JSON.stringify(v)}`,
    );
  return (v as number[][]).map((p) => [p[0], p[1]]);
}

/**
 * N of "anyres_max_N" as the model reads it: Python's `int(s.strip("anyres_max_"))` (strip removes those
 * characters from both ends, so only the trailing number survives).
 */
export function parseMaxNumPatches(s: string, file: string): number {
  const chars = new Set("anyres_max_");
  let a = 0;
  let b = s.length;
  while (a < b && chars.has(s[a])) a++;
  while (b > a && chars.has(s[b - 1])) b--;
  const n = s.slice(a, b).trim();
  if (!/^[+-]?\d+$/.test(n) || Number(n) <= 0)
    throw new ConfigError(
      `${file}: "vision_aspect_ratio" must look like "anyres_max_9" (a positive tile count), got ${JSON.stringify(s)}`,
    );
  return Number(n);
}

export function parseAnyresConfig(json: unknown, file = "config.json"): AnyresConfig {
  if (typeof json !== "object" || json === null) throw new ConfigError(`${file}: not a JSON object`);
  const raw = json as Json;
  const mt = str(raw, "model_type", "", file);
  if (!(ANYRES_MODEL_TYPES as readonly string[]).includes(mt))
    throw new ConfigError(
      `${file}: model_type "${mt}" is not an any-resolution LLaVA (${ANYRES_MODEL_TYPES.join(", ")})`,
    );
  const modelType = mt as AnyresModelType;
  const onevision = modelType === "llava_onevision";
  // OneVision's config class defaults differ from LLaVA's: the full last layer, SigLIP style.
  const c: Json = onevision
    ? { vision_feature_select_strategy: "full", vision_feature_layer: -1, ...raw }
    : raw;
  const base = parseLlavaFields(c, file);
  if (base.visionFeatureLayers.length !== 1)
    throw new ConfigError(`${file}: "vision_feature_layer" must be one layer for ${modelType}`);
  if (base.visionFeatureSelectStrategy === "full" && base.vision.hasCls)
    throw new ConfigError(
      `${file}: vision_feature_select_strategy "full" keeps CLIP's class token, which the tile grid cannot hold (as in Hugging Face): use "default"`,
    );
  if (base.visionFeatureSelectStrategy === "default" && !base.vision.hasCls)
    throw new ConfigError(
      `${file}: vision_feature_select_strategy "default" drops the first token, but this vision tower has no class token (a patch would be lost): use "full"`,
    );
  const gridPinpoints =
    c.image_grid_pinpoints === undefined || c.image_grid_pinpoints === null
      ? onevision
        ? onevisionPinpoints()
        : NEXT_PINPOINTS
      : parsePinpoints(c.image_grid_pinpoints, "image_grid_pinpoints", file);
  const maxNumPatches = onevision
    ? parseMaxNumPatches(str(c, "vision_aspect_ratio", "anyres_max_9", file), file)
    : null;
  return { ...base, modelType, gridPinpoints, maxNumPatches };
}

export function readAnyresConfig(dir: string): AnyresConfig {
  const { file, json } = readConfigJson(dir);
  return parseAnyresConfig(json, file);
}
