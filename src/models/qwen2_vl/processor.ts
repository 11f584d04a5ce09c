/**
 * Qwen2VLImageProcessor (the slow PIL path; Qwen2.5-VL uses the same class): `smart_resize` to multiples of
 * patch·merge pixels within [min_pixels, max_pixels], Pillow bicubic resize, rescale + normalize, and the
 * patches flattened in merge-window order ([N, C·T·P·P], one image = T identical frames). The image becomes
 * one grid of merged cells covering the whole picture (the resize stretches it; nothing is cropped or padded).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { RgbImage } from "../../hf/image-decode.js";
import {
  PIL_RESAMPLE_CODES,
  type ResampleFilter,
  resizePil,
  toPixelValues,
} from "../../hf/image-processor.js";
import type { Box, ImageLayout } from "../image-layout.js";

export class QwenProcessorError extends Error {}

export interface QwenProcessorConfig {
  file: string;
  minPixels: number;
  maxPixels: number;
  patchSize: number;
  temporalPatchSize: number;
  mergeSize: number;
  resample: ResampleFilter;
  doResize: boolean;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

// transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD (Qwen2VLImageProcessor's defaults).
const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

type Json = Record<string, unknown>;

function numOr(o: Json, key: string, dflt: number, file: string): number {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v))
    throw new QwenProcessorError(`${file}: "${key}" must be a number`);
  return v;
}

function triple(
  o: Json,
  key: string,
  dflt: [number, number, number],
  file: string,
): [number, number, number] {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v === "number") return [v, v, v];
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === "number"))
    throw new QwenProcessorError(`${file}: "${key}" must be a number or a list of 3 numbers`);
  return v as [number, number, number];
}

/** preprocessor_config.json ({} when absent) with Qwen2VLImageProcessor's defaults. */
export function parseQwenProcessorConfig(
  json: unknown,
  file: string,
  vision: { patchSize: number; temporalPatchSize: number; mergeSize: number },
): QwenProcessorConfig {
  const o = (typeof json === "object" && json !== null ? json : {}) as Json;
  const size = (typeof o.size === "object" && o.size !== null ? o.size : {}) as Json;
  // min_pixels / max_pixels win over size.shortest_edge / longest_edge (as the processor's __init__ does).
  const minPixels = numOr(o, "min_pixels", numOr(size, "shortest_edge", 56 * 56, file), file);
  const maxPixels = numOr(o, "max_pixels", numOr(size, "longest_edge", 28 * 28 * 1280, file), file);
  if (!(minPixels > 0 && maxPixels >= minPixels))
    throw new QwenProcessorError(
      `${file}: need 0 < min_pixels ≤ max_pixels (got ${minPixels}, ${maxPixels})`,
    );
  const code = numOr(o, "resample", 3, file);
  const resample = PIL_RESAMPLE_CODES[code];
  if (!resample) throw new QwenProcessorError(`${file}: unsupported resample code ${code}`);
  const cfg: QwenProcessorConfig = {
    file,
    minPixels,
    maxPixels,
    patchSize: numOr(o, "patch_size", vision.patchSize, file),
    temporalPatchSize: numOr(o, "temporal_patch_size", vision.temporalPatchSize, file),
    mergeSize: numOr(o, "merge_size", vision.mergeSize, file),
    resample,
    doResize: o.do_resize !== false,
    doRescale: o.do_rescale !== false,
    rescaleFactor: numOr(o, "rescale_factor", 1 / 255, file),
    doNormalize: o.do_normalize !== false,
    imageMean: triple(o, "image_mean", CLIP_MEAN, file),
    imageStd: triple(o, "image_std", CLIP_STD, file),
  };
  if (
    cfg.patchSize !== vision.patchSize ||
    cfg.temporalPatchSize !== vision.temporalPatchSize ||
    cfg.mergeSize !== vision.mergeSize
  )
    throw new QwenProcessorError(
      `${file}: patch_size/temporal_patch_size/merge_size (${cfg.patchSize}/${cfg.temporalPatchSize}/${cfg.mergeSize}) differ from config.json's vision_config (${vision.patchSize}/${vision.temporalPatchSize}/${vision.mergeSize})`,
    );
  return cfg;
}

export function readQwenProcessorConfig(
  dir: string,
  vision: { patchSize: number; temporalPatchSize: number; mergeSize: number },
): QwenProcessorConfig {
  const file = path.join(dir, "preprocessor_config.json");
  let json: unknown = {};
  if (fs.existsSync(file)) {
    try {
      json = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
      throw new QwenProcessorError(`${file}: invalid JSON (${(e as Error).message})`);
    }
  }
  return parseQwenProcessorConfig(json, file, vision);
}

/** Python's round(): halves go to the even neighbour (JavaScript's Math.round sends them up). */
export function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

export type SmartResizeBranch = "round" | "max_pixels" | "min_pixels";

/**
 * `smart_resize`: both sides multiples of `factor`, the area within [minPixels, maxPixels], the aspect ratio
 * kept as closely as that allows. Returns [height, width] and which branch decided.
 */
export function smartResize(
  height: number,
  width: number,
  factor: number,
  minPixels: number,
  maxPixels: number,
): { height: number; width: number; branch: SmartResizeBranch } {
  if (Math.max(height, width) / Math.min(height, width) > 200)
    throw new QwenProcessorError(
      `image ${width}×${height}: aspect ratio must be at most 200 (got ${(Math.max(height, width) / Math.min(height, width)).toFixed(1)}); crop it first`,
    );
  let h = Math.max(factor, roundHalfEven(height / factor) * factor);
  let w = Math.max(factor, roundHalfEven(width / factor) * factor);
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
    return { height: h, width: w, branch: "max_pixels" };
  }
  if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
    return { height: h, width: w, branch: "min_pixels" };
  }
  return { height: h, width: w, branch: "round" };
}

/** [t, h, w] of the patch grid (image_grid_thw). */
export type GridThw = [number, number, number];

/**
 * Patch row r of pixel_values: merged cell b = r // m² (row-major over the (h/m)×(w/m) merged grid), in-cell
 * j = r % m² (row-major) → patch (row, col) of the h×w patch grid.
 */
export function patchRowCol(r: number, gridW: number, merge: number): [number, number] {
  const mm = merge * merge;
  const b = Math.floor(r / mm);
  const j = r % mm;
  const cellsW = gridW / merge;
  const br = Math.floor(b / cellsW);
  const bc = b % cellsW;
  return [br * merge + Math.floor(j / merge), bc * merge + (j % merge)];
}

/**
 * CHW float32 planes [C, H, W] (H, W multiples of patch·merge) → pixel_values [N, C·T·P·P], each row laid out
 * [c][t][py][px]; an image repeats its one frame T times.
 */
export function flattenPatches(
  planes: Float32Array,
  channels: number,
  height: number,
  width: number,
  patch: number,
  temporal: number,
  merge: number,
): { data: Float32Array; grid: GridThw } {
  const gh = height / patch;
  const gw = width / patch;
  if (!Number.isInteger(gh / merge) || !Number.isInteger(gw / merge))
    throw new RangeError(`image ${width}×${height} is not a multiple of ${patch * merge} pixels`);
  const n = gh * gw;
  const rowLen = channels * temporal * patch * patch;
  const out = new Float32Array(n * rowLen);
  const plane = height * width;
  for (let r = 0; r < n; r++) {
    const [pr, pc] = patchRowCol(r, gw, merge);
    let o = r * rowLen;
    for (let c = 0; c < channels; c++) {
      for (let t = 0; t < temporal; t++) {
        for (let py = 0; py < patch; py++) {
          const src = c * plane + (pr * patch + py) * width + pc * patch;
          out.set(planes.subarray(src, src + patch), o);
          o += patch;
        }
      }
    }
  }
  return { data: out, grid: [1, gh, gw] };
}

export interface QwenPrepared {
  data: Float32Array;
  grid: GridThw;
  /** The resized uint8 image (what the model saw). */
  resized: RgbImage;
  branch: SmartResizeBranch;
}

/** The processor on one RGB image. */
export function preprocessQwenImage(img: RgbImage, cfg: QwenProcessorConfig): QwenPrepared {
  const factor = cfg.patchSize * cfg.mergeSize;
  let resized = img;
  let branch: SmartResizeBranch = "round";
  if (cfg.doResize) {
    const s = smartResize(img.height, img.width, factor, cfg.minPixels, cfg.maxPixels);
    branch = s.branch;
    resized = resizePil(img, s.width, s.height, cfg.resample);
  } else if (img.height % factor !== 0 || img.width % factor !== 0) {
    throw new QwenProcessorError(
      `${cfg.file}: do_resize is false but the image ${img.width}×${img.height} is not a multiple of ${factor} pixels`,
    );
  }
  const planes = toPixelValues(resized, cfg);
  const { data, grid } = flattenPatches(
    planes,
    3,
    resized.height,
    resized.width,
    cfg.patchSize,
    cfg.temporalPatchSize,
    cfg.mergeSize,
  );
  return { data, grid, resized, branch };
}

/**
 * One grid of merged cells over the processed picture (the resize stretches it), framed in original pixels:
 * the picture itself, or under the "pad" mode the padded square around it.
 */
export function qwenImageLayout(
  width: number,
  height: number,
  grid: GridThw,
  merge: number,
  frame: Box = [0, 0, width, height],
): ImageLayout {
  const rows = grid[1] / merge;
  const cols = grid[2] / merge;
  return {
    original_size: [width, height],
    token_count: grid[0] * rows * cols,
    segments: [{ kind: "grid", name: "image", rows, cols, row_separator: false, frame }],
  };
}

/** LVLM-Interpret's `expand2square` background: `int(mean · 255)` per channel. */
export function padColorOf(cfg: QwenProcessorConfig): [number, number, number] {
  const c = cfg.imageMean.map((m) => Math.min(255, Math.max(0, Math.trunc(m * 255))));
  return [c[0], c[1], c[2]];
}
