/**
 * A view as one PNG: the view's element is repainted onto a canvas — backgrounds, borders, every canvas and
 * image (heatmaps, charts, the causal graph) at its on-screen place, and the text of the page word by word —
 * so an export looks like the view without a screenshot API. Elements marked `data-export="skip"` (buttons,
 * toolbars) are left out, and so is the empty band they would leave where nothing else is beside them.
 */

import { withPngText } from "./png-text";

function transparent(c: string): boolean {
  return !c || c === "transparent" || /rgba\([^)]*,\s*0\)$/.test(c);
}

/**
 * Vertical extents (canvas pixels from the top) of what was drawn, and of the elements left out: a band that
 * only left-out elements covered is cut from the export, so skipped controls leave no blank stripe.
 */
interface Extents {
  drawn: [number, number][];
  skipped: [number, number][];
}

function drawText(ctx: CanvasRenderingContext2D, node: Text, ox: number, oy: number, ext: Extents): void {
  const text = node.data;
  if (!text.trim()) return;
  const el = node.parentElement;
  if (!el) return;
  const cs = getComputedStyle(el);
  if (cs.visibility === "hidden" || Number(cs.opacity) === 0) return;
  ctx.font = `${cs.fontStyle} ${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
  ctx.fillStyle = cs.color;
  ctx.textBaseline = "middle";
  ctx.textAlign = "left";
  const range = document.createRange();
  const re = /\S+/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    range.setStart(node, m.index);
    range.setEnd(node, m.index + m[0].length);
    const r = range.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    ctx.fillText(m[0], r.left - ox, r.top - oy + r.height / 2);
    ext.drawn.push([r.top - oy, r.bottom - oy]);
  }
}

function paint(ctx: CanvasRenderingContext2D, el: Element, ox: number, oy: number, ext: Extents): void {
  if (!(el instanceof HTMLElement || el instanceof SVGElement)) return;
  if (el instanceof HTMLElement && el.dataset.export === "skip") {
    // With its margins: the space around a left-out element goes with it.
    const r = el.getBoundingClientRect();
    const m = getComputedStyle(el);
    const [mt, mb] = [Number.parseFloat(m.marginTop) || 0, Number.parseFloat(m.marginBottom) || 0];
    if (r.height > 0) ext.skipped.push([r.top - oy - mt, r.bottom - oy + mb]);
    return;
  }
  const cs = getComputedStyle(el);
  if (cs.display === "none" || cs.visibility === "hidden") return;
  const r = el.getBoundingClientRect();
  const x = r.left - ox;
  const y = r.top - oy;
  // A box drawn whole counts as drawn where it has no children (a chip, a swatch); a container only where
  // its top and bottom edges are (cutting a band out of its middle just makes it shorter).
  const leaf = el.children.length === 0;
  if (!transparent(cs.backgroundColor)) {
    ctx.fillStyle = cs.backgroundColor;
    ctx.fillRect(x, y, r.width, r.height);
    if (leaf) ext.drawn.push([y, y + r.height]);
  }
  const bw = Number.parseFloat(cs.borderTopWidth);
  if (bw > 0 && cs.borderTopStyle !== "none" && !transparent(cs.borderTopColor)) {
    ctx.strokeStyle = cs.borderTopColor;
    ctx.lineWidth = bw;
    ctx.strokeRect(x + bw / 2, y + bw / 2, r.width - bw, r.height - bw);
    ext.drawn.push([y, y + bw], [y + r.height - bw, y + r.height]);
  }
  if (
    el instanceof HTMLCanvasElement ||
    el instanceof HTMLImageElement ||
    el instanceof HTMLTextAreaElement ||
    el instanceof HTMLSelectElement ||
    el instanceof HTMLInputElement
  )
    ext.drawn.push([y, y + r.height]);
  if (el instanceof HTMLCanvasElement && el.width > 0 && el.height > 0) {
    ctx.drawImage(el, x, y, r.width, r.height);
    return;
  }
  if (el instanceof HTMLImageElement && el.complete && el.naturalWidth > 0) {
    ctx.drawImage(el, x, y, r.width, r.height);
    return;
  }
  if (el instanceof HTMLTextAreaElement) {
    // A textarea's text is its value, not child nodes: wrapped inside its box (the question on Generate).
    ctx.font = `${cs.fontSize} ${cs.fontFamily}`;
    ctx.fillStyle = cs.color;
    ctx.textBaseline = "top";
    const pad = Number.parseFloat(cs.paddingLeft) || 6;
    const line = Number.parseFloat(cs.lineHeight) || Number.parseFloat(cs.fontSize) * 1.3;
    wrap(ctx, el.value, r.width - 2 * pad).forEach((l, i) => {
      if ((i + 1) * line <= r.height - pad) ctx.fillText(l, x + pad, y + pad + i * line);
    });
    return;
  }
  if (
    el instanceof HTMLSelectElement ||
    (el instanceof HTMLInputElement && (el.type === "number" || el.type === "text"))
  ) {
    const label = el instanceof HTMLSelectElement ? (el.selectedOptions[0]?.text ?? "") : el.value;
    ctx.font = `${cs.fontSize} ${cs.fontFamily}`;
    ctx.fillStyle = cs.color;
    ctx.textBaseline = "middle";
    ctx.fillText(label, x + 6, y + r.height / 2);
    return;
  }
  for (const child of el.childNodes) {
    if (child.nodeType === Node.TEXT_NODE) drawText(ctx, child as Text, ox, oy, ext);
    else if (child.nodeType === Node.ELEMENT_NODE) paint(ctx, child as Element, ox, oy, ext);
  }
}

/** What a figure shows, as lines above it: ("Q", the question), ("A", the answer), … */
export type Caption = { label: string; text: string }[];

const CAPTION_FONT = "14px system-ui, sans-serif";
const CAPTION_LINE = 20;
const CAPTION_PAD = 12;

/** Words of `text` wrapped into lines no wider than `width` (a word longer than a line stands alone). */
function wrap(ctx: CanvasRenderingContext2D, text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (line && ctx.measureText(next).width > width) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  lines.push(line);
  return lines;
}

/** Lays out (and with `draw`, paints) the caption at the top; returns its height. */
function layoutCaption(
  ctx: CanvasRenderingContext2D,
  caption: Caption,
  width: number,
  draw: boolean,
): number {
  ctx.font = CAPTION_FONT;
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  const labelW = Math.max(0, ...caption.map((c) => ctx.measureText(c.label).width)) + 8;
  let y = CAPTION_PAD;
  for (const { label, text } of caption) {
    const lines = wrap(ctx, text || "∅", Math.max(40, width - 2 * CAPTION_PAD - labelW));
    if (draw) {
      ctx.fillStyle = "#6b7280";
      ctx.fillText(label, CAPTION_PAD, y);
      ctx.fillStyle = "#111827";
      for (const [i, l] of lines.entries()) ctx.fillText(l, CAPTION_PAD + labelW, y + i * CAPTION_LINE);
    }
    y += lines.length * CAPTION_LINE;
  }
  return y + CAPTION_PAD - 4;
}

/** Merged, sorted intervals. */
function union(xs: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [a, b] of [...xs].sort((p, q) => p[0] - q[0])) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** Pixels of each cut band kept (half above, half below the cut). */
const KEEP = 8;

/** The bands (canvas pixels) that only left-out elements covered: nothing drawn in them, across the width. */
function blankBands(ext: Extents, minHeight = 2): [number, number][] {
  const drawn = union(ext.drawn);
  const bands: [number, number][] = [];
  for (const [a0, b] of union(ext.skipped)) {
    let a = a0;
    for (const [c, d] of drawn) {
      if (d <= a || c >= b) continue;
      if (c > a) bands.push([a, c]);
      a = Math.max(a, d);
    }
    if (b > a) bands.push([a, b]);
  }
  // A little of each band stays: what was above and below does not touch.
  return bands
    .map(([a, b]): [number, number] => [a + KEEP / 2, b - KEEP / 2])
    .filter(([a, b]) => b - a >= minHeight);
}

/** The canvas without the bands (in CSS pixels; `scale` device pixels each). */
function cutBands(src: HTMLCanvasElement, bands: [number, number][], scale: number): HTMLCanvasElement {
  if (bands.length === 0) return src;
  const keep: [number, number][] = [];
  let y = 0;
  for (const [a, b] of bands) {
    if (a > y) keep.push([y, a]);
    y = Math.max(y, b);
  }
  const end = src.height / scale;
  if (end > y) keep.push([y, end]);
  const px = keep.map(([a, b]): [number, number] => [Math.round(a * scale), Math.round(b * scale)]);
  const out = document.createElement("canvas");
  out.width = src.width;
  out.height = Math.max(
    1,
    px.reduce((n, [a, b]) => n + b - a, 0),
  );
  const ctx = out.getContext("2d")!;
  let dy = 0;
  for (const [a, b] of px) {
    if (b <= a) continue;
    ctx.drawImage(src, 0, a, src.width, b - a, 0, dy, src.width, b - a);
    dy += b - a;
  }
  return out;
}

/**
 * Renders an element into a PNG blob. A caption (the run's question and answer) goes above the figure and,
 * as iTXt chunks "Title" and "Description", into the file.
 */
export async function elementToPng(root: HTMLElement, caption: Caption = []): Promise<Blob> {
  const r = root.getBoundingClientRect();
  const scale = Math.max(1, Math.min(2, window.devicePixelRatio || 1));
  const canvas = document.createElement("canvas");
  const measure = canvas.getContext("2d")!;
  const top = caption.length ? layoutCaption(measure, caption, r.width, false) : 0;
  canvas.width = Math.max(1, Math.ceil(r.width * scale));
  canvas.height = Math.max(1, Math.ceil((r.height + top) * scale));
  const ctx = canvas.getContext("2d")!;
  ctx.scale(scale, scale);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, r.width, r.height + top);
  if (caption.length) layoutCaption(ctx, caption, r.width, true);
  const ext: Extents = { drawn: [], skipped: [] };
  paint(ctx, root, r.left, r.top - top, ext);
  const figure = cutBands(canvas, blankBands(ext), scale);
  const blob = await new Promise<Blob>((resolve, reject) =>
    figure.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png"),
  );
  if (!caption.length) return blob;
  const png = withPngText(new Uint8Array(await blob.arrayBuffer()), [
    ["Title", caption[0].text],
    ["Description", caption.map((c) => `${c.label}: ${c.text}`).join("\n")],
  ]);
  return new Blob([png.buffer as ArrayBuffer], { type: "image/png" });
}

/** Saves a blob as a download. */
export function download(blob: Blob, name: string): void {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
