/** Canvas grids: the layer × head heatmap (hover values, click a cell) and the per-head strip. */
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import { lut } from "../colormap";
import { formatValue } from "../heatmap";
import { Colorbar, extent, useSettings } from "./common";

export interface LayerHeadGridProps {
  /** values[layer][head] */
  values: number[][];
  selected?: { layer: number; head: number } | null;
  onSelect?: (layer: number, head: number) => void;
  testId?: string;
  maxSize?: number;
}

const PAD_L = 34;
const PAD_B = 30;
const PAD_T = 6;

/** Layers on x, heads on y (as LVLM-Interpret draws it); hover shows the value, click selects the cell. */
export function LayerHeadGrid({ values, selected, onSelect, testId, maxSize = 380 }: LayerHeadGridProps) {
  const ref = useRef<HTMLCanvasElement>(null);
  const { settings } = useSettings();
  const [hover, setHover] = useState<{ layer: number; head: number; x: number; y: number } | null>(null);
  const L = values.length;
  const H = values[0]?.length ?? 0;
  const cell = Math.max(6, Math.min(48, Math.floor(maxSize / Math.max(L, H, 1))));
  const w = PAD_L + L * cell + 4;
  const h = PAD_T + H * cell + PAD_B;
  const [lo, hi] = extent(values);
  // Before the paint (a few rectangles): the view shows with its grid in one frame.
  useLayoutEffect(() => {
    const c = ref.current;
    if (!c) return;
    const ctx = c.getContext("2d")!;
    ctx.clearRect(0, 0, w, h);
    const t = lut(settings.cmap);
    for (let l = 0; l < L; l++)
      for (let hd = 0; hd < H; hd++) {
        const u = hi > lo ? (values[l][hd] - lo) / (hi - lo) : 0.5;
        const k = Math.round(255 * u) * 3;
        ctx.fillStyle = `rgb(${t[k]},${t[k + 1]},${t[k + 2]})`;
        ctx.fillRect(PAD_L + l * cell, PAD_T + hd * cell, cell, cell);
      }
    ctx.fillStyle = "#444";
    ctx.font = "10px system-ui, sans-serif";
    const step = Math.max(1, Math.ceil(18 / cell));
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let l = 0; l < L; l += step) ctx.fillText(String(l), PAD_L + (l + 0.5) * cell, PAD_T + H * cell + 3);
    ctx.fillText("layer", PAD_L + (L * cell) / 2, PAD_T + H * cell + 16);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let hd = 0; hd < H; hd += step) ctx.fillText(String(hd), PAD_L - 4, PAD_T + (hd + 0.5) * cell);
    ctx.save();
    ctx.translate(9, PAD_T + (H * cell) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("head", 0, 0);
    ctx.restore();
    if (selected) {
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 2;
      ctx.strokeRect(PAD_L + selected.layer * cell + 1, PAD_T + selected.head * cell + 1, cell - 2, cell - 2);
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      ctx.strokeRect(
        PAD_L + selected.layer * cell - 0.5,
        PAD_T + selected.head * cell - 0.5,
        cell + 1,
        cell + 1,
      );
    }
    // Redrawn when what it shows changes, not on every render (a hover, a view shown again).
  }, [values, settings.cmap, selected?.layer, selected?.head, L, H, cell, w, h, lo, hi]);
  const cellAt = (e: MouseEvent) => {
    const r = ref.current!.getBoundingClientRect();
    const x = ((e.clientX - r.left) * w) / r.width;
    const y = ((e.clientY - r.top) * h) / r.height;
    const layer = Math.floor((x - PAD_L) / cell);
    const head = Math.floor((y - PAD_T) / cell);
    if (layer < 0 || layer >= L || head < 0 || head >= H) return null;
    return { layer, head, x: e.clientX - r.left, y: e.clientY - r.top };
  };
  return (
    <div class="grid-wrap">
      <canvas
        ref={ref}
        width={w}
        height={h}
        role="img"
        aria-label={`${L} layers × ${H} heads, values ${formatValue(lo)} to ${formatValue(hi)}${selected ? `; layer ${selected.layer}, head ${selected.head} selected` : ""}`}
        data-testid={testId}
        class={onSelect ? "clickable" : ""}
        onMouseMove={(e) => setHover(cellAt(e))}
        onMouseLeave={() => setHover(null)}
        onClick={(e) => {
          const c = cellAt(e);
          if (c && onSelect) onSelect(c.layer, c.head);
        }}
      />
      {hover && (
        <div
          class="tooltip"
          style={{ left: `${hover.x + 12}px`, top: `${hover.y + 12}px` }}
          data-testid="tooltip"
        >
          layer {hover.layer} · head {hover.head}: {formatValue(values[hover.layer][hover.head])}
        </div>
      )}
    </div>
  );
}

/** One row of cells, one per head (the per-head mean strip); hover shows values, click selects. */
export function HeadStrip({
  values,
  selected,
  onSelect,
  testId,
  label = "head",
}: {
  values: number[];
  selected?: number | null;
  onSelect?: (h: number) => void;
  testId?: string;
  label?: string;
}) {
  const ref = useRef<HTMLCanvasElement>(null);
  const { settings } = useSettings();
  const [hover, setHover] = useState<{ i: number; x: number } | null>(null);
  const n = values.length;
  const cell = Math.max(8, Math.min(36, Math.floor(640 / Math.max(1, n))));
  const w = n * cell;
  const h = cell + 16;
  const [lo, hi] = extent([values]);
  // Before the paint (a few rectangles): the view shows with its grid in one frame.
  useLayoutEffect(() => {
    const c = ref.current;
    if (!c) return;
    const ctx = c.getContext("2d")!;
    ctx.clearRect(0, 0, w, h);
    const t = lut(settings.cmap);
    for (let i = 0; i < n; i++) {
      const u = hi > lo ? (values[i] - lo) / (hi - lo) : 0.5;
      const k = Math.round(255 * u) * 3;
      ctx.fillStyle = `rgb(${t[k]},${t[k + 1]},${t[k + 2]})`;
      ctx.fillRect(i * cell, 0, cell - 1, cell);
    }
    ctx.fillStyle = "#444";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const step = Math.max(1, Math.ceil(16 / cell));
    for (let i = 0; i < n; i += step) ctx.fillText(String(i), (i + 0.5) * cell, cell + 3);
    if (selected !== undefined && selected !== null) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 2;
      ctx.strokeRect(selected * cell + 1, 1, cell - 3, cell - 2);
    }
  }, [values, settings.cmap, selected, n, cell, w, h, lo, hi]);
  const at = (e: MouseEvent) => {
    const r = ref.current!.getBoundingClientRect();
    const i = Math.floor(((e.clientX - r.left) * w) / r.width / cell);
    return i >= 0 && i < n ? { i, x: e.clientX - r.left } : null;
  };
  return (
    <div class="grid-wrap">
      <canvas
        ref={ref}
        width={w}
        height={h}
        role="img"
        aria-label={`per ${label}: ${values.map((v, i) => `${i} ${formatValue(v)}`).join(", ")}`}
        data-testid={testId}
        class={onSelect ? "clickable" : ""}
        onMouseMove={(e) => setHover(at(e))}
        onMouseLeave={() => setHover(null)}
        onClick={(e) => {
          const a = at(e);
          if (a && onSelect) onSelect(a.i);
        }}
      />
      <Colorbar lo={lo} hi={hi} width={Math.max(120, Math.min(w, 200))} testId="strip-colorbar" />
      {hover && (
        <div class="tooltip" style={{ left: `${hover.x + 10}px`, top: `${h + 4}px` }}>
          {label} {hover.i}: {formatValue(values[hover.i])}
        </div>
      )}
    </div>
  );
}
