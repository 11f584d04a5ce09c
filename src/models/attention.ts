/**
 * Explicit scaled-dot-product attention (scores → softmax → probabilities → values), because the
 * probabilities are the product this tool exists to show. Handles GQA/MQA by running each KV group's query
 * heads as one block, so keys and values are never copied per head.
 */
import type { Kernels } from "../kernels/types.js";
import { softmaxRows } from "../tensor/ops.js";

export interface AttentionInputs {
  /** Queries [n, heads, headDim] (the Linear output layout). */
  q: Float32Array;
  /** Keys and values of group g at k.subarray(g*kvStride, g*kvStride + len*headDim), rows [len, headDim]. */
  k: Float32Array;
  v: Float32Array;
  kvStride: number;
  n: number;
  len: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  /** Causal mask: query row i sits at absolute position `queryOffset + i`; null = attend to everything. */
  queryOffset: number | null;
  /** Sliding window W: row at position p sees keys j with p − W < j ≤ p. */
  window: number | null;
}

export interface AttentionOutputs {
  /** [n, heads*headDim] */
  out: Float32Array;
  /** Post-softmax probabilities [heads, n, len]; masked entries exactly 0. */
  probs: Float32Array;
}

export async function attention(kernels: Kernels, a: AttentionInputs): Promise<AttentionOutputs> {
  const { n, len, heads, kvHeads, headDim: hd } = a;
  const rep = heads / kvHeads;
  const probs = new Float32Array(heads * n * len);
  const out = new Float32Array(n * heads * hd);
  const qg = new Float32Array(rep * n * hd);
  for (let g = 0; g < kvHeads; g++) {
    // Gather this group's query heads as [rep, n, hd].
    for (let r = 0; r < rep; r++) {
      const h = g * rep + r;
      for (let i = 0; i < n; i++)
        qg.set(a.q.subarray((i * heads + h) * hd, (i * heads + h + 1) * hd), (r * n + i) * hd);
    }
    const kg = a.k.subarray(g * a.kvStride, g * a.kvStride + len * hd);
    const vg = a.v.subarray(g * a.kvStride, g * a.kvStride + len * hd);
    const scores = await kernels.bmm(qg, kg, 1, rep * n, hd, len, true);
    for (let i = 0; i < scores.length; i++) scores[i] *= a.scale;
    const off = a.queryOffset;
    const win = a.window;
    softmaxRows(
      scores,
      rep * n,
      len,
      (row) => (off === null || win === null ? 0 : Math.max(0, off + (row % n) - win + 1)),
      (row) => (off === null ? len : Math.min(len, off + (row % n) + 1)),
    );
    probs.set(scores, g * rep * n * len);
    const ctx = await kernels.bmm(scores, vg, 1, rep * n, len, hd, false);
    for (let r = 0; r < rep; r++) {
      const h = g * rep + r;
      for (let i = 0; i < n; i++)
        out.set(ctx.subarray((r * n + i) * hd, (r * n + i + 1) * hd), (i * heads + h) * hd);
    }
  }
  return { out, probs };
}

/** [rows, heads, hd] → [heads, rows, hd] (vision keys/values into the per-group layout). */
export function headsFirst(x: Float32Array, rows: number, heads: number, hd: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++)
      out.set(x.subarray((r * heads + h) * hd, (r * heads + h + 1) * hd), (h * rows + r) * hd);
  }
  return out;
}
