/**
 * Position ids as the decoder's rotary embedding reads them: [axes, n], one row per rotary axis (1 for plain
 * RoPE; 3 — temporal, height, width — for M-RoPE). They are separate from the sequence index: the KV cache and
 * the causal mask count sequence indices, RoPE reads these ids.
 */

export interface PositionIds {
  /** Rows: 1 (RoPE) or more (multi-axis RoPE). */
  readonly axes: number;
  /** Columns: one per sequence row. */
  readonly n: number;
  /** Row-major [axes, n]: axis a of column r at data[a·n + r]. */
  readonly data: Int32Array;
}

/** from, from+1, …, from+n−1 on every axis (text-only positions, and every position of a 1-axis model). */
export function sequentialPositions(from: number, n: number, axes = 1): PositionIds {
  const data = new Int32Array(axes * n);
  for (let a = 0; a < axes; a++) for (let r = 0; r < n; r++) data[a * n + r] = from + r;
  return { axes, n, data };
}

/** Columns from … from+n−1 of a position-id matrix. */
export function positionColumns(p: PositionIds, from: number, n: number): PositionIds {
  if (from < 0 || n < 0 || from + n > p.n)
    throw new RangeError(`position columns ${from}…${from + n - 1} outside 0…${p.n - 1}`);
  const data = new Int32Array(p.axes * n);
  for (let a = 0; a < p.axes; a++) data.set(p.data.subarray(a * p.n + from, a * p.n + from + n), a * n);
  return { axes: p.axes, n, data };
}
