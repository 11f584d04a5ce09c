/**
 * Canvas drawing of heatmaps: maps over the run's ORIGINAL image (through its image-token geometry), layer ×
 * head grids, strips and colour bars.
 */
import type { GridView, ImageGeometry } from "../../src/interpret/views/image-tokens";
import { lut } from "./colormap";

export interface MapStyle {
  cmap: string;
  opacity: number;
  smooth: boolean;
}

/** A map value: a number, or null/NaN where the map has none (drawn transparent). */
export type MapValues = ArrayLike<number | null>;

function range(values: MapValues, lo?: number, hi?: number): [number, number] {
  if (lo !== undefined && hi !== undefined) return [lo, hi];
  let a = Number.POSITIVE_INFINITY;
  let b = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) continue;
    if (v < a) a = v;
    if (v > b) b = v;
  }
  return [lo ?? a, hi ?? b];
}

/** The one small canvas every map's values are painted on before being stretched onto their own canvas. */
let scratch: CanvasRenderingContext2D | null = null;

/**
 * A rows × cols canvas, one pixel per value, coloured by the colormap over [lo, hi]; missing values clear. The
 * canvas is shared and repainted by the next call: draw it at once (drawImage copies it). A view draws dozens
 * of maps, and a new canvas each cost more to set up than painting its pixels.
 */
function valuesToCanvas(
  values: MapValues,
  rows: number,
  cols: number,
  cmap: string,
  lo?: number,
  hi?: number,
): HTMLCanvasElement {
  const [a, b] = range(values, lo, hi);
  const t = lut(cmap);
  scratch ??= context2d(document.createElement("canvas"));
  const ctx = scratch;
  if (ctx.canvas.width !== cols || ctx.canvas.height !== rows) {
    ctx.canvas.width = cols;
    ctx.canvas.height = rows;
  }
  const img = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) continue;
    const u = b > a ? (v - a) / (b - a) : 0.5;
    const k = Math.round(255 * Math.min(1, Math.max(0, u))) * 3;
    img.data[i * 4] = t[k];
    img.data[i * 4 + 1] = t[k + 1];
    img.data[i * 4 + 2] = t[k + 2];
    img.data[i * 4 + 3] = 255;
  }
  // putImageData replaces every pixel (transparent where no value), so nothing of the last map is left.
  ctx.putImageData(img, 0, 0);
  return ctx.canvas;
}

/** Canvas size for the original picture fitted into a size × size box (aspect kept). */
export function fitSize(geo: ImageGeometry, size: number): [number, number] {
  const s = size / Math.max(geo.width, geo.height);
  return [Math.max(1, Math.round(geo.width * s)), Math.max(1, Math.round(geo.height * s))];
}

/** Image token index of cell (r, c) of a grid (rows end with a separator token when the grid has them). */
function gridToken(g: GridView, r: number, c: number): number {
  return g.first + r * (g.cols + (g.rowSeparator ? 1 : 0)) + c;
}

/**
 * A small map canvas's 2-D context, kept in main memory: such a canvas is drawn once and then only shown, and a
 * view has dozens. Chromium sets these up and composites them for less: a 650-token run's relevancy view
 * (48 canvases then) first showed in 119 ms instead of 174 (medians, headless Chromium).
 */
export function context2d(canvas: HTMLCanvasElement): CanvasRenderingContext2D {
  return canvas.getContext("2d", { willReadFrequently: true })!;
}

/**
 * Draws the original picture over the whole canvas, then the map: one value per image token, each grid's
 * values stretched over its frame (bilinear when smooth), other placed tokens as their boxes. Whatever the
 * tokens do not cover — a centre crop's cut-away margins — keeps the picture alone; a frame reaching past
 * the picture (padding) falls outside the canvas.
 */
export function drawImageMap(
  canvas: HTMLCanvasElement,
  image: CanvasImageSource | null,
  map: MapValues | null,
  geo: ImageGeometry,
  style: MapStyle,
  lo?: number,
  hi?: number,
): void {
  const ctx = context2d(canvas);
  const w = canvas.width;
  const h = canvas.height;
  const sx = w / geo.width;
  const sy = h / geo.height;
  ctx.clearRect(0, 0, w, h);
  if (image) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(image, 0, 0, w, h);
  }
  if (!map) return;
  const [a, b] = range(map, lo, hi);
  ctx.save();
  ctx.globalAlpha = style.opacity;
  ctx.imageSmoothingEnabled = style.smooth;
  ctx.imageSmoothingQuality = "high";
  const inGrid = new Uint8Array(geo.boxes.length);
  for (const g of geo.grids) {
    const vals = new Array<number | null>(g.rows * g.cols);
    for (let r = 0; r < g.rows; r++)
      for (let c = 0; c < g.cols; c++) {
        const k = gridToken(g, r, c);
        vals[r * g.cols + c] = map[k] ?? null;
        inGrid[k] = 1;
      }
    const [x0, y0, x1, y1] = g.frame;
    ctx.drawImage(
      valuesToCanvas(vals, g.rows, g.cols, style.cmap, a, b),
      x0 * sx,
      y0 * sy,
      (x1 - x0) * sx,
      (y1 - y0) * sy,
    );
  }
  const t = lut(style.cmap);
  geo.boxes.forEach((box, k) => {
    const v = map[k];
    if (inGrid[k] || !box || v === null || v === undefined || !Number.isFinite(v)) return;
    const u = b > a ? (v - a) / (b - a) : 0.5;
    const i = Math.round(255 * Math.min(1, Math.max(0, u))) * 3;
    ctx.fillStyle = `rgb(${t[i]},${t[i + 1]},${t[i + 2]})`;
    ctx.fillRect(box[0] * sx, box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy);
  });
  ctx.restore();
}

/** The image token whose box holds the point (original pixels): the smallest such box, or −1. */
export function tokenAt(geo: ImageGeometry, x: number, y: number): number {
  let best = -1;
  let area = Number.POSITIVE_INFINITY;
  geo.boxes.forEach((b, k) => {
    if (!b || b[2] <= b[0] || b[3] <= b[1]) return;
    if (x < b[0] || x >= b[2] || y < b[1] || y >= b[3]) return;
    const a = (b[2] - b[0]) * (b[3] - b[1]);
    if (a < area) {
      area = a;
      best = k;
    }
  });
  return best;
}

/** Outlines image tokens' boxes on an image canvas (patch selector, explanation patches). */
export function outlinePatches(
  canvas: HTMLCanvasElement,
  geo: ImageGeometry,
  tokens: Iterable<number>,
  color: string,
  fill?: string,
): void {
  const ctx = context2d(canvas);
  const sx = canvas.width / geo.width;
  const sy = canvas.height / geo.height;
  ctx.save();
  for (const k of tokens) {
    const b = geo.boxes[k];
    if (!b) continue;
    const cw = (b[2] - b[0]) * sx;
    const ch = (b[3] - b[1]) * sy;
    if (cw <= 0 || ch <= 0) continue;
    ctx.lineWidth = Math.max(1, Math.min(cw, ch) / 8);
    ctx.strokeStyle = color;
    if (fill) {
      ctx.fillStyle = fill;
      ctx.fillRect(b[0] * sx, b[1] * sy, cw, ch);
    }
    ctx.strokeRect(
      b[0] * sx + ctx.lineWidth / 2,
      b[1] * sy + ctx.lineWidth / 2,
      cw - ctx.lineWidth,
      ch - ctx.lineWidth,
    );
  }
  ctx.restore();
}

/** Light grid lines of every grid over an image canvas (the lines stay inside each grid's frame). */
export function drawGridLines(
  canvas: HTMLCanvasElement,
  geo: ImageGeometry,
  color = "rgba(255,255,255,0.35)",
): void {
  const ctx = context2d(canvas);
  const sx = canvas.width / geo.width;
  const sy = canvas.height / geo.height;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (const g of geo.grids) {
    const [x0, y0, x1, y1] = g.frame;
    for (let c = 1; c < g.cols; c++) {
      const x = Math.round((x0 + (c * (x1 - x0)) / g.cols) * sx) + 0.5;
      ctx.moveTo(x, y0 * sy);
      ctx.lineTo(x, y1 * sy);
    }
    for (let r = 1; r < g.rows; r++) {
      const y = Math.round((y0 + (r * (y1 - y0)) / g.rows) * sy) + 0.5;
      ctx.moveTo(x0 * sx, y);
      ctx.lineTo(x1 * sx, y);
    }
  }
  ctx.stroke();
  ctx.restore();
}

/** A colormap as a 256 × 1 PNG (data URL), made once per colormap: every colour bar of a view shows it. */
const barImages = new Map<string, string>();

export function colorbarImage(cmap: string): string {
  const known = barImages.get(cmap);
  if (known) return known;
  const t = lut(cmap);
  const img = new ImageData(256, 1);
  for (let x = 0; x < 256; x++) {
    img.data.set([t[3 * x], t[3 * x + 1], t[3 * x + 2], 255], 4 * x);
  }
  const c = document.createElement("canvas");
  c.width = 256;
  c.height = 1;
  c.getContext("2d")!.putImageData(img, 0, 0);
  const url = c.toDataURL("image/png");
  barImages.set(cmap, url);
  return url;
}

export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(2);
  return v.toFixed(a < 0.1 ? 4 : 3);
}

/**
 * The image token next to token k in a direction (arrow-key patch selection): the nearest box whose centre
 * lies that way within half a box of k's row (or column); k itself when there is none, or the first token
 * with a box when k has none.
 */
export function neighbourToken(geo: ImageGeometry, k: number, dir: "left" | "right" | "up" | "down"): number {
  const valid = (b: ImageGeometry["boxes"][number]) => b && b[2] > b[0] && b[3] > b[1];
  const from = geo.boxes[k];
  if (!from || !valid(from)) return geo.boxes.findIndex(valid);
  const cx = (from[0] + from[2]) / 2;
  const cy = (from[1] + from[3]) / 2;
  const horizontal = dir === "left" || dir === "right";
  const sign = dir === "right" || dir === "down" ? 1 : -1;
  let best = k;
  let bestD = Number.POSITIVE_INFINITY;
  geo.boxes.forEach((b, i) => {
    if (i === k || !b || !valid(b)) return;
    const bx = (b[0] + b[2]) / 2;
    const by = (b[1] + b[3]) / 2;
    const along = sign * (horizontal ? bx - cx : by - cy);
    const across = Math.abs(horizontal ? by - cy : bx - cx);
    const half = horizontal ? (from[3] - from[1]) / 2 : (from[2] - from[0]) / 2;
    if (along <= 1e-9 || across >= half) return;
    if (along < bestD) {
      bestD = along;
      best = i;
    }
  });
  return best;
}
