/**
 * Procedural scenes for the synthetic "shapes" VQA set: 1–4 flat-coloured shapes (circle, square, triangle,
 * star in six saturated colours) on a plain or low-contrast textured background, with each object's exact
 * visible mask and box.
 *
 * Rasterisation is binary (no anti-aliasing): a pixel belongs to a shape when its centre (x + 0.5, y + 0.5)
 * lies inside the shape. Objects are painted in list order, so later objects occlude earlier ones; an object's
 * `mask` is 1 exactly where the final pixel is that object's colour (`rgb`). Backgrounds are low-saturation
 * (max − min channel ≤ {@link BACKGROUND_MAX_CHROMA}) while every object colour is strongly saturated, so
 * object pixels and background pixels can never be confused.
 */
import type { Rng } from "../tensor/rng.js";

export const SHAPE_NAMES = ["circle", "square", "triangle", "star"] as const;
export type ShapeName = (typeof SHAPE_NAMES)[number];

export const COLOR_NAMES = ["red", "green", "blue", "yellow", "purple", "orange"] as const;
export type ColorName = (typeof COLOR_NAMES)[number];

export type Rgb = [number, number, number];

/** Base RGB of each colour name; each object gets these ± {@link SceneOptions.colorJitter} per channel. */
export const COLOR_RGB: Readonly<Record<ColorName, Readonly<Rgb>>> = {
  red: [215, 35, 35],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [235, 205, 30],
  purple: [145, 60, 195],
  orange: [245, 135, 25],
};

/** Default image side in pixels (patch 14 → an 8×8 grid). */
export const IMAGE_SIZE = 112;

/** Largest max−min channel spread of any background pixel. */
export const BACKGROUND_MAX_CHROMA = 40;

export interface SceneImage {
  width: number;
  height: number;
  /** RGB, row-major HWC, 3 bytes per pixel. */
  data: Uint8Array;
}

export interface SceneObject {
  shape: ShapeName;
  color: ColorName;
  /** The exact RGB this object was painted with. */
  rgb: Rgb;
  /** Shape centre in pixel coordinates (pixel (x, y) covers [x, x+1) × [y, y+1)). */
  cx: number;
  cy: number;
  /**
   * Nominal size in pixels, scaled per shape so that equal sizes give about equal areas (≈ 0.785·size², a
   * circle of diameter size): square side 0.88·size, triangle and star circumradius 0.78·size (star inner
   * radius 0.45× outer). Every shape fits in a circle of radius {@link boundingRadius}.
   */
  size: number;
  /** Rotation in radians (0 for circles). */
  rotation: number;
  /** Tight box of the visible mask: x0, y0 inclusive, x1, y1 exclusive (width = x1 − x0). */
  box: [number, number, number, number];
  /** size×size, 1 where this object's colour is the final pixel value (after occlusion by later objects). */
  mask: Uint8Array;
  /** Visible pixel count (sum of mask). */
  area: number;
  /** Pixel count of the shape before occlusion. */
  fullArea: number;
  /** Mean of the visible pixels' centres, [x, y]. */
  centroid: [number, number];
}

export type BackgroundPattern = "plain" | "stripes" | "checker" | "noise";

export interface Scene {
  size: number;
  image: SceneImage;
  /** In paint order: later objects are drawn over earlier ones. */
  objects: SceneObject[];
  background: "plain" | "textured";
  backgroundPattern: BackgroundPattern;
}

export interface SceneOptions {
  /** Image side in pixels. Default {@link IMAGE_SIZE}. */
  size?: number;
  minObjects?: number;
  maxObjects?: number;
  /** Smallest / largest nominal object size; defaults 0.13·size and 0.34·size. */
  minObjectSize?: number;
  maxObjectSize?: number;
  /** Probability that a layout may have overlapping objects (they then overlap about a third of the time). Default 0.3. */
  overlapProbability?: number;
  /** In overlapping scenes, each object keeps at least this fraction of its pixels visible. Default 0.6. */
  minVisibleFraction?: number;
  /** Probability of a textured background. Default 0.5. */
  texturedProbability?: number;
  /** Per-channel uniform jitter of object colours. Default 12. */
  colorJitter?: number;
  /**
   * Fraction of each shape's rotation range used (squares ±0.35 rad, triangles and stars any orientation):
   * 1 = fully random, 0 = upright. Default 1.
   */
  rotation?: number;
}

/** Radius of the circle around (cx, cy) that contains the whole shape. */
export function boundingRadius(shape: ShapeName, size: number): number {
  if (shape === "circle") return size / 2;
  if (shape === "square") return (SQUARE_SIDE * size) / Math.SQRT2;
  return POINTED_RADIUS * size;
}

/** Square side and triangle/star circumradius per unit of nominal size (see {@link SceneObject.size}). */
const SQUARE_SIDE = 0.88;
const POINTED_RADIUS = 0.78;
const STAR_INNER = 0.45;

/** Polygon vertices (x, y) of a non-circle shape. */
export function shapePolygon(
  shape: Exclude<ShapeName, "circle">,
  cx: number,
  cy: number,
  size: number,
  rotation: number,
) {
  const pts: [number, number][] = [];
  const add = (r: number, a: number) => pts.push([cx + r * Math.cos(a), cy + r * Math.sin(a)]);
  if (shape === "square") {
    const h = (SQUARE_SIDE * size) / Math.SQRT2; // half diagonal
    for (let k = 0; k < 4; k++) add(h, rotation + Math.PI / 4 + (k * Math.PI) / 2);
  } else if (shape === "triangle") {
    const r = POINTED_RADIUS * size;
    for (let k = 0; k < 3; k++) add(r, rotation - Math.PI / 2 + (k * 2 * Math.PI) / 3);
  } else {
    const r = POINTED_RADIUS * size;
    for (let k = 0; k < 10; k++)
      add(k % 2 === 0 ? r : STAR_INNER * r, rotation - Math.PI / 2 + (k * Math.PI) / 5);
  }
  return pts;
}

function insidePolygon(pts: [number, number][], x: number, y: number): boolean {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i]!;
    const [xj, yj] = pts[j]!;
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Binary raster of one shape (pixel-centre sampling), before any occlusion. */
export function rasterizeShape(
  shape: ShapeName,
  cx: number,
  cy: number,
  size: number,
  rotation: number,
  imageSize: number,
): Uint8Array {
  const mask = new Uint8Array(imageSize * imageSize);
  const r = boundingRadius(shape, size);
  const x0 = Math.max(0, Math.floor(cx - r - 1));
  const x1 = Math.min(imageSize - 1, Math.ceil(cx + r + 1));
  const y0 = Math.max(0, Math.floor(cy - r - 1));
  const y1 = Math.min(imageSize - 1, Math.ceil(cy + r + 1));
  const poly = shape === "circle" ? null : shapePolygon(shape, cx, cy, size, rotation);
  const r2 = (size / 2) ** 2;
  for (let y = y0; y <= y1; y++) {
    const py = y + 0.5;
    for (let x = x0; x <= x1; x++) {
      const px = x + 0.5;
      const hit = poly ? insidePolygon(poly, px, py) : (px - cx) ** 2 + (py - cy) ** 2 <= r2;
      if (hit) mask[y * imageSize + x] = 1;
    }
  }
  return mask;
}

const clampByte = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** Fills `data` (RGB HWC) with a plain or low-contrast textured, low-saturation background. */
function paintBackground(rng: Rng, size: number, data: Uint8Array, textured: boolean): BackgroundPattern {
  const grey = rng.int(70, 210);
  const tint = rng.bool(0.5) ? [rng.int(-15, 15), rng.int(-15, 15), rng.int(-15, 15)] : [0, 0, 0];
  const base = tint.map((t) => grey + t);
  let pattern: BackgroundPattern = "plain";
  let offset: (x: number, y: number) => number = () => 0;
  if (textured) {
    pattern = rng.pick(["stripes", "checker", "noise"] as const);
    const d = rng.int(7, 14);
    if (pattern === "stripes") {
      const period = rng.int(4, 12);
      const dir = rng.int(0, 3); // horizontal, vertical, two diagonals
      const phase = rng.int(0, period - 1);
      offset = (x, y) => {
        const t = dir === 0 ? y : dir === 1 ? x : dir === 2 ? x + y : x - y + size;
        return (t + phase) % period < period / 2 ? d : -d;
      };
    } else if (pattern === "checker") {
      const cell = rng.int(4, 14);
      offset = (x, y) => ((Math.floor(x / cell) + Math.floor(y / cell)) % 2 === 0 ? d : -d);
    } else {
      const cell = rng.int(1, 4);
      const n = Math.ceil(size / cell);
      const field = new Int16Array(n * n);
      for (let i = 0; i < field.length; i++) field[i] = rng.int(-d, d);
      offset = (x, y) => field[Math.floor(y / cell) * n + Math.floor(x / cell)]!;
    }
  }
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const o = offset(x, y);
      const p = (y * size + x) * 3;
      // The same offset on all three channels keeps the spread (chroma) of the base colour.
      data[p] = clampByte(base[0]! + o);
      data[p + 1] = clampByte(base[1]! + o);
      data[p + 2] = clampByte(base[2]! + o);
    }
  }
  return pattern;
}

interface Placement {
  shape: ShapeName;
  color: ColorName;
  cx: number;
  cy: number;
  size: number;
  rotation: number;
}

function rotationFor(rng: Rng, shape: ShapeName, amount: number): number {
  if (shape === "circle") return 0;
  // Always draw, so the rest of the layout does not depend on `amount`; + 0 turns −0 into 0.
  const full =
    shape === "square"
      ? rng.float(-0.35, 0.35)
      : rng.float(0, shape === "triangle" ? (2 * Math.PI) / 3 : (2 * Math.PI) / 5);
  return amount * full + 0;
}

/** Tries one layout; null when objects do not fit (the caller draws a fresh layout). */
function tryLayout(rng: Rng, o: Required<SceneOptions>, n: number, overlap: boolean): Placement[] | null {
  const kinds: [ShapeName, ColorName][] = [];
  while (kinds.length < n) {
    const k: [ShapeName, ColorName] = [rng.pick(SHAPE_NAMES), rng.pick(COLOR_NAMES)];
    // No two objects share both shape and colour, so "the <colour> <shape>" always names one object.
    if (!kinds.some(([s, c]) => s === k[0] && c === k[1])) kinds.push(k);
  }
  const placed: Placement[] = [];
  for (const [shape, color] of kinds) {
    let ok = false;
    for (let attempt = 0; attempt < 40 && !ok; attempt++) {
      const size = rng.float(o.minObjectSize, o.maxObjectSize);
      const r = boundingRadius(shape, size);
      const lo = r + 1;
      const hi = o.size - r - 1;
      if (hi <= lo) continue;
      const cx = rng.float(lo, hi);
      const cy = rng.float(lo, hi);
      const rotation = rotationFor(rng, shape, o.rotation);
      if (!overlap) {
        const clash = placed.some(
          (p) => Math.hypot(p.cx - cx, p.cy - cy) < boundingRadius(p.shape, p.size) + r + 2,
        );
        if (clash) continue;
      }
      placed.push({ shape, color, cx, cy, size, rotation });
      ok = true;
    }
    if (!ok) return null;
  }
  return placed;
}

function withDefaults(opts: SceneOptions): Required<SceneOptions> {
  const size = opts.size ?? IMAGE_SIZE;
  const o: Required<SceneOptions> = {
    size,
    minObjects: opts.minObjects ?? 1,
    maxObjects: opts.maxObjects ?? 4,
    minObjectSize: opts.minObjectSize ?? 0.13 * size,
    maxObjectSize: opts.maxObjectSize ?? 0.34 * size,
    overlapProbability: opts.overlapProbability ?? 0.3,
    minVisibleFraction: opts.minVisibleFraction ?? 0.6,
    texturedProbability: opts.texturedProbability ?? 0.5,
    colorJitter: opts.colorJitter ?? 12,
    rotation: opts.rotation ?? 1,
  };
  if (!Number.isInteger(o.size) || o.size < 16)
    throw new RangeError(`scene size ${o.size} must be an integer ≥ 16`);
  if (
    !(
      o.minObjects >= 1 &&
      o.maxObjects >= o.minObjects &&
      o.maxObjects <= SHAPE_NAMES.length * COLOR_NAMES.length
    )
  ) {
    throw new RangeError(`object count range ${o.minObjects}..${o.maxObjects} is invalid`);
  }
  if (!(o.rotation >= 0 && o.rotation <= 1)) throw new RangeError(`rotation ${o.rotation} must be in [0, 1]`);
  if (!(o.minObjectSize > 0 && o.maxObjectSize >= o.minObjectSize)) {
    throw new RangeError(`object size range ${o.minObjectSize}..${o.maxObjectSize} is invalid`);
  }
  return o;
}

/** Generates one scene; the result depends only on the generator's state and the options. */
export function generateScene(rng: Rng, opts: SceneOptions = {}): Scene {
  const o = withDefaults(opts);
  const size = o.size;
  const npix = size * size;
  // The count is drawn once, so crowded counts are not under-represented by layout retries.
  const n = rng.int(o.minObjects, o.maxObjects);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const overlap = rng.bool(o.overlapProbability);
    const layout = tryLayout(rng, o, n, overlap);
    if (!layout) continue;
    const owner = new Int8Array(npix).fill(-1);
    const fullAreas: number[] = [];
    layout.forEach((p, i) => {
      const m = rasterizeShape(p.shape, p.cx, p.cy, p.size, p.rotation, size);
      let a = 0;
      for (let k = 0; k < npix; k++) {
        if (m[k]) {
          owner[k] = i;
          a++;
        }
      }
      fullAreas.push(a);
    });
    const masks = layout.map(() => new Uint8Array(npix));
    const areas = layout.map(() => 0);
    for (let k = 0; k < npix; k++) {
      const i = owner[k]!;
      if (i >= 0) {
        masks[i]![k] = 1;
        areas[i]!++;
      }
    }
    const visibleEnough = areas.every(
      (a, i) => a > 0 && fullAreas[i]! > 0 && a >= o.minVisibleFraction * fullAreas[i]!,
    );
    if (!visibleEnough) continue;

    const data = new Uint8Array(npix * 3);
    const textured = rng.bool(o.texturedProbability);
    const pattern = paintBackground(rng, size, data, textured);
    const objects: SceneObject[] = layout.map((p, i) => {
      const base = COLOR_RGB[p.color];
      const j = o.colorJitter;
      const rgb: Rgb = [
        clampByte(base[0] + rng.int(-j, j)),
        clampByte(base[1] + rng.int(-j, j)),
        clampByte(base[2] + rng.int(-j, j)),
      ];
      const mask = masks[i]!;
      let x0 = size;
      let y0 = size;
      let x1 = 0;
      let y1 = 0;
      let sx = 0;
      let sy = 0;
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const k = y * size + x;
          if (!mask[k]) continue;
          data[k * 3] = rgb[0];
          data[k * 3 + 1] = rgb[1];
          data[k * 3 + 2] = rgb[2];
          if (x < x0) x0 = x;
          if (y < y0) y0 = y;
          if (x + 1 > x1) x1 = x + 1;
          if (y + 1 > y1) y1 = y + 1;
          sx += x + 0.5;
          sy += y + 0.5;
        }
      }
      const area = areas[i]!;
      return {
        shape: p.shape,
        color: p.color,
        rgb,
        cx: p.cx,
        cy: p.cy,
        size: p.size,
        rotation: p.rotation,
        box: [x0, y0, x1, y1],
        mask,
        area,
        fullArea: fullAreas[i]!,
        centroid: [sx / area, sy / area],
      };
    });
    return {
      size,
      image: { width: size, height: size, data },
      objects,
      background: textured ? "textured" : "plain",
      backgroundPattern: pattern,
    };
  }
  throw new Error("generateScene: no valid layout in 1000 attempts (objects too large for the image?)");
}
