/**
 * The geometry of "anyres" tiling, as Hugging Face's LLaVA-NeXT / OneVision processors and models compute it:
 * the canvas an image is tiled on, the resize that fits it, the padding, the feature grid's unpadding and
 * OneVision's downsampled grid size. Pure integer/float arithmetic with Python's semantics where they matter.
 */

export interface HW {
  height: number;
  width: number;
}

/**
 * `select_best_resolution`: the pinpoint ([h, w]) that keeps the most of the image's pixels after an
 * aspect-preserving fit, ties broken by less wasted canvas (the first wins on a full tie).
 */
export function selectBestResolution(width: number, height: number, pinpoints: [number, number][]): HW {
  let best: HW | null = null;
  let bestEff = -1;
  let minWaste = Number.POSITIVE_INFINITY;
  for (const [h, w] of pinpoints) {
    const scale = Math.min(w / width, h / height);
    const eff = Math.min(Math.trunc(width * scale) * Math.trunc(height * scale), width * height);
    const waste = h * w - eff;
    if (eff > bestEff || (eff === bestEff && waste < minWaste)) {
      best = { height: h, width: w };
      bestEff = eff;
      minWaste = waste;
    }
  }
  if (!best) throw new RangeError("selectBestResolution: no pinpoints");
  return best;
}

/** `get_patch_output_size`: the image's size fitted into the canvas along its tighter side. */
export function patchOutputSize(width: number, height: number, canvas: HW): HW {
  const sw = canvas.width / width;
  const sh = canvas.height / height;
  if (sw < sh) return { width: canvas.width, height: Math.min(Math.ceil(height * sw), canvas.height) };
  return { height: canvas.height, width: Math.min(Math.ceil(width * sh), canvas.width) };
}

/** Centred padding with the odd pixel at the bottom / right (`divmod` split). */
export function paddingOf(inner: HW, canvas: HW): { top: number; left: number } {
  return {
    top: Math.floor((canvas.height - inner.height) / 2),
    left: Math.floor((canvas.width - inner.width) / 2),
  };
}

/** Python's `int(round(x, 7))`. */
function intRound7(x: number): number {
  return Math.trunc(Number.parseFloat(x.toFixed(7)));
}

/** Rows / columns of a feature map kept by `unpad_image` (a half-open range on each axis). */
export interface Unpad {
  rows: [number, number];
  cols: [number, number];
}

/**
 * `unpad_image`: which rows (image wider than the map) or columns (otherwise) of an hm × wm feature map cover
 * the picture of `width` × `height` pixels.
 */
export function unpadRange(width: number, height: number, hm: number, wm: number): Unpad {
  if (width / height > wm / hm) {
    const newH = intRound7(height * (wm / width));
    const pad = Math.floor((hm - newH) / 2);
    return { rows: [pad, hm - pad], cols: [0, wm] };
  }
  const newW = intRound7(width * (hm / height));
  const pad = Math.floor((wm - newW) / 2);
  return { rows: [0, hm], cols: [pad, wm - pad] };
}

/** Python's float `a // b` (floor of the exact quotient as CPython computes it). */
export function pyFloorDiv(a: number, b: number): number {
  let mod = a % b;
  let div = (a - mod) / b;
  if (mod !== 0 && b < 0 !== mod < 0) {
    mod += b;
    div -= 1;
  }
  if (div === 0) return 0;
  let fl = Math.floor(div);
  if (div - fl > 0.5) fl += 1;
  return fl;
}

/**
 * OneVision's grid after `anyres_max_N`: with r = √(h·w / (N·g²)), a grid bigger than 1.1 × N tiles' worth is
 * resized (bilinear) to ⌊h // r⌋ × ⌊w // r⌋; null when it is left alone.
 */
export function downsampledGrid(h: number, w: number, maxNumPatches: number, g: number): HW | null {
  const r = Math.sqrt((h * w) / (maxNumPatches * g * g));
  if (!(r > 1.1)) return null;
  return { height: Math.trunc(pyFloorDiv(h, r)), width: Math.trunc(pyFloorDiv(w, r)) };
}

/** The packed grid of one image: tiles, the unpadded feature map and the final (maybe downsampled) grid. */
export interface AnyresGrid {
  canvas: HW;
  /** Tiles of the canvas (rows × cols of S×S). */
  tileRows: number;
  tileCols: number;
  unpad: Unpad;
  /** Final grid (rows × cols of tokens before each row's newline). */
  final: HW;
  downsampled: boolean;
}

/** Everything the model does to the grid's shape, from the picture's size alone. */
export function anyresGrid(
  width: number,
  height: number,
  pinpoints: [number, number][],
  tile: number,
  g: number,
  maxNumPatches: number | null,
): AnyresGrid {
  const canvas = selectBestResolution(width, height, pinpoints);
  const tileRows = Math.floor(canvas.height / tile);
  const tileCols = Math.floor(canvas.width / tile);
  const unpad = unpadRange(width, height, tileRows * g, tileCols * g);
  const hu = unpad.rows[1] - unpad.rows[0];
  const wu = unpad.cols[1] - unpad.cols[0];
  const down = maxNumPatches === null ? null : downsampledGrid(hu, wu, maxNumPatches, g);
  return {
    canvas,
    tileRows,
    tileCols,
    unpad,
    final: down ?? { height: hu, width: wu },
    downsampled: down !== null,
  };
}

/**
 * The processor's image-token count, written as Hugging Face's processors compute it (`_get_number_of_features`
 * / `_get_unpadded_features`), independently of the model's packing: base tokens + unpadded (maybe
 * downsampled) grid + one newline per row. `baseTokens` = g² (+1 for a kept class token).
 */
export function processorTokenCount(
  width: number,
  height: number,
  pinpoints: [number, number][],
  tile: number,
  g: number,
  baseTokens: number,
  maxNumPatches: number | null,
): number {
  const best = selectBestResolution(width, height, pinpoints);
  let ch = g * Math.floor(best.height / tile);
  let cw = g * Math.floor(best.width / tile);
  if (width / height > cw / ch) {
    const newH = intRound7(height * (cw / width));
    ch -= 2 * Math.floor((ch - newH) / 2);
  } else {
    const newW = intRound7(width * (ch / height));
    cw -= 2 * Math.floor((cw - newW) / 2);
  }
  let unpadded = ch * cw;
  let newline = ch;
  if (maxNumPatches !== null) {
    const r = Math.sqrt((ch * cw) / (maxNumPatches * g * g));
    if (r > 1.1) {
      unpadded = Math.trunc(pyFloorDiv(ch, r)) * Math.trunc(pyFloorDiv(cw, r));
      newline = Math.trunc(pyFloorDiv(ch, r));
    }
  }
  return unpadded + newline + baseTokens;
}
