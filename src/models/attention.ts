/**
 * Explicit scaled-dot-product attention (scores → softmax → probabilities → values), because the
 * probabilities are the product this tool exists to show. Handles GQA/MQA by running each KV group's query
 * heads as one block, so keys and values are never copied per head.
 */
import type { Kernels } from "../kernels/types.js";
import { softmaxRows, softmaxRowsBackward } from "../tensor/ops.js";

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
  /**
   * Optional hook on each KV group's probabilities [rep, n, len] (query heads g·rep … g·rep+rep−1), called
   * after the softmax and before they weight the values; it may edit them in place (finite-difference checks
   * perturb attention probabilities through it).
   */
  onProbs?: (groupProbs: Float32Array, group: number) => void;
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
    a.onProbs?.(scores, g);
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

export interface AttentionBackwardInputs {
  /** Queries [m, heads, headDim] as they entered the scores (after RoPE). */
  q: Float32Array;
  /** Keys/values in the per-group layout of `AttentionInputs` (group g at g·kvStride, rows [len, headDim]). */
  k: Float32Array;
  v: Float32Array;
  kvStride: number;
  /** Post-softmax probabilities [heads, m, len] of the forward pass (masked entries 0). */
  probs: Float32Array;
  /** Gradient at the attention output [m, heads·headDim]. */
  dOut: Float32Array;
  m: number;
  len: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
}

export interface AttentionBackwardOutputs {
  /** [m, heads·headDim] (before RoPE's backward). */
  dq: Float32Array;
  /** [kvHeads, len, headDim]: gradients of every key/value row the queries saw. */
  dk: Float32Array;
  dv: Float32Array;
  /**
   * [heads, m, len]: gradient w.r.t. the post-softmax probabilities as used downstream (dOut·vᵀ per head) —
   * Chefer's G. Entries at masked positions are the same product (the probability there is 0, so they never
   * matter for G ⊙ A).
   */
  dProbs: Float32Array;
}

/**
 * Backward of `attention`: dP = dctx·Vᵀ, dV = Pᵀ·dctx, dS = scale · P ⊙ (dP − rowsum(P ⊙ dP)),
 * dQ = dS·K, dK = dSᵀ·Q, run per KV group with the group's query heads stacked (as the forward).
 */
export async function attentionBackward(
  kernels: Kernels,
  a: AttentionBackwardInputs,
): Promise<AttentionBackwardOutputs> {
  const { m, len, heads, kvHeads, headDim: hd } = a;
  const rep = heads / kvHeads;
  const rows = rep * m;
  const dq = new Float32Array(m * heads * hd);
  const dk = new Float32Array(kvHeads * len * hd);
  const dv = new Float32Array(kvHeads * len * hd);
  const dProbs = new Float32Array(heads * m * len);
  const qg = new Float32Array(rows * hd);
  const dctx = new Float32Array(rows * hd);
  for (let g = 0; g < kvHeads; g++) {
    for (let r = 0; r < rep; r++) {
      const h = g * rep + r;
      for (let i = 0; i < m; i++) {
        const src = (i * heads + h) * hd;
        qg.set(a.q.subarray(src, src + hd), (r * m + i) * hd);
        dctx.set(a.dOut.subarray(src, src + hd), (r * m + i) * hd);
      }
    }
    const kg = a.k.subarray(g * a.kvStride, g * a.kvStride + len * hd);
    const vg = a.v.subarray(g * a.kvStride, g * a.kvStride + len * hd);
    const pg = a.probs.subarray(g * rows * len, (g + 1) * rows * len);
    const dp = await kernels.bmm(dctx, vg, 1, rows, hd, len, true);
    dProbs.set(dp, g * rows * len);
    dv.set(await kernels.matmulTransA(pg, dctx, rows, len, hd), g * len * hd);
    const ds = softmaxRowsBackward(pg, dp, rows, len);
    for (let i = 0; i < ds.length; i++) ds[i] *= a.scale;
    const dqg = await kernels.bmm(ds, kg, 1, rows, len, hd, false);
    for (let r = 0; r < rep; r++) {
      const h = g * rep + r;
      for (let i = 0; i < m; i++)
        dq.set(dqg.subarray((r * m + i) * hd, (r * m + i + 1) * hd), (i * heads + h) * hd);
    }
    dk.set(await kernels.matmulTransA(ds, qg, rows, len, hd), g * len * hd);
  }
  return { dq, dk, dv, dProbs };
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

/**
 * Inverse of `headsFirst` on a row window: x [heads, stride rows, hd] → [count, heads, hd] for rows
 * from … from+count−1 (backward passes turn per-group key/value gradients back into Linear-output rows).
 */
export function rowsFirst(
  x: Float32Array,
  heads: number,
  strideRows: number,
  hd: number,
  from: number,
  count: number,
): Float32Array {
  const out = new Float32Array(count * heads * hd);
  for (let h = 0; h < heads; h++) {
    for (let r = 0; r < count; r++) {
      const src = (h * strideRows + from + r) * hd;
      out.set(x.subarray(src, src + hd), (r * heads + h) * hd);
    }
  }
  return out;
}
