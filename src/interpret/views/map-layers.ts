/**
 * Map layers of a picture seen twice: LLaVA-NeXT / OneVision give one set of image tokens for the base view
 * (grid "base", the whole picture at the tower's resolution) and one for the high-resolution tiles (the other
 * grid), so every place of the picture has a value in each. The views draw either layer alone, or the two
 * combined: each high-res cell gets the mean of its own value and the base view's value at that cell (the
 * area-weighted mean of the base cells it overlaps); places only the base view covers keep the base value.
 * The rule keeps the map's units (a convex mix of two values of the same map), so fixed or shared colour
 * ranges stay valid, and gives both views the same say. Documented in docs/trace-format.md.
 *
 * No runtime imports: the web app bundles this module.
 */
import type { GridView, ImageGeometry } from "./image-tokens.js";

export const MAP_LAYERS = ["combined", "base", "high-res"] as const;
export type MapLayer = (typeof MAP_LAYERS)[number];

/** A map value: a number, or null/NaN where the map has none. */
type Values = ArrayLike<number | null>;

/** Image-token indices of a grid's cells, row-major (separators skipped). */
function gridTokens(g: GridView): number[] {
  const out: number[] = [];
  const w = g.cols + (g.rowSeparator ? 1 : 0);
  for (let r = 0; r < g.rows; r++) for (let c = 0; c < g.cols; c++) out.push(g.first + r * w + c);
  return out;
}

/** The base and high-res grids when the picture has both (a grid named "base" and another one), else null. */
export function mapLayerGrids(geo: ImageGeometry): { base: GridView; highRes: GridView } | null {
  const base = geo.grids.find((g) => g.name === "base");
  const highRes = geo.grids.find((g) => g.name !== "base");
  return base && highRes ? { base, highRes } : null;
}

const finite = (v: number | null | undefined): v is number =>
  v !== null && v !== undefined && Number.isFinite(v);

/**
 * One layer of a map (one value per image token): "base" or "high-res" keeps that grid's tokens (others
 * null), "combined" as the module says. A picture without both layers gets its map back unchanged.
 */
export function mapLayer(map: Values, geo: ImageGeometry, layer: MapLayer): (number | null)[] {
  const out = Array.from({ length: map.length }, (_, k) => (finite(map[k]) ? map[k] : null));
  const grids = mapLayerGrids(geo);
  if (!grids) return out;
  const base = gridTokens(grids.base);
  const high = gridTokens(grids.highRes);
  const keep = new Set(layer === "base" ? base : layer === "high-res" ? high : [...base, ...high]);
  for (let k = 0; k < out.length; k++) if (!keep.has(k)) out[k] = null;
  if (layer !== "combined") return out;
  // Base cells a high-res box can overlap: the range of the base grid's rows and columns it spans.
  const bg = grids.base;
  const [fx0, fy0, fx1, fy1] = bg.frame;
  const cw = (fx1 - fx0) / bg.cols;
  const ch = (fy1 - fy0) / bg.rows;
  const span = (a: number, b: number, o: number, step: number, n: number): [number, number] => [
    Math.max(0, Math.floor((a - o) / step)),
    Math.min(n - 1, Math.ceil((b - o) / step) - 1),
  ];
  for (const i of high) {
    const bi = geo.boxes[i];
    const vi = map[i];
    if (!bi || !finite(vi)) continue;
    let sum = 0;
    let area = 0;
    const [c0, c1] = span(bi[0], bi[2], fx0, cw, bg.cols);
    const [r0, r1] = span(bi[1], bi[3], fy0, ch, bg.rows);
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const b = base[r * bg.cols + c];
        const bb = geo.boxes[b];
        const vb = map[b];
        if (!bb || !finite(vb)) continue;
        const ow = Math.min(bi[2], bb[2]) - Math.max(bi[0], bb[0]);
        const oh = Math.min(bi[3], bb[3]) - Math.max(bi[1], bb[1]);
        if (ow <= 0 || oh <= 0) continue;
        sum += vb * ow * oh;
        area += ow * oh;
      }
    }
    if (area > 0) out[i] = (vi + sum / area) / 2;
  }
  return out;
}
