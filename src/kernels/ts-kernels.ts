/**
 * Plain TypeScript reference kernels. Correctness first; the loops are blocked just enough to be
 * cache-friendly (a block of weight rows stays in L2 while every activation row streams past it), and
 * 16-bit weights are widened to f32 one block of rows at a time into a reusable scratch buffer.
 *
 * Accumulation: dot products (`linear`, `bmm` with transB) accumulate in a JS number (float64) and are
 * rounded to f32 once when stored; `bmm` without transB uses the classic i-k-j order and accumulates
 * straight into the f32 output row, like an f32 BLAS. Both are at least as accurate as an f32 BLAS, so the
 * tests can compare every implementation against this one with an f32-sized tolerance.
 */
import { Q8_BLOCK, q8Blocks, weightRowsInto } from "./quantize.js";
import type { Kernels, WeightMatrix } from "./types.js";

/** Floats of weight rows widened/kept hot per block (~256 KiB): sized for a typical L2. */
const BLOCK_FLOATS = 64 * 1024;

export class TsKernels implements Kernels {
  readonly name = "ts" as const;
  private scratch = new Float32Array(0);

  async linear(
    x: Float32Array,
    m: number,
    w: WeightMatrix,
    bias?: Float32Array | null,
  ): Promise<Float32Array> {
    return this.linearSync(x, m, w, bias);
  }

  /** Synchronous body of `linear` (used directly by the auto router and the benchmarks). */
  linearSync(x: Float32Array, m: number, w: WeightMatrix, bias?: Float32Array | null): Float32Array {
    checkLinear(x, m, w, bias);
    const n = w.rows;
    const k = w.cols;
    const y = new Float32Array(m * n);
    if (m === 0 || n === 0) return y;
    // Rows per block: a multiple of 4 (the unroll), at least 4, within BLOCK_FLOATS when k allows.
    const rowsPerBlock = Math.max(4, Math.floor(BLOCK_FLOATS / Math.max(k, 1) / 4) * 4);
    let wData: Float32Array;
    let wBase: number;
    if (w.dtype === "F32") {
      wData = w.data as Float32Array;
    } else {
      const need = Math.min(rowsPerBlock, n) * k;
      if (this.scratch.length < need) this.scratch = new Float32Array(need);
      wData = this.scratch;
    }
    for (let j0 = 0; j0 < n; j0 += rowsPerBlock) {
      const j1 = Math.min(n, j0 + rowsPerBlock);
      if (w.dtype === "F32") {
        wBase = j0 * k;
      } else {
        weightRowsInto(w, j0, j1 - j0, wData);
        wBase = 0;
      }
      for (let i = 0; i < m; i++) {
        dotRows(x, i * k, wData, wBase, k, j1 - j0, y, i * n + j0, bias ?? null, j0);
      }
    }
    return y;
  }

  async bmm(
    a: Float32Array,
    b: Float32Array,
    batch: number,
    m: number,
    k: number,
    n: number,
    transB: boolean,
  ): Promise<Float32Array> {
    return this.bmmSync(a, b, batch, m, k, n, transB);
  }

  /** Synchronous body of `bmm`. */
  bmmSync(
    a: Float32Array,
    b: Float32Array,
    batch: number,
    m: number,
    k: number,
    n: number,
    transB: boolean,
  ): Float32Array {
    checkBmm(a, b, batch, m, k, n);
    const out = new Float32Array(batch * m * n);
    for (let p = 0; p < batch; p++) {
      const aOff = p * m * k;
      const bOff = p * k * n;
      const oOff = p * m * n;
      if (transB) {
        // B[p] is [n, k]: every output is a dot product of two contiguous rows.
        for (let i = 0; i < m; i++) dotRows(a, aOff + i * k, b, bOff, k, n, out, oOff + i * n, null, 0);
      } else {
        // B[p] is [k, n]: i-k-j, accumulating into the f32 output row.
        for (let i = 0; i < m; i++) {
          const o = oOff + i * n;
          for (let kk = 0; kk < k; kk++) {
            const av = a[aOff + i * k + kk];
            const bRow = bOff + kk * n;
            for (let j = 0; j < n; j++) out[o + j] += av * b[bRow + j];
          }
        }
      }
    }
    return out;
  }

  async matmulTransA(
    a: Float32Array,
    b: Float32Array,
    k: number,
    m: number,
    n: number,
  ): Promise<Float32Array> {
    checkMatmulTransA(a, b, k, m, n);
    const out = new Float32Array(m * n);
    // kk-i-j: rows of a and b are read contiguously; each output row accumulates in f32 like bmm's.
    for (let kk = 0; kk < k; kk++) {
      const aRow = kk * m;
      const bRow = kk * n;
      for (let i = 0; i < m; i++) {
        const av = a[aRow + i];
        const o = i * n;
        for (let j = 0; j < n; j++) out[o + j] += av * b[bRow + j];
      }
    }
    return out;
  }

  async dispose(): Promise<void> {
    this.scratch = new Float32Array(0);
  }
}

/**
 * out[outOff + j] = dot(x[xOff .. xOff+k), w[wOff + j*k .. +k)) (+ bias[biasOff + j]) for j in [0, rows).
 * Four weight rows at a time so each x element is loaded once per four products.
 */
function dotRows(
  x: Float32Array,
  xOff: number,
  w: Float32Array,
  wOff: number,
  k: number,
  rows: number,
  out: Float32Array,
  outOff: number,
  bias: Float32Array | null,
  biasOff: number,
): void {
  let j = 0;
  for (; j + 4 <= rows; j += 4) {
    const r0 = wOff + j * k;
    const r1 = r0 + k;
    const r2 = r1 + k;
    const r3 = r2 + k;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    for (let t = 0; t < k; t++) {
      const xv = x[xOff + t];
      s0 += xv * w[r0 + t];
      s1 += xv * w[r1 + t];
      s2 += xv * w[r2 + t];
      s3 += xv * w[r3 + t];
    }
    if (bias) {
      s0 += bias[biasOff + j];
      s1 += bias[biasOff + j + 1];
      s2 += bias[biasOff + j + 2];
      s3 += bias[biasOff + j + 3];
    }
    out[outOff + j] = s0;
    out[outOff + j + 1] = s1;
    out[outOff + j + 2] = s2;
    out[outOff + j + 3] = s3;
  }
  for (; j < rows; j++) {
    const r = wOff + j * k;
    let s = 0;
    for (let t = 0; t < k; t++) s += x[xOff + t] * w[r + t];
    if (bias) s += bias[biasOff + j];
    out[outOff + j] = s;
  }
}

/** Shape checks shared by every implementation (one-line errors naming the mismatch). */
export function checkLinear(x: Float32Array, m: number, w: WeightMatrix, bias?: Float32Array | null): void {
  if (!Number.isInteger(m) || m < 0) throw new Error(`linear: bad row count m=${m}`);
  // Negative or fractional sizes could still multiply to a matching length ((-1)·(-1) = 1).
  if (!Number.isInteger(w.rows) || w.rows < 0 || !Number.isInteger(w.cols) || w.cols < 0) {
    throw new Error(`linear: bad weight shape ${w.rows}x${w.cols}`);
  }
  if (w.dtype === "Q8") {
    const blocks = w.rows * q8Blocks(w.cols);
    // No codes: released once onnxruntime held them (quantize.ts); the TypeScript product refuses such a matrix.
    const codes = w.data.length === 0 || w.data.length === blocks * Q8_BLOCK;
    if (!(w.data instanceof Uint8Array) || !codes || w.scales?.length !== blocks)
      throw new Error(`linear: int8 weight ${w.rows}x${w.cols} needs ${blocks} blocks of codes and scales`);
  } else {
    if (w.data.length !== w.rows * w.cols) {
      throw new Error(`linear: weight data length ${w.data.length} != ${w.rows}x${w.cols}`);
    }
    if ((w.dtype === "F32") !== w.data instanceof Float32Array) {
      throw new Error(`linear: weight dtype ${w.dtype} does not match its ${w.data.constructor.name} data`);
    }
  }
  if (x.length !== m * w.cols) throw new Error(`linear: input length ${x.length} != m*in = ${m}x${w.cols}`);
  if (bias && bias.length !== w.rows) throw new Error(`linear: bias length ${bias.length} != out ${w.rows}`);
}

export function checkBmm(
  a: Float32Array,
  b: Float32Array,
  batch: number,
  m: number,
  k: number,
  n: number,
): void {
  for (const [name, v] of [
    ["batch", batch],
    ["m", m],
    ["k", k],
    ["n", n],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`bmm: bad ${name}=${v}`);
  }
  if (a.length !== batch * m * k) throw new Error(`bmm: a length ${a.length} != ${batch}x${m}x${k}`);
  if (b.length !== batch * k * n) throw new Error(`bmm: b length ${b.length} != ${batch}x${k}x${n}`);
}

export function checkMatmulTransA(a: Float32Array, b: Float32Array, k: number, m: number, n: number): void {
  for (const [name, v] of [
    ["k", k],
    ["m", m],
    ["n", n],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`matmulTransA: bad ${name}=${v}`);
  }
  if (a.length !== k * m) throw new Error(`matmulTransA: a length ${a.length} != ${k}x${m}`);
  if (b.length !== k * n) throw new Error(`matmulTransA: b length ${b.length} != ${k}x${n}`);
}
