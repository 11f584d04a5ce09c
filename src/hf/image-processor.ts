/**
 * Image preprocessing identical to Hugging Face's slow (PIL-based) `CLIPImageProcessor` and
 * `SiglipImageProcessor`, plus LVLM-Interpret's image modes ("default", "pad", "resize").
 *
 * CLIP: resize (shortest edge, Pillow resampling on the uint8 image) → center crop (zero padding when the image
 * is smaller than the crop) → rescale `float32(u8 * factor)` → normalize `(x - mean) / std` in float32 → CHW.
 * SigLIP: resize straight to `size` {height, width} (no crop) → rescale → normalize → CHW.
 *
 * `resizePil` reproduces Pillow's `Image.resize(size, resample, reducing_gap=None)` on 8-bit RGB bit-exactly:
 * Pillow's separable convolution (filter support scaled by the downscale factor, coefficients normalised per
 * output pixel and quantised to 22-bit fixed point), horizontal pass first on just the rows the vertical pass
 * needs, the intermediate clipped to uint8, an unneeded pass skipped, and NEAREST through Pillow's affine
 * nearest-neighbour scaler.
 */
import { IMAGE_MODES, type ImageMode } from "../contracts/lists.js";
import { ConfigError, type VisionModelType } from "./config.js";
import type { RgbImage } from "./image-decode.js";

export type ResampleFilter = "nearest" | "box" | "bilinear" | "hamming" | "bicubic" | "lanczos";

/** PIL's `Image.Resampling` integer codes, as stored in `preprocessor_config.json: resample`. */
export const PIL_RESAMPLE_CODES: Record<number, ResampleFilter> = {
  0: "nearest",
  1: "lanczos",
  2: "bilinear",
  3: "bicubic",
  4: "box",
  5: "hamming",
};

/** LVLM-Interpret's image modes: the processor as is, pad to a square first, or resize to the tower's square. */
export { IMAGE_MODES, type ImageMode };

export interface HeightWidth {
  height: number;
  width: number;
}

export interface ImageProcessorConfig {
  /** The file the config came from (for messages). */
  file: string;
  kind: "clip" | "siglip";
  doConvertRgb: boolean;
  doResize: boolean;
  /** CLIP `size.shortest_edge`: resize the shortest edge to this, keeping the aspect ratio; else null. */
  shortestEdge: number | null;
  /** Fixed output size of the resize when `shortestEdge` is null (CLIP `size` {height,width}, SigLIP `size`). */
  resizeTo: HeightWidth | null;
  resample: ResampleFilter;
  doCenterCrop: boolean;
  cropSize: HeightWidth;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  /** Per-channel mean/std as written in the config (float64); used as float32, like numpy does. */
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  /** The vision tower's input side (`vision_config.image_size`); the "resize" mode targets it. */
  towerImageSize: number;
  /** LVLM-Interpret's `expand2square` background: `int(mean * 255)` per channel. */
  padColor: [number, number, number];
}

type Json = Record<string, unknown>;

// transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD and IMAGENET_STANDARD_MEAN / _STD.
export const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];
const HALF: [number, number, number] = [0.5, 0.5, 0.5];

export function fail(file: string, msg: string): never {
  throw new ConfigError(`${file}: ${msg}`);
}

export function isSet(v: unknown): boolean {
  return v !== undefined && v !== null;
}

export function boolKey(o: Json, key: string, dflt: boolean, file: string): boolean {
  const v = o[key];
  if (!isSet(v)) return dflt;
  if (typeof v !== "boolean") fail(file, `"${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

export function posInt(v: unknown, what: string, file: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    fail(file, `${what} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function triple(
  o: Json,
  key: string,
  dflt: [number, number, number],
  file: string,
): [number, number, number] {
  const v = o[key];
  if (!isSet(v)) return dflt;
  const ok = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);
  if (ok(v)) return [v, v, v];
  if (Array.isArray(v) && v.length === 1 && ok(v[0])) return [v[0], v[0], v[0]];
  if (Array.isArray(v) && v.length === 3 && v.every(ok)) return [v[0], v[1], v[2]];
  fail(file, `"${key}" must be a number or a list of 3 numbers, got ${JSON.stringify(v)}`);
}

/** A size entry given as {height,width}, a bare number (square) or [height, width]. */
export function heightWidth(v: unknown, what: string, file: string): HeightWidth | null {
  if (typeof v === "number") {
    const n = posInt(v, what, file);
    return { height: n, width: n };
  }
  if (Array.isArray(v) && v.length === 2) {
    return { height: posInt(v[0], `${what}[0]`, file), width: posInt(v[1], `${what}[1]`, file) };
  }
  if (typeof v === "object" && v !== null) {
    const o = v as Json;
    if (isSet(o.height) && isSet(o.width)) {
      return {
        height: posInt(o.height, `${what}.height`, file),
        width: posInt(o.width, `${what}.width`, file),
      };
    }
  }
  return null;
}

/**
 * Parses `preprocessor_config.json` with the defaults of transformers' `CLIPImageProcessor` (CLIP towers) or
 * `SiglipImageProcessor` (SigLIP towers) for missing keys. Throws a ConfigError naming `file` for malformed
 * values or a config whose output cannot be `towerImageSize` × `towerImageSize`.
 */
export function parseImageProcessorConfig(
  json: unknown,
  file: string,
  visionModelType: VisionModelType,
  towerImageSize: number,
): ImageProcessorConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail(file, "not a JSON object");
  const o = json as Json;
  posInt(towerImageSize, "the vision tower's image_size", file);
  const clip = visionModelType === "clip_vision_model";

  let resample: ResampleFilter = clip ? "bicubic" : "bilinear";
  if (isSet(o.resample)) {
    const r = o.resample;
    const f = typeof r === "number" ? PIL_RESAMPLE_CODES[r] : undefined;
    if (!f) fail(file, `unsupported "resample" ${JSON.stringify(r)} (PIL codes 0-5)`);
    resample = f;
  }

  let shortestEdge: number | null = null;
  let resizeTo: HeightWidth | null = null;
  const size = o.size;
  if (clip) {
    // CLIPImageProcessor: size = get_size_dict(size, default_to_square=False); a bare int is a shortest edge.
    if (!isSet(size)) shortestEdge = 224;
    else if (typeof size === "number") shortestEdge = posInt(size, '"size"', file);
    else if (typeof size === "object" && !Array.isArray(size) && isSet((size as Json).shortest_edge)) {
      shortestEdge = posInt((size as Json).shortest_edge, '"size.shortest_edge"', file);
    } else {
      resizeTo = heightWidth(size, '"size"', file);
      if (!resizeTo)
        fail(file, `"size" must have "shortest_edge" or "height" and "width", got ${JSON.stringify(size)}`);
    }
  } else {
    // SiglipImageProcessor resizes straight to size["height"] x size["width"].
    if (!isSet(size)) resizeTo = { height: 224, width: 224 };
    else {
      resizeTo = heightWidth(size, '"size"', file);
      if (!resizeTo && typeof size === "object" && isSet((size as Json).shortest_edge)) {
        const n = posInt((size as Json).shortest_edge, '"size.shortest_edge"', file);
        resizeTo = { height: n, width: n };
      }
      if (!resizeTo) fail(file, `"size" must have "height" and "width", got ${JSON.stringify(size)}`);
    }
  }

  let cropSize: HeightWidth = { height: 224, width: 224 };
  if (clip && isSet(o.crop_size)) {
    const c = heightWidth(o.crop_size, '"crop_size"', file);
    if (!c) fail(file, `"crop_size" must have "height" and "width", got ${JSON.stringify(o.crop_size)}`);
    cropSize = c;
  }

  let rescaleFactor = 1 / 255;
  if (isSet(o.rescale_factor)) {
    const r = o.rescale_factor;
    if (typeof r !== "number" || !Number.isFinite(r) || r <= 0)
      fail(file, `"rescale_factor" must be a positive number`);
    rescaleFactor = r;
  }

  const imageMean = triple(o, "image_mean", clip ? CLIP_MEAN : HALF, file);
  const imageStd = triple(o, "image_std", clip ? CLIP_STD : HALF, file);
  if (imageStd.some((s) => s === 0)) fail(file, `"image_std" must not contain 0`);

  const cfg: ImageProcessorConfig = {
    file,
    kind: clip ? "clip" : "siglip",
    doConvertRgb: boolKey(o, "do_convert_rgb", true, file),
    doResize: boolKey(o, "do_resize", true, file),
    shortestEdge,
    resizeTo,
    resample,
    doCenterCrop: clip ? boolKey(o, "do_center_crop", true, file) : false,
    cropSize,
    doRescale: boolKey(o, "do_rescale", true, file),
    rescaleFactor,
    doNormalize: boolKey(o, "do_normalize", true, file),
    imageMean,
    imageStd,
    towerImageSize,
    padColor: [0, 1, 2].map((c) => Math.min(255, Math.max(0, Math.trunc(imageMean[c] * 255)))) as [
      number,
      number,
      number,
    ],
  };

  // The vision tower takes exactly towerImageSize x towerImageSize pixels: refuse configs that cannot give it.
  const out = fixedOutputSize(cfg);
  if (!out || out.height !== towerImageSize || out.width !== towerImageSize) {
    const got = out ? `${out.width}x${out.height}` : "an aspect-dependent size (no center crop)";
    fail(
      file,
      `the image processor produces ${got}, but the vision tower expects ${towerImageSize}x${towerImageSize} (vision_config.image_size)`,
    );
  }
  return cfg;
}

/** The output size the processor always produces, or null when it depends on the input's aspect ratio. */
function fixedOutputSize(cfg: ImageProcessorConfig): HeightWidth | null {
  if (cfg.doCenterCrop) return cfg.cropSize;
  if (cfg.doResize && cfg.resizeTo) return cfg.resizeTo;
  return null;
}

/**
 * transformers' `get_resize_output_image_size(image, size, default_to_square=False)`: the shortest edge becomes
 * `size`, the long edge `int(size * long / short)` (truncated).
 */
export function shortestEdgeResizeSize(width: number, height: number, size: number): HeightWidth {
  const widthIsShort = width <= height;
  const short = widthIsShort ? width : height;
  const long = widthIsShort ? height : width;
  const newLong = Math.trunc((size * long) / short);
  return widthIsShort ? { width: size, height: newLong } : { width: newLong, height: size };
}

// ---------------------------------------------------------------------------------------------------------------
// Pillow resampling

interface FilterDef {
  support: number;
  fn: (x: number) => number;
}

const FILTERS: Record<Exclude<ResampleFilter, "nearest">, FilterDef> = {
  box: { support: 0.5, fn: (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0) },
  bilinear: {
    support: 1.0,
    fn: (x) => {
      if (x < 0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    },
  },
  hamming: {
    support: 1.0,
    fn: (x) => {
      if (x < 0) x = -x;
      if (x === 0) return 1.0;
      if (x >= 1.0) return 0.0;
      x *= Math.PI;
      // Pillow writes the constants as C floats (0.54f, 0.46f).
      return (Math.sin(x) / x) * (Math.fround(0.54) + Math.fround(0.46) * Math.cos(x));
    },
  },
  bicubic: {
    support: 2.0,
    fn: (x) => {
      // Keys cubic convolution with a = -0.5.
      const a = -0.5;
      if (x < 0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    },
  },
  lanczos: {
    support: 3.0,
    fn: (x) => {
      const sinc = (t: number) => {
        if (t === 0) return 1.0;
        t *= Math.PI;
        return Math.sin(t) / t;
      };
      return x >= -3.0 && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0;
    },
  },
};

/** Pillow keeps 8 bits for the result and 2 for overflow in a 32-bit accumulator. */
const PRECISION_BITS = 32 - 8 - 2;
const ONE = 2 ** PRECISION_BITS;
const HALF_ONE = 2 ** (PRECISION_BITS - 1);

interface Coeffs {
  ksize: number;
  /** Per output index: first input index and number of taps. */
  first: Int32Array;
  count: Int32Array;
  /** outSize × ksize fixed-point weights. */
  weights: Int32Array;
}

/** One axis of Pillow's resampling: tap ranges and quantised, normalised weights (box = whole input). */
function precomputeCoeffs(inSize: number, outSize: number, filter: FilterDef): Coeffs {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1.0 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? k[x] / ww : k[x];
      // C's (int) cast truncates toward zero.
      weights[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, first, count, weights };
}

function clip8(acc: number): number {
  const v = Math.floor(acc / ONE);
  return Math.min(255, Math.max(0, v));
}

/**
 * Pillow's `Image.resize((outW, outH), filter, reducing_gap=None)` on an 8-bit RGB image, bit-exact.
 * Same size returns a copy (Pillow does too).
 */
export function resizePil(img: RgbImage, outW: number, outH: number, filter: ResampleFilter): RgbImage {
  const { width: inW, height: inH, data: src } = img;
  if (!Number.isInteger(outW) || !Number.isInteger(outH) || outW <= 0 || outH <= 0) {
    throw new RangeError(`resizePil: invalid output size ${outW}x${outH}`);
  }
  if (src.length !== inW * inH * 3)
    throw new RangeError(`resizePil: data length does not match ${inW}x${inH} RGB`);
  if (inW === outW && inH === outH) return { width: inW, height: inH, data: src.slice() };
  if (filter === "nearest") return resizeNearest(img, outW, outH);

  const f = FILTERS[filter];
  const needH = outW !== inW;
  const needV = outH !== inH;
  const vert = precomputeCoeffs(inH, outH, f);
  // Rows of the source that the vertical pass reads.
  const yFirst = vert.first[0];
  const yLast = vert.first[outH - 1] + vert.count[outH - 1];

  let cur = src;
  let curW = inW;
  let rowOffset = 0; // source row of cur's row 0
  if (needH) {
    const hor = precomputeCoeffs(inW, outW, f);
    const rows = yLast - yFirst;
    const tmp = new Uint8Array(outW * rows * 3);
    const { ksize, first, count, weights } = hor;
    for (let y = 0; y < rows; y++) {
      const rowBase = (y + yFirst) * inW * 3;
      const outBase = y * outW * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = first[xx];
        const n = count[xx];
        const kb = xx * ksize;
        let s0 = HALF_ONE;
        let s1 = HALF_ONE;
        let s2 = HALF_ONE;
        for (let x = 0; x < n; x++) {
          const w = weights[kb + x];
          const p = rowBase + (xmin + x) * 3;
          s0 += src[p] * w;
          s1 += src[p + 1] * w;
          s2 += src[p + 2] * w;
        }
        const o = outBase + xx * 3;
        tmp[o] = clip8(s0);
        tmp[o + 1] = clip8(s1);
        tmp[o + 2] = clip8(s2);
      }
    }
    cur = tmp;
    curW = outW;
    rowOffset = yFirst;
  }
  if (!needV) return { width: curW, height: inH, data: cur === src ? src.slice() : cur };

  const out = new Uint8Array(curW * outH * 3);
  const { ksize, first, count, weights } = vert;
  const stride = curW * 3;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = first[yy] - rowOffset;
    const n = count[yy];
    const kb = yy * ksize;
    const outBase = yy * stride;
    for (let xx = 0; xx < curW; xx++) {
      let s0 = HALF_ONE;
      let s1 = HALF_ONE;
      let s2 = HALF_ONE;
      const col = xx * 3;
      for (let y = 0; y < n; y++) {
        const w = weights[kb + y];
        const p = (ymin + y) * stride + col;
        s0 += cur[p] * w;
        s1 += cur[p + 1] * w;
        s2 += cur[p + 2] * w;
      }
      const o = outBase + col;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { width: curW, height: outH, data: out };
}

/** Pillow's NEAREST resize: its affine nearest-neighbour scaler (sample points accumulated in float64). */
function resizeNearest(img: RgbImage, outW: number, outH: number): RgbImage {
  const { width: inW, height: inH, data: src } = img;
  const out = new Uint8Array(outW * outH * 3);
  const ax = inW / outW;
  const ay = inH / outH;
  const xin = new Int32Array(outW).fill(-1);
  let xo = ax * 0.5;
  for (let x = 0; x < outW; x++) {
    const xi = xo < 0 ? -1 : Math.trunc(xo);
    if (xi >= 0 && xi < inW) xin[x] = xi;
    xo += ax;
  }
  let yo = ay * 0.5;
  for (let y = 0; y < outH; y++) {
    const yi = yo < 0 ? -1 : Math.trunc(yo);
    if (yi >= 0 && yi < inH) {
      for (let x = 0; x < outW; x++) {
        if (xin[x] < 0) continue;
        const s = (yi * inW + xin[x]) * 3;
        const d = (y * outW + x) * 3;
        out[d] = src[s];
        out[d + 1] = src[s + 1];
        out[d + 2] = src[s + 2];
      }
    }
    yo += ay;
  }
  return { width: outW, height: outH, data: out };
}

// ---------------------------------------------------------------------------------------------------------------
// Geometry helpers

/**
 * transformers' `center_crop`: `top = (H - h) // 2`, `left = (W - w) // 2`; where the image is smaller than the
 * crop it is zero-padded (centred, the extra pixel of an odd difference going to the top/left pad).
 */
export function centerCrop(img: RgbImage, cropH: number, cropW: number): RgbImage {
  const { width: W, height: H, data } = img;
  const top = Math.floor((H - cropH) / 2);
  const left = Math.floor((W - cropW) / 2);
  const out = new Uint8Array(cropW * cropH * 3);
  for (let y = 0; y < cropH; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= H) continue;
    const x0 = Math.max(0, -left);
    const x1 = Math.min(cropW, W - left);
    if (x1 <= x0) continue;
    const s = (sy * W + x0 + left) * 3;
    out.set(data.subarray(s, s + (x1 - x0) * 3), (y * cropW + x0) * 3);
  }
  return { width: cropW, height: cropH, data: out };
}

/**
 * LVLM-Interpret's `expand2square`: a square canvas of side max(w, h) filled with `color`, the image pasted at
 * ((side - w) // 2, (side - h) // 2). A square image is returned unchanged.
 */
export function expandToSquare(img: RgbImage, color: readonly [number, number, number]): RgbImage {
  const { width: W, height: H, data } = img;
  if (W === H) return img;
  const side = Math.max(W, H);
  const out = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side * 3; i += 3) {
    out[i] = color[0];
    out[i + 1] = color[1];
    out[i + 2] = color[2];
  }
  const ox = Math.floor((side - W) / 2);
  const oy = Math.floor((side - H) / 2);
  for (let y = 0; y < H; y++) {
    out.set(data.subarray(y * W * 3, (y + 1) * W * 3), ((y + oy) * side + ox) * 3);
  }
  return { width: side, height: side, data: out };
}

// ---------------------------------------------------------------------------------------------------------------
// The processor

/**
 * Per-axis affine map between pixel coordinates (continuous edges): `x' = x·sx + ox`, `y' = y·sy + oy`. Every
 * step of the processor (pad to square, resize, crop) is one, so the processed image maps back to the original
 * by their composition.
 */
export interface Affine2 {
  sx: number;
  ox: number;
  sy: number;
  oy: number;
}

const IDENTITY: Affine2 = { sx: 1, ox: 0, sy: 1, oy: 0 };

/** outer ∘ inner. */
function compose(outer: Affine2, inner: Affine2): Affine2 {
  return {
    sx: outer.sx * inner.sx,
    ox: outer.sx * inner.ox + outer.ox,
    sy: outer.sy * inner.sy,
    oy: outer.sy * inner.oy + outer.oy,
  };
}

/** Output → input coordinates of a resize from inW×inH to outW×outH (Pillow samples at (x + 0.5)·scale). */
function resizeBack(inW: number, inH: number, outW: number, outH: number): Affine2 {
  return { sx: inW / outW, ox: 0, sy: inH / outH, oy: 0 };
}

/** What the geometry of the processor depends on (sizes only, no pixels). */
export type ProcessorGeometry = Pick<
  ImageProcessorConfig,
  "doResize" | "shortestEdge" | "resizeTo" | "doCenterCrop" | "cropSize" | "towerImageSize"
>;

/**
 * Processed-image pixel coordinates → original-image pixel coordinates for an original of width × height:
 * the composition of each step's map back to its input (image mode, resize, centre crop). Sizes alone decide
 * it, so a run can be mapped without its pixels.
 */
export function processedToOriginal(
  width: number,
  height: number,
  cfg: ProcessorGeometry,
  mode: ImageMode,
): Affine2 {
  let toOriginal = IDENTITY;
  let w = width;
  let h = height;
  if (mode === "pad" && w !== h) {
    const side = Math.max(w, h);
    toOriginal = { sx: 1, ox: -Math.floor((side - w) / 2), sy: 1, oy: -Math.floor((side - h) / 2) };
    w = h = side;
  } else if (mode === "resize") {
    toOriginal = resizeBack(w, h, cfg.towerImageSize, cfg.towerImageSize);
    w = h = cfg.towerImageSize;
  }
  if (cfg.doResize) {
    const t = cfg.shortestEdge !== null ? shortestEdgeResizeSize(w, h, cfg.shortestEdge) : cfg.resizeTo!;
    toOriginal = compose(toOriginal, resizeBack(w, h, t.width, t.height));
    w = t.width;
    h = t.height;
  }
  if (cfg.doCenterCrop) {
    // Same offsets as centerCrop (negative where it pads).
    const { height: ch, width: cw } = cfg.cropSize;
    toOriginal = compose(toOriginal, {
      sx: 1,
      ox: Math.floor((w - cw) / 2),
      sy: 1,
      oy: Math.floor((h - ch) / 2),
    });
  }
  return toOriginal;
}

/** What rescale + normalize read. */
export type NormalizeConfig = Pick<
  ImageProcessorConfig,
  "doRescale" | "rescaleFactor" | "doNormalize" | "imageMean" | "imageStd"
>;

export interface PreprocessResult {
  /** [3, height, width] channel-major float32, what the vision tower receives. */
  pixelValues: Float32Array;
  height: number;
  width: number;
  /** The image right after the resize step (after the mode's pad / resize). */
  resized: RgbImage;
  /** The uint8 image after resize and crop: what the model saw. */
  processed: RgbImage;
  /** Processed-image pixel coordinates → original-image pixel coordinates (through mode, resize and crop). */
  toOriginal: Affine2;
}

/** Runs the (slow, PIL-based) HF image processor on an RGB image, after LVLM-Interpret's image mode. */
export function preprocessImage(
  img: RgbImage,
  cfg: ImageProcessorConfig,
  mode: ImageMode = "default",
): PreprocessResult {
  let input = img;
  if (mode === "pad") input = expandToSquare(input, cfg.padColor);
  else if (mode === "resize") input = resizePil(input, cfg.towerImageSize, cfg.towerImageSize, "bicubic");
  else if (mode !== "default") throw new RangeError(`unknown image mode "${mode as string}"`);

  let resized = input;
  if (cfg.doResize) {
    const target =
      cfg.shortestEdge !== null
        ? shortestEdgeResizeSize(input.width, input.height, cfg.shortestEdge)
        : cfg.resizeTo!;
    resized = resizePil(input, target.width, target.height, cfg.resample);
  }
  const processed = cfg.doCenterCrop ? centerCrop(resized, cfg.cropSize.height, cfg.cropSize.width) : resized;
  const toOriginal = processedToOriginal(img.width, img.height, cfg, mode);
  const pixelValues = toPixelValues(processed, cfg);
  return { pixelValues, height: processed.height, width: processed.width, resized, processed, toOriginal };
}

/** Rescale + normalize with numpy's float32 semantics, HWC uint8 → CHW float32. */
export function toPixelValues(img: RgbImage, cfg: NormalizeConfig): Float32Array {
  const { width: W, height: H, data } = img;
  const plane = W * H;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(cfg.imageMean[c]);
    const std = Math.fround(cfg.imageStd[c]);
    // Each channel has only 256 possible inputs: tabulate.
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      let x = cfg.doRescale ? Math.fround(v * cfg.rescaleFactor) : v;
      if (cfg.doNormalize) x = Math.fround(Math.fround(x - mean) / std);
      lut[v] = x;
    }
    const base = c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = lut[data[i * 3 + c]];
  }
  return out;
}

/** Inverse of rescale + normalize, rounded and clamped to uint8: CHW float32 → HWC RGB. */
export function denormalizeToImage(
  pixelValues: Float32Array,
  h: number,
  w: number,
  cfg: ImageProcessorConfig,
): RgbImage {
  const plane = h * w;
  if (pixelValues.length !== 3 * plane) {
    throw new RangeError(`denormalizeToImage: ${pixelValues.length} values, expected 3x${h}x${w}`);
  }
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const mean = Math.fround(cfg.imageMean[c]);
    const std = Math.fround(cfg.imageStd[c]);
    for (let i = 0; i < plane; i++) {
      let x = pixelValues[c * plane + i];
      if (cfg.doNormalize) x = x * std + mean;
      if (cfg.doRescale) x /= cfg.rescaleFactor;
      const v = Math.round(x);
      out[i * 3 + c] = Number.isNaN(v) ? 0 : Math.min(255, Math.max(0, v));
    }
  }
  return { width: w, height: h, data: out };
}
