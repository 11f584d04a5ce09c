/**
 * The any-resolution image processors (Hugging Face's PIL path of `LlavaNextImageProcessor` and
 * `LlavaOnevisionImageProcessor`): pick the best canvas among the pinpoints, resize the picture to fit it
 * (Pillow, keeping the aspect ratio), pad it centred with black, cut it into S×S tiles, put the whole picture
 * squashed to S×S in front, normalise → pixel_values [1 + tiles, 3, S, S]; plus the image's token layout
 * (the base grid, then the unpadded tile grid with a newline closing each row) in original-image pixels.
 */
import type { RgbImage } from "../../hf/image-decode.js";
import {
  boolKey,
  CLIP_MEAN,
  CLIP_STD,
  centerCrop,
  expandToSquare,
  fail,
  heightWidth,
  IMAGE_MODES,
  type ImageMode,
  isSet,
  type NormalizeConfig,
  PIL_RESAMPLE_CODES,
  posInt,
  type ResampleFilter,
  resizePil,
  shortestEdgeResizeSize,
  toPixelValues,
  triple,
} from "../../hf/image-processor.js";
import type { ImageLayout, LayoutSegment } from "../image-layout.js";
import type { PreparedImage } from "../types.js";
import { type AnyresGrid, anyresGrid, type HW, paddingOf, patchOutputSize } from "./anyres.js";
import { type AnyresModelType, parsePinpoints } from "./config.js";

export interface AnyresProcessorConfig extends NormalizeConfig {
  file: string;
  resample: ResampleFilter;
  /** Side of one tile (NeXT: crop_size.height, OneVision: size.height). */
  tile: number;
  /** The base image's resize target (NeXT: shortest_edge², OneVision: size). */
  baseSize: HW;
  /** NeXT's per-tile resize (shortest edge) and centre crop, applied to every S×S image; null for OneVision. */
  shortestEdge: number | null;
  cropSize: HW | null;
  pinpoints: [number, number][];
}

type Json = Record<string, unknown>;

/**
 * preprocessor_config.json with the processor classes' defaults (both: OpenAI CLIP mean/std, bicubic). The
 * pinpoints come from this file when it has them (the processor's own), else from config.json.
 */
export function parseAnyresProcessorConfig(
  json: unknown,
  file: string,
  modelType: AnyresModelType,
  modelPinpoints: [number, number][],
): AnyresProcessorConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail(file, "not a JSON object");
  const o = json as Json;
  let resample: ResampleFilter = "bicubic";
  if (isSet(o.resample)) {
    const f = typeof o.resample === "number" ? PIL_RESAMPLE_CODES[o.resample] : undefined;
    if (!f) fail(file, `unsupported "resample" ${JSON.stringify(o.resample)} (PIL codes 0-5)`);
    resample = f;
  }
  const doResize = boolKey(o, "do_resize", true, file);
  const doPad = boolKey(o, "do_pad", true, file);
  if (!doResize || !doPad)
    fail(file, `"do_resize" and "do_pad" must be true for ${modelType} (the tiles need them)`);
  let tile: number;
  let baseSize: HW;
  let shortestEdge: number | null = null;
  let cropSize: HW | null = null;
  if (modelType === "llava_next") {
    const size = isSet(o.size) ? (o.size as Json) : { shortest_edge: 224 };
    if (isSet(size.shortest_edge)) {
      shortestEdge = posInt(size.shortest_edge, '"size.shortest_edge"', file);
      baseSize = { height: shortestEdge, width: shortestEdge };
    } else {
      const hw = heightWidth(size, '"size"', file);
      if (!hw) fail(file, `"size" must have "shortest_edge" or "height" and "width"`);
      const m = Math.min(hw.height, hw.width);
      baseSize = { height: m, width: m };
    }
    cropSize = isSet(o.crop_size)
      ? (heightWidth(o.crop_size, '"crop_size"', file) ??
        fail(file, `"crop_size" must have "height" and "width"`))
      : { height: 224, width: 224 };
    if (!boolKey(o, "do_center_crop", true, file)) cropSize = null;
    tile = cropSize?.height ?? baseSize.height;
  } else {
    const hw = isSet(o.size) ? heightWidth(o.size, '"size"', file) : { height: 384, width: 384 };
    if (!hw) fail(file, `"size" must have "height" and "width"`);
    baseSize = hw;
    tile = hw.height;
  }
  const imageMean = triple(o, "image_mean", CLIP_MEAN, file);
  const imageStd = triple(o, "image_std", CLIP_STD, file);
  if (imageStd.some((s) => s === 0)) fail(file, `"image_std" must not contain 0`);
  let rescaleFactor = 1 / 255;
  if (isSet(o.rescale_factor)) {
    const r = o.rescale_factor;
    if (typeof r !== "number" || !Number.isFinite(r) || r <= 0)
      fail(file, `"rescale_factor" must be a positive number`);
    rescaleFactor = r;
  }
  const pinpoints = isSet(o.image_grid_pinpoints)
    ? parsePinpoints(o.image_grid_pinpoints, "image_grid_pinpoints", file)
    : modelPinpoints;
  for (const [h, w] of pinpoints)
    if (h % tile !== 0 || w % tile !== 0)
      fail(file, `pinpoint [${h}, ${w}] is not a whole number of ${tile}-pixel tiles`);
  return {
    file,
    resample,
    tile,
    baseSize,
    shortestEdge,
    cropSize,
    pinpoints,
    doRescale: boolKey(o, "do_rescale", true, file),
    rescaleFactor,
    doNormalize: boolKey(o, "do_normalize", true, file),
    imageMean,
    imageStd,
  };
}

/** Per-axis affine map x' = x·sx + ox (the image mode's input → original picture). */
interface Affine {
  sx: number;
  ox: number;
  sy: number;
  oy: number;
}

function crop(img: RgbImage, x0: number, y0: number, w: number, h: number): RgbImage {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const src = ((y0 + y) * img.width + x0) * 3;
    out.set(img.data.subarray(src, src + w * 3), y * w * 3);
  }
  return { width: w, height: h, data: out };
}

function padTo(img: RgbImage, canvas: HW, top: number, left: number): RgbImage {
  const out = new Uint8Array(canvas.width * canvas.height * 3);
  for (let y = 0; y < img.height; y++)
    out.set(
      img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3),
      ((y + top) * canvas.width + left) * 3,
    );
  return { width: canvas.width, height: canvas.height, data: out };
}

/** Pillow returns an exact copy for an unchanged size; never resample then. */
function resizeTo(img: RgbImage, w: number, h: number, f: ResampleFilter): RgbImage {
  return img.width === w && img.height === h ? img : resizePil(img, w, h, f);
}

export interface AnyresProcessed extends PreparedImage {
  grid: AnyresGrid;
  /** Size of the picture fitted into the canvas, and its padding. */
  fitted: HW;
  padding: { top: number; left: number };
  /** The padded canvas (uint8) before tiling. */
  canvas: RgbImage;
  /** [base, tiles…] as uint8 before the per-view resize / crop. */
  views: RgbImage[];
}

export interface AnyresGeometry {
  /** Tower patch grid side g (tile / patch). */
  g: number;
  /** Tower tokens before the first patch token kept (1 for CLIP under "default", else 0). */
  firstPatchToken: number;
  maxNumPatches: number | null;
  /** The tower's input side (tiles must come out this size). */
  towerSize: number;
}

/** Where the processed picture comes from: the image mode's input size and its map back to the original. */
interface ModeInput {
  width: number;
  height: number;
  toOriginal: Affine;
}

function modeInput(W0: number, H0: number, mode: ImageMode, towerSize: number): ModeInput {
  if (mode === "pad") {
    const side = Math.max(W0, H0);
    const toOriginal = { sx: 1, ox: -Math.floor((side - W0) / 2), sy: 1, oy: -Math.floor((side - H0) / 2) };
    return { width: side, height: side, toOriginal };
  }
  if (mode === "resize")
    return {
      width: towerSize,
      height: towerSize,
      toOriginal: { sx: W0 / towerSize, ox: 0, sy: H0 / towerSize, oy: 0 },
    };
  if (mode !== "default") throw new RangeError(`unknown image mode "${mode as string}"`);
  return { width: W0, height: H0, toOriginal: { sx: 1, ox: 0, sy: 1, oy: 0 } };
}

/** The geometry of one picture under an image mode: sizes only, no pixels. */
export interface AnyresPlan {
  grid: AnyresGrid;
  /** Size of the picture fitted into the canvas, and its padding. */
  fitted: HW;
  padding: { top: number; left: number };
  layout: ImageLayout;
}

export function planAnyres(
  W0: number,
  H0: number,
  mode: ImageMode,
  cfg: AnyresProcessorConfig,
  geo: AnyresGeometry,
): AnyresPlan {
  const m = modeInput(W0, H0, mode, geo.towerSize);
  const grid = anyresGrid(m.width, m.height, cfg.pinpoints, cfg.tile, geo.g, geo.maxNumPatches);
  const fitted = patchOutputSize(m.width, m.height, grid.canvas);
  const padding = paddingOf(fitted, grid.canvas);
  const layout = anyresLayout(W0, H0, m.width, m.height, m.toOriginal, grid, fitted, padding, cfg.tile, geo);
  return { grid, fitted, padding, layout };
}

/**
 * The grid behind a layout this processor wrote (a run read back has only the layout): the image mode whose
 * plan gives exactly this layout.
 */
export function gridOfLayout(
  layout: ImageLayout,
  cfg: AnyresProcessorConfig,
  geo: AnyresGeometry,
): AnyresGrid {
  const [W0, H0] = layout.original_size;
  const want = JSON.stringify(layout.segments);
  for (const mode of IMAGE_MODES) {
    const plan = planAnyres(W0, H0, mode, cfg, geo);
    if (plan.layout.token_count === layout.token_count && JSON.stringify(plan.layout.segments) === want)
      return plan.grid;
  }
  throw new Error(
    `the image layout (${layout.token_count} tokens for ${W0}×${H0}) is not one this model's processor writes`,
  );
}

/** LVLM-Interpret's `expand2square` background: `int(mean · 255)` per channel. */
export function anyresPadColor(cfg: AnyresProcessorConfig): [number, number, number] {
  const c = cfg.imageMean.map((m) => Math.min(255, Math.max(0, Math.trunc(m * 255))));
  return [c[0], c[1], c[2]];
}

/** The processor and the layout of one picture. */
export function preprocessAnyres(
  image: RgbImage,
  mode: ImageMode,
  cfg: AnyresProcessorConfig,
  geo: AnyresGeometry,
): AnyresProcessed {
  let input = image;
  if (mode === "pad") {
    input = expandToSquare(image, anyresPadColor(cfg));
  } else if (mode === "resize") input = resizeTo(image, geo.towerSize, geo.towerSize, "bicubic");
  const plan = planAnyres(image.width, image.height, mode, cfg, geo);
  const { grid, fitted, padding } = plan;
  const S = cfg.tile;
  const resized = resizeTo(input, fitted.width, fitted.height, cfg.resample);
  const canvas = padTo(resized, grid.canvas, padding.top, padding.left);
  const views: RgbImage[] = [resizeTo(input, cfg.baseSize.width, cfg.baseSize.height, cfg.resample)];
  for (let r = 0; r < grid.tileRows; r++)
    for (let c = 0; c < grid.tileCols; c++) views.push(crop(canvas, c * S, r * S, S, S));
  const finals = views.map((v) => {
    let x = v;
    if (cfg.shortestEdge !== null) {
      const t = shortestEdgeResizeSize(x.width, x.height, cfg.shortestEdge);
      x = resizeTo(x, t.width, t.height, cfg.resample);
    } else x = resizeTo(x, cfg.baseSize.width, cfg.baseSize.height, cfg.resample);
    if (cfg.cropSize) x = centerCrop(x, cfg.cropSize.height, cfg.cropSize.width);
    return x;
  });
  const T = geo.towerSize;
  for (const f of finals)
    if (f.width !== T || f.height !== T)
      throw new Error(
        `${cfg.file}: the processor outputs ${f.width}×${f.height} tiles but the vision tower expects ${T}×${T}`,
      );
  const plane = 3 * T * T;
  const data = new Float32Array(finals.length * plane);
  finals.forEach((f, i) => {
    data.set(toPixelValues(f, cfg), i * plane);
  });
  return {
    pixels: { data, shape: [finals.length, 3, T, T] },
    seen: canvas,
    layout: plan.layout,
    grid,
    fitted,
    padding,
    canvas,
    views,
  };
}

/**
 * The layout: the base grid covers the whole (mode-transformed) picture; the tile grid covers the kept part
 * of the canvas's feature map (each map cell is S/g canvas pixels), mapped back through the padding and the
 * fit resize to the picture. A downsampled grid spans the same rectangle with fewer, larger cells.
 */
function anyresLayout(
  W0: number,
  H0: number,
  W: number,
  H: number,
  A: Affine,
  grid: AnyresGrid,
  fitted: HW,
  padding: { top: number; left: number },
  S: number,
  geo: AnyresGeometry,
): ImageLayout {
  const g = geo.g;
  const q = S / g;
  const toX = (xc: number) => ((xc - padding.left) * W) / fitted.width;
  const toY = (yc: number) => ((yc - padding.top) * H) / fitted.height;
  const ax = (x: number) => x * A.sx + A.ox;
  const ay = (y: number) => y * A.sy + A.oy;
  const { rows, cols } = grid.unpad;
  const tilesFrame: [number, number, number, number] = [
    ax(toX(cols[0] * q)),
    ay(toY(rows[0] * q)),
    ax(toX(cols[1] * q)),
    ay(toY(rows[1] * q)),
  ];
  const { height: hf, width: wf } = grid.final;
  const segments: LayoutSegment[] = [
    {
      kind: "grid",
      name: "base",
      rows: g,
      cols: g,
      row_separator: false,
      frame: [ax(0), ay(0), ax(W), ay(H)],
      tower: { pass: 0, first_token: geo.firstPatchToken },
    },
  ];
  // An extreme aspect ratio can unpad (or downsample) the grid away: no cells, or rows of newlines alone.
  if (hf > 0 && wf > 0)
    segments.push({
      kind: "grid",
      name: "tiles",
      rows: hf,
      cols: wf,
      row_separator: true,
      frame: tilesFrame,
    });
  else for (let r = 0; r < hf; r++) segments.push({ kind: "token", name: "image_newline" });
  return { original_size: [W0, H0], token_count: g * g + hf * (wf + 1), segments };
}
