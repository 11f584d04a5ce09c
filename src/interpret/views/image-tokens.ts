/**
 * Run → JSON for the views' pictures: where each image token is in the ORIGINAL image (boxes, grids with
 * their frames) and what to call it. Every view maps tokens to the picture through this, never through an
 * assumed square grid or contiguous span.
 */
// Types only from models/: the web app imports this module's types (type-only), so it stays free of Node.
import { type ImageLayout, tokenPlaces, towerTokens } from "../../models/image-layout.js";

/** A grid segment of the image as the web app draws it. */
export interface GridView {
  name: string;
  /** Index of the segment's first image token. */
  first: number;
  rows: number;
  cols: number;
  /** Each row ends with a separator token (no box). */
  rowSeparator: boolean;
  /** [x0, y0, x1, y1] the grid covers in original-image pixels (may extend past the image). */
  frame: [number, number, number, number];
}

/** The image side of a run for the web app. */
export interface ImageGeometry {
  /** Original image size. */
  width: number;
  height: number;
  /** Sequence position of each image token. */
  positions: number[];
  /** Each image token's box [x0, y0, x1, y1] in original pixels (clipped), null when it has no place. */
  boxes: ([number, number, number, number] | null)[];
  /** Each image token's label ("patch 3,4", "tiles 1,5", "newline 2", "cls"). */
  labels: string[];
  grids: GridView[];
}

/** Labels of every image token: its cell in its grid, "newline r" for separators, the name of single tokens. */
export function imageTokenLabels(layout: ImageLayout): string[] {
  const grids = layout.segments.filter((s) => s.kind === "grid").length;
  return tokenPlaces(layout).map((p) => {
    const s = layout.segments[p.segment];
    if (s.kind === "token") return s.name;
    if (p.cell < 0) return `newline ${p.row}`;
    const name = grids > 1 ? s.name : "patch";
    return `${name} ${p.row},${p.col}`;
  });
}

/** The geometry of a run's image tokens (`Run.imageTokens()`). */
export function imageGeometry(image: {
  positions: number[];
  boxes: Float32Array;
  layout: ImageLayout;
}): ImageGeometry {
  const { layout, boxes, positions } = image;
  const [width, height] = layout.original_size;
  const out: ImageGeometry["boxes"] = [];
  for (let i = 0; i < positions.length; i++) {
    const b = boxes.subarray(i * 4, i * 4 + 4);
    out.push(b.every(Number.isFinite) ? [b[0], b[1], b[2], b[3]] : null);
  }
  const grids: GridView[] = [];
  let first = 0;
  for (const s of layout.segments) {
    if (s.kind === "grid") {
      grids.push({
        name: s.name,
        first,
        rows: s.rows,
        cols: s.cols,
        rowSeparator: s.row_separator,
        frame: s.frame,
      });
      first += s.rows * (s.cols + (s.row_separator ? 1 : 0));
    } else first += 1;
  }
  return { width, height, positions, boxes: out, labels: imageTokenLabels(layout), grids };
}

/**
 * A row over vision-tower tokens (a CLS row of the vit/all/all_v2 maps, with `offset` 0; or the chain map,
 * which leaves the CLS token out, with `cls` its index) as one value per image token; NaN for image tokens
 * without a tower token of their own.
 */
export function towerRowToImageTokens(row: ArrayLike<number>, layout: ImageLayout, cls = -1): Float32Array {
  return Float32Array.from(towerTokens(layout), (t) => {
    if (t.token < 0 || t.pass !== 0) return Number.NaN;
    const j = cls >= 0 && t.token > cls ? t.token - 1 : t.token;
    return j < row.length ? row[j] : Number.NaN;
  });
}

/** An image token's tower source as the views read it: pass, token in that pass, weight. */
export interface ImageTokenSource {
  pass: number;
  token: number;
  weight: number;
}

/** The layout's own tower mapping as sources (one token of weight 1; none for separators and unmapped grids). */
export function layoutTowerSources(layout: ImageLayout): ImageTokenSource[][] {
  return towerTokens(layout).map((t) => (t.token < 0 ? [] : [{ pass: t.pass, token: t.token, weight: 1 }]));
}

/**
 * Rows over the tower tokens of every pass (`passes` blocks of `width`, pass-major) as one value per image
 * token: Σ weight · row at its sources. `cls` is the class token's index; CLS rows (`clsInRows`) hold it at
 * that index, chain rows leave it out of each block. NaN for image tokens without sources (separators), with
 * the class token among them (a CLS row's own entry is its diagonal, not a place), or outside the rows.
 */
export function towerRowsToImageTokens(
  rows: ArrayLike<number>,
  sources: ImageTokenSource[][],
  width: number,
  cls: number,
  clsInRows: boolean,
): Float32Array {
  return Float32Array.from(sources, (src) => {
    if (src.length === 0) return Number.NaN;
    let v = 0;
    for (const s of src) {
      const j = !clsInRows && cls >= 0 && s.token > cls ? s.token - 1 : s.token;
      if (s.token === cls || j >= width || s.pass * width + j >= rows.length) return Number.NaN;
      v += s.weight * rows[s.pass * width + j];
    }
    return v;
  });
}
