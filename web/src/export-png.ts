/**
 * A view as one PNG: the view's element is repainted onto a canvas — backgrounds, borders, every canvas and
 * image (heatmaps, charts, the causal graph) at its on-screen place, and the text of the page word by word —
 * so an export looks like the view without a screenshot API. Elements marked `data-export="skip"` (buttons,
 * toolbars) are left out.
 */

function transparent(c: string): boolean {
  return !c || c === "transparent" || /rgba\([^)]*,\s*0\)$/.test(c);
}

function drawText(ctx: CanvasRenderingContext2D, node: Text, ox: number, oy: number): void {
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
  }
}

function paint(ctx: CanvasRenderingContext2D, el: Element, ox: number, oy: number): void {
  if (!(el instanceof HTMLElement || el instanceof SVGElement)) return;
  if (el instanceof HTMLElement && el.dataset.export === "skip") return;
  const cs = getComputedStyle(el);
  if (cs.display === "none" || cs.visibility === "hidden") return;
  const r = el.getBoundingClientRect();
  const x = r.left - ox;
  const y = r.top - oy;
  if (!transparent(cs.backgroundColor)) {
    ctx.fillStyle = cs.backgroundColor;
    ctx.fillRect(x, y, r.width, r.height);
  }
  const bw = Number.parseFloat(cs.borderTopWidth);
  if (bw > 0 && cs.borderTopStyle !== "none" && !transparent(cs.borderTopColor)) {
    ctx.strokeStyle = cs.borderTopColor;
    ctx.lineWidth = bw;
    ctx.strokeRect(x + bw / 2, y + bw / 2, r.width - bw, r.height - bw);
  }
  if (el instanceof HTMLCanvasElement && el.width > 0 && el.height > 0) {
    ctx.drawImage(el, x, y, r.width, r.height);
    return;
  }
  if (el instanceof HTMLImageElement && el.complete && el.naturalWidth > 0) {
    ctx.drawImage(el, x, y, r.width, r.height);
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
    if (child.nodeType === Node.TEXT_NODE) drawText(ctx, child as Text, ox, oy);
    else if (child.nodeType === Node.ELEMENT_NODE) paint(ctx, child as Element, ox, oy);
  }
}

/** Renders an element into a PNG blob. */
export async function elementToPng(root: HTMLElement): Promise<Blob> {
  const r = root.getBoundingClientRect();
  const scale = Math.max(1, Math.min(2, window.devicePixelRatio || 1));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.ceil(r.width * scale));
  canvas.height = Math.max(1, Math.ceil(r.height * scale));
  const ctx = canvas.getContext("2d")!;
  ctx.scale(scale, scale);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, r.width, r.height);
  paint(ctx, root, r.left, r.top);
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png"),
  );
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
