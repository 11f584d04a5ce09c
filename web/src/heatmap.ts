/** Canvas drawing of heatmaps: maps over the run's image, layer × head grids, strips and colour bars. */
import { lut } from "./colormap";

export interface MapStyle {
  cmap: string;
  opacity: number;
  smooth: boolean;
}

function range(values: ArrayLike<number>, lo?: number, hi?: number): [number, number] {
  if (lo !== undefined && hi !== undefined) return [lo, hi];
  let a = Number.POSITIVE_INFINITY;
  let b = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < a) a = v;
    if (v > b) b = v;
  }
  return [lo ?? a, hi ?? b];
}

/** A rows × cols canvas, one pixel per value, coloured by the colormap over [lo, hi]. */
export function valuesToCanvas(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  cmap: string,
  lo?: number,
  hi?: number,
  alpha?: ArrayLike<number>,
): HTMLCanvasElement {
  const [a, b] = range(values, lo, hi);
  const t = lut(cmap);
  const c = document.createElement("canvas");
  c.width = cols;
  c.height = rows;
  const ctx = c.getContext("2d")!;
  const img = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const u = b > a ? (values[i] - a) / (b - a) : 0.5;
    const k = Math.round(255 * Math.min(1, Math.max(0, u))) * 3;
    img.data[i * 4] = t[k];
    img.data[i * 4 + 1] = t[k + 1];
    img.data[i * 4 + 2] = t[k + 2];
    img.data[i * 4 + 3] = alpha ? Math.round(255 * alpha[i]) : 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

/** Draws the image, then the map stretched over it with the given opacity (bilinear when smooth). */
export function drawImageMap(
  canvas: HTMLCanvasElement,
  image: CanvasImageSource | null,
  map: ArrayLike<number> | null,
  grid: [number, number],
  style: MapStyle,
  lo?: number,
  hi?: number,
): void {
  const ctx = canvas.getContext("2d")!;
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (image) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(image, 0, 0, w, h);
  }
  if (map) {
    ctx.save();
    ctx.globalAlpha = style.opacity;
    ctx.imageSmoothingEnabled = style.smooth;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(valuesToCanvas(map, grid[0], grid[1], style.cmap, lo, hi), 0, 0, w, h);
    ctx.restore();
  }
}

/** Outlines patches on an image canvas (patch selector, explanation patches). */
export function outlinePatches(
  canvas: HTMLCanvasElement,
  grid: [number, number],
  patches: Iterable<number>,
  color: string,
  fill?: string,
): void {
  const ctx = canvas.getContext("2d")!;
  const cw = canvas.width / grid[1];
  const ch = canvas.height / grid[0];
  ctx.save();
  ctx.lineWidth = Math.max(1, Math.min(cw, ch) / 8);
  ctx.strokeStyle = color;
  for (const p of patches) {
    const r = Math.floor(p / grid[1]);
    const c = p % grid[1];
    if (fill) {
      ctx.fillStyle = fill;
      ctx.fillRect(c * cw, r * ch, cw, ch);
    }
    ctx.strokeRect(
      c * cw + ctx.lineWidth / 2,
      r * ch + ctx.lineWidth / 2,
      cw - ctx.lineWidth,
      ch - ctx.lineWidth,
    );
  }
  ctx.restore();
}

/** Light grid lines over an image canvas. */
export function drawGridLines(
  canvas: HTMLCanvasElement,
  grid: [number, number],
  color = "rgba(255,255,255,0.35)",
): void {
  const ctx = canvas.getContext("2d")!;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let c = 1; c < grid[1]; c++) {
    const x = Math.round((c * canvas.width) / grid[1]) + 0.5;
    ctx.moveTo(x, 0);
    ctx.lineTo(x, canvas.height);
  }
  for (let r = 1; r < grid[0]; r++) {
    const y = Math.round((r * canvas.height) / grid[0]) + 0.5;
    ctx.moveTo(0, y);
    ctx.lineTo(canvas.width, y);
  }
  ctx.stroke();
  ctx.restore();
}

/** A horizontal colour bar with its end values. */
export function drawColorbar(canvas: HTMLCanvasElement, cmap: string, lo: number, hi: number): void {
  const ctx = canvas.getContext("2d")!;
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const t = lut(cmap);
  const barH = Math.max(6, h - 16);
  for (let x = 0; x < w; x++) {
    const k = Math.round((255 * x) / Math.max(1, w - 1)) * 3;
    ctx.fillStyle = `rgb(${t[k]},${t[k + 1]},${t[k + 2]})`;
    ctx.fillRect(x, 0, 1, barH);
  }
  ctx.fillStyle = "#333";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  ctx.fillText(formatValue(lo), 0, barH + 2);
  ctx.textAlign = "right";
  ctx.fillText(formatValue(hi), w, barH + 2);
}

export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(2);
  return v.toFixed(a < 0.1 ? 4 : 3);
}
