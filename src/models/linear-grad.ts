/**
 * Backward of a Linear layer with respect to its input: y = x·Wᵀ + b ⇒ dx = dy·W, with W in Hugging Face
 * layout [out, in]. The matmul runs on the kernels (ORT's sgemm for large shapes):
 *  - F32 weights: `bmm(dy, W)` reads W in place.
 *  - 16-bit weights: `linear(dy, Wᵀ)` on a transposed 16-bit copy of W, so the kernels widen it their fast way
 *    (ORT casts in-graph). The copies are cached per weight matrix up to a byte budget (default 4 GiB,
 *    `LVLM_BACKWARD_WEIGHT_CACHE_MB` or `setBackwardWeightCacheBudget`): relevancy runs many backward passes
 *    over the same weights, and widening them in TypeScript on every pass would dominate a single-position
 *    backward. Beyond the budget, W is widened to float32 one block of rows at a time
 *    (dx = Σ_blocks dy[:, block]·W[block, :]), never as a whole.
 *  - int8 weights: always that way, dequantised block by block.
 * Only backward passes build the cache: generation never pays its memory.
 */

import { weightRowsInto } from "../kernels/quantize.js";
import type { Kernels, WeightMatrix } from "../kernels/types.js";
import type { WeightGradients } from "./gradients.js";

/** Floats of widened weight rows per block (64 MiB). */
const BLOCK_FLOATS = 1 << 24;

const envMb = Number(process.env.LVLM_BACKWARD_WEIGHT_CACHE_MB);
let budgetBytes = Number.isFinite(envMb) && envMb >= 0 ? envMb * 2 ** 20 : 4 * 2 ** 30;
let usedBytes = 0;
const transposed = new WeakMap<WeightMatrix, WeightMatrix>();

/** Byte budget for cached transposed 16-bit weights (0 disables the cache). */
export function setBackwardWeightCacheBudget(bytes: number): void {
  budgetBytes = Math.max(0, bytes);
}

export function backwardWeightCacheUsage(): { usedBytes: number; budgetBytes: number } {
  return { usedBytes, budgetBytes };
}

/** [rows, cols] → [cols, rows] for 16-bit data, in 64×64 tiles. */
function transpose16(src: Uint16Array, rows: number, cols: number): Uint16Array {
  const out = new Uint16Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        const o = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = src[o + c];
      }
    }
  }
  return out;
}

function transposedWeight(w: WeightMatrix): WeightMatrix | null {
  const hit = transposed.get(w);
  if (hit) return hit;
  const bytes = w.data.byteLength;
  if (usedBytes + bytes > budgetBytes) return null;
  const t: WeightMatrix = {
    rows: w.cols,
    cols: w.rows,
    dtype: w.dtype,
    data: transpose16(w.data as Uint16Array, w.rows, w.cols),
  };
  transposed.set(w, t);
  usedBytes += bytes;
  return t;
}

export async function linearBackwardInput(
  kernels: Kernels,
  dy: Float32Array,
  m: number,
  w: WeightMatrix,
): Promise<Float32Array> {
  const { rows: out, cols: inp } = w;
  if (dy.length !== m * out)
    throw new Error(`linearBackwardInput: gradient length ${dy.length} != ${m}x${out}`);
  if (w.dtype === "F32") return kernels.bmm(dy, w.data as Float32Array, 1, m, out, inp, false);
  // int8: the dequantised matrix, block by block (the gradient of the model the forward ran; no cache).
  const wt = w.dtype === "Q8" ? null : transposedWeight(w);
  if (wt) return kernels.linear(dy, m, wt);
  const blockRows = Math.max(1, Math.min(out, Math.floor(BLOCK_FLOATS / Math.max(1, inp))));
  const wf = new Float32Array(blockRows * inp);
  const dyb = new Float32Array(m * blockRows);
  let dx: Float32Array | null = null;
  for (let r0 = 0; r0 < out; r0 += blockRows) {
    const nb = Math.min(blockRows, out - r0);
    const wv = wf.subarray(0, nb * inp);
    weightRowsInto(w, r0, nb, wv);
    let dyv: Float32Array;
    if (nb === out) dyv = dy;
    else {
      dyv = dyb.subarray(0, m * nb);
      for (let i = 0; i < m; i++) dyv.set(dy.subarray(i * out + r0, i * out + r0 + nb), i * nb);
    }
    const part = await kernels.bmm(dyv, wv, 1, m, nb, inp, false);
    if (dx === null) dx = part;
    else for (let i = 0; i < dx.length; i++) dx[i] += part[i];
  }
  return dx ?? new Float32Array(m * inp);
}

/**
 * Backward of a Linear layer with respect to its weight and bias (training): dW += dyᵀ·x, db += Σ_rows dy.
 * dy [m, out], x [m, in].
 */
export async function linearBackwardWeight(
  kernels: Kernels,
  dy: Float32Array,
  x: Float32Array,
  m: number,
  w: WeightMatrix,
  bias: Float32Array | null,
  grads: WeightGradients,
): Promise<void> {
  const out = w.rows;
  const inp = w.cols;
  const dW = await kernels.matmulTransA(dy, x, m, out, inp);
  const gW = grads.of(w);
  for (let i = 0; i < gW.length; i++) gW[i] += dW[i];
  if (bias) {
    const gB = grads.of(bias);
    for (let r = 0; r < m; r++) {
      const o = r * out;
      for (let c = 0; c < out; c++) gB[c] += dy[o + c];
    }
  }
}
