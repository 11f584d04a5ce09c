/**
 * Where an image's tokens come from in the picture — the contract between a model family's processor and
 * every view. An image becomes a sequence of tokens made of segments: grids of cells (LLaVA's patch grid,
 * LLaVA-NeXT's base image and its tiled grid, Qwen2-VL's merged-patch grid), optionally closed row by row by a
 * separator token (`image_newline`), and single tokens without a place in the picture (a class token). A grid
 * covers its `frame`, a rectangle in ORIGINAL image pixels (it may extend past the image: padding, or a crop's
 * cut-away part is simply outside it), divided into rows × cols equal cells; so every token's box follows from
 * the layout alone, and no view assumes a square or a contiguous span.
 */
import { z } from "zod";

const nat = z.number().int().nonnegative();
const pos = z.number().int().positive();
const finite = z.number().finite();

/** [x0, y0, x1, y1] in original-image pixels (continuous edges: x right, y down, x1/y1 exclusive). */
export const boxSchema = z.tuple([finite, finite, finite, finite]);
export type Box = z.infer<typeof boxSchema>;

export const gridSegmentSchema = z.object({
  kind: z.literal("grid"),
  /** What the grid is: "image" (one tower pass), "base" (NeXT's whole-image thumbnail), "tiles", … */
  name: z.string().min(1),
  rows: pos,
  cols: pos,
  /** Each row is followed by one separator token (LLaVA-NeXT's `image_newline`), which has no box. */
  row_separator: z.boolean(),
  /** The rectangle the grid covers, in original-image pixels, before clipping to the image. */
  frame: boxSchema,
  /**
   * When cell j (row-major, separators not counted) is tower token `first_token + j` of tower pass `pass`:
   * vision-tower maps (relevancy through the ViT) are drawn through this. Absent when cells blend tower tokens.
   */
  tower: z.object({ pass: nat, first_token: nat }).optional(),
});

export const tokenSegmentSchema = z.object({
  kind: z.literal("token"),
  /** e.g. "cls": a token with no place in the picture. */
  name: z.string().min(1),
});

export const layoutSegmentSchema = z.discriminatedUnion("kind", [gridSegmentSchema, tokenSegmentSchema]);

export const imageLayoutSchema = z.object({
  /** [width, height] of the original image. */
  original_size: z.tuple([pos, pos]),
  /** Image tokens, separators included: the sum over the segments. */
  token_count: pos,
  segments: z.array(layoutSegmentSchema).min(1),
});

export type GridSegment = z.infer<typeof gridSegmentSchema>;
export type TokenSegment = z.infer<typeof tokenSegmentSchema>;
export type LayoutSegment = z.infer<typeof layoutSegmentSchema>;
export type ImageLayout = z.infer<typeof imageLayoutSchema>;

/** Tokens a segment contributes. */
export function segmentTokenCount(s: LayoutSegment): number {
  return s.kind === "token" ? 1 : s.rows * (s.cols + (s.row_separator ? 1 : 0));
}

/** A layout whose token count is the sum of its segments (a message naming the mismatch otherwise). */
export function layoutProblem(l: ImageLayout): string | null {
  const n = l.segments.reduce((a, s) => a + segmentTokenCount(s), 0);
  if (n !== l.token_count) return `segments hold ${n} tokens, token_count says ${l.token_count}`;
  for (const s of l.segments) {
    if (s.kind === "grid" && !(s.frame[2] > s.frame[0] && s.frame[3] > s.frame[1]))
      return `grid "${s.name}" has an empty frame [${s.frame.join(", ")}]`;
  }
  return null;
}

/** One image token's place: its segment, and its cell (row, col; col = cols for a row separator). */
export interface TokenPlace {
  segment: number;
  /** Index of the token inside its segment. */
  index: number;
  row: number;
  col: number;
  /** Cell index inside the grid (row-major, separators not counted), −1 for separators and single tokens. */
  cell: number;
}

/** Every image token's place, in sequence order. */
export function tokenPlaces(l: ImageLayout): TokenPlace[] {
  const out: TokenPlace[] = [];
  l.segments.forEach((s, si) => {
    if (s.kind === "token") {
      out.push({ segment: si, index: 0, row: -1, col: -1, cell: -1 });
      return;
    }
    const w = s.cols + (s.row_separator ? 1 : 0);
    for (let i = 0; i < s.rows * w; i++) {
      const row = Math.floor(i / w);
      const col = i % w;
      out.push({ segment: si, index: i, row, col, cell: col < s.cols ? row * s.cols + col : -1 });
    }
  });
  return out;
}

/**
 * Whether each image token is a separator: a grid's row separator, or a lone `image_newline` token (a grid
 * unpadded away). Separators carry no place in the picture; other single tokens (a class token) are not ones.
 */
export function separatorTokens(l: ImageLayout): boolean[] {
  return tokenPlaces(l).map((p) => {
    const s = l.segments[p.segment];
    return s.kind === "grid" ? p.cell < 0 : s.name === "image_newline";
  });
}

/** The box of cell (row, col) of a grid, unclipped. */
export function cellBox(s: GridSegment, row: number, col: number): Box {
  const [x0, y0, x1, y1] = s.frame;
  const cw = (x1 - x0) / s.cols;
  const ch = (y1 - y0) / s.rows;
  return [x0 + col * cw, y0 + row * ch, x0 + (col + 1) * cw, y0 + (row + 1) * ch];
}

/**
 * image_token_boxes: [P, 4] float32, each token's box in original-image pixels clipped to the image (a box
 * wholly outside the image — padding — has zero area); NaN rows for tokens without a place (separators, CLS).
 */
export function layoutBoxes(l: ImageLayout): Float32Array {
  const [W, H] = l.original_size;
  const places = tokenPlaces(l);
  const out = new Float32Array(places.length * 4).fill(Number.NaN);
  const clip = (v: number, hi: number) => Math.min(hi, Math.max(0, v));
  places.forEach((p, k) => {
    const s = l.segments[p.segment];
    if (s.kind !== "grid" || p.cell < 0) return;
    const b = cellBox(s, p.row, p.col);
    out.set([clip(b[0], W), clip(b[1], H), clip(b[2], W), clip(b[3], H)], k * 4);
  });
  return out;
}

/**
 * For vision-tower maps: the tower token (in its pass) behind each image token, or −1 where none (separators,
 * single tokens, grids without a `tower` mapping). Pass numbers come with it.
 */
export function towerTokens(l: ImageLayout): { pass: number; token: number }[] {
  return tokenPlaces(l).map((p) => {
    const s = l.segments[p.segment];
    if (s.kind !== "grid" || !s.tower || p.cell < 0) return { pass: -1, token: -1 };
    return { pass: s.tower.pass, token: s.tower.first_token + p.cell };
  });
}
