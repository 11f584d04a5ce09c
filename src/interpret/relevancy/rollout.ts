/**
 * The rollout math of relevancy maps: Chefer's CAMs from attention gradients, row-vector and full-matrix
 * rollouts, LVLM-Interpret's display normalisation, and the initial ViT maps of `all` / `all_v2` and the chain
 * (the matrix forms the tests compare the row-vector computation with).
 */
import type { Kernels } from "../../kernels/types.js";

/** A square CAM stored with a row stride (incremental CAMs live in a buffer sized for the longest step). */
export interface Cam {
  data: Float32Array;
  stride: number;
}

/**
 * Writes mean_heads(max(0, dP ⊙ P)) for a window of query rows into `cam`: dP and P are
 * [heads, rows, cols]; window row i (i ≥ fromRow) lands in cam row rowOffset + i − fromRow, columns
 * 0 … cols−1.
 */
export function camInto(
  cam: Cam,
  rowOffset: number,
  dProbs: Float32Array,
  probs: Float32Array,
  heads: number,
  rows: number,
  cols: number,
  fromRow = 0,
): void {
  const { data, stride } = cam;
  const acc = new Float64Array(cols);
  for (let i = fromRow; i < rows; i++) {
    acc.fill(0);
    for (let h = 0; h < heads; h++) {
      const o = (h * rows + i) * cols;
      for (let j = 0; j < cols; j++) {
        const v = dProbs[o + j] * probs[o + j];
        if (v > 0) acc[j] += v;
      }
    }
    const dst = (rowOffset + i - fromRow) * stride;
    for (let j = 0; j < cols; j++) data[dst + j] = acc[j] / heads;
  }
}

/** cam = mean_heads(max(0, dP ⊙ P)) as a new [rows, cols] array. */
export function camFromGrad(
  dProbs: Float32Array,
  probs: Float32Array,
  heads: number,
  rows: number,
  cols: number,
): Float32Array {
  const data = new Float32Array(rows * cols);
  camInto({ data, stride: cols }, 0, dProbs, probs, heads, rows, cols);
  return data;
}

/**
 * Row-vector rollout: u · (I + cam_{L−1}) ⋯ (I + cam_0), i.e. u ← u + u·cam_l for l = L−1 … 0, over the
 * leading n×n block of each CAM. With u = e_p this is row p of the rollout R.
 */
export function rolloutLeft(u: ArrayLike<number>, cams: Cam[], n: number): Float64Array {
  const v = Float64Array.from({ length: n }, (_, i) => u[i] ?? 0);
  const add = new Float64Array(n);
  for (let l = cams.length - 1; l >= 0; l--) {
    const { data, stride } = cams[l];
    add.fill(0);
    for (let i = 0; i < n; i++) {
      const vi = v[i];
      if (vi === 0) continue;
      const o = i * stride;
      for (let j = 0; j < n; j++) add[j] += vi * data[o + j];
    }
    for (let j = 0; j < n; j++) v[j] += add[j];
  }
  return v;
}

/** Row p of the rollout R over the leading (p+1)×(p+1) blocks. */
export function rolloutRow(cams: Cam[], p: number): Float32Array {
  const e = new Float64Array(p + 1);
  e[p] = 1;
  return Float32Array.from(rolloutLeft(e, cams, p + 1));
}

/** Full rollout matrix R = (I + cam_{L−1}) ⋯ (I + cam_0) · R0 (R0 = I by default), n×n, via the kernels. */
export async function rolloutMatrix(
  kernels: Kernels,
  cams: Cam[],
  n: number,
  r0?: Float32Array,
): Promise<Float32Array> {
  let R: Float32Array;
  if (r0) R = r0.slice();
  else {
    R = new Float32Array(n * n);
    for (let i = 0; i < n; i++) R[i * n + i] = 1;
  }
  const c = new Float32Array(n * n);
  for (const cam of cams) {
    for (let i = 0; i < n; i++) c.set(cam.data.subarray(i * cam.stride, i * cam.stride + n), i * n);
    const cr = await kernels.bmm(c, R, 1, n, n, n, false);
    for (let i = 0; i < R.length; i++) R[i] += cr[i];
  }
  return R;
}

/**
 * LVLM-Interpret's display normalisation (`handle_residual`, eq. 8–9): A = R − I; every row divided by its
 * sum (rows summing to 0 stay unchanged); + I. R is n×n.
 */
export function handleResidual(R: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) out.set(normalizeRow(R.subarray(i * n, (i + 1) * n), i), i * n);
  return out;
}

/**
 * `handleResidual` of one row: row p of R (its diagonal entry at index p) → row p of the normalised map. `n`
 * leading entries are read (a causal row's first p + 1: the later ones are the future's), without a copy.
 */
export function normalizeRow(row: ArrayLike<number>, p: number, n = row.length): Float32Array {
  let sum = 0;
  for (let j = 0; j < n; j++) sum += row[j] - (j === p ? 1 : 0);
  const div = sum === 0 ? 1 : sum;
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) out[j] = (row[j] - (j === p ? 1 : 0)) / div + (j === p ? 1 : 0);
  return out;
}

/** Initial ViT map of `all`: [[1, 0], [0, R_llm[img, img]]] (S×S, S = P + 1; img = the image positions). */
export function allInitialMap(R: Float32Array, n: number, imagePositions: readonly number[]): Float32Array {
  const P = imagePositions.length;
  const S = P + 1;
  const r0 = new Float32Array(S * S);
  r0[0] = 1;
  for (let i = 0; i < P; i++) {
    for (let j = 0; j < P; j++) r0[(i + 1) * S + j + 1] = R[imagePositions[i] * n + imagePositions[j]];
  }
  return r0;
}

/** Initial ViT map of `all_v2`: I_S with r added to row 0 and column 0 beyond the corner. */
export function allV2InitialMap(r: ArrayLike<number>): Float32Array {
  const S = r.length + 1;
  const r0 = new Float32Array(S * S);
  for (let i = 0; i < S; i++) r0[i * S + i] = 1;
  for (let i = 0; i < r.length; i++) {
    r0[i + 1] += r[i];
    r0[(i + 1) * S] += r[i];
  }
  return r0;
}

/**
 * The chain map from the matrices: r_img · R_v restricted to patch rows/columns. `vitTokenOf(i)` is the ViT
 * token of image token i; `cls` the CLS index or −1.
 */
export function chainFromMatrix(
  rImg: ArrayLike<number>,
  Rv: Float32Array,
  S: number,
  vitTokenOf: (i: number) => number,
  cls: number,
): Float32Array {
  const patches = Array.from({ length: S }, (_, j) => j).filter((j) => j !== cls);
  const out = new Float32Array(patches.length);
  for (let i = 0; i < rImg.length; i++) {
    const r = vitTokenOf(i);
    if (r === cls) continue;
    patches.forEach((c, j) => {
      out[j] += rImg[i] * Rv[r * S + c];
    });
  }
  return out;
}
