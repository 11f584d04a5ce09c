/**
 * M-RoPE position ids (`get_rope_index`), 3 rows (temporal, height, width): text tokens count up equally in all
 * rows; an image's tokens (merged cell r, c of frame f) sit at start + (f, r, c); text after an image continues
 * at the largest id so far + 1. Generated tokens are text, so decode step k at sequence index i gets
 * i + rope_delta with rope_delta = max id + 1 − prompt length.
 */
import type { ImageLayout } from "../image-layout.js";
import type { PositionIds } from "../positions.js";

/** The image's merged grid [frames, rows, cols] from its layout (one grid segment). */
export function mergedGrid(layout: ImageLayout): [number, number, number] {
  const g = layout.segments.find((s) => s.kind === "grid");
  if (g?.kind !== "grid") throw new RangeError("image layout has no grid");
  const frames = layout.token_count / (g.rows * g.cols);
  return [frames, g.rows, g.cols];
}

/** Position ids [3, ids.length] of a sequence whose image tokens (`imageTokenId`) form one image of `grid`. */
export function mropePositions(
  ids: readonly number[],
  imageTokenId: number,
  grid: [number, number, number],
): PositionIds {
  const n = ids.length;
  const data = new Int32Array(3 * n);
  const [frames, rows, cols] = grid;
  const per = frames * rows * cols;
  let next = 0;
  let i = 0;
  while (i < n) {
    if (ids[i] !== imageTokenId) {
      data[i] = data[n + i] = data[2 * n + i] = next++;
      i++;
      continue;
    }
    if (i + per > n || ids.slice(i, i + per).some((id) => id !== imageTokenId))
      throw new RangeError(`an image span at ${i} is not ${per} consecutive image tokens`);
    const start = next;
    let top = start;
    for (let k = 0; k < per; k++) {
      const f = Math.floor(k / (rows * cols));
      const r = Math.floor((k % (rows * cols)) / cols);
      const c = k % cols;
      data[i + k] = start + f;
      data[n + i + k] = start + r;
      data[2 * n + i + k] = start + c;
      top = Math.max(top, start + f, start + r, start + c);
    }
    next = top + 1;
    i += per;
  }
  return { axes: 3, n, data };
}

/** max position + 1 − length: what decode steps add to their sequence index. */
export function ropeDelta(p: PositionIds): number {
  let m = -1;
  for (const v of p.data) m = Math.max(m, v);
  return m + 1 - p.n;
}
