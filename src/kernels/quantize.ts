/**
 * Weight-only int8 quantisation (the opt-in `--weights int8`), in the layout onnxruntime's MatMulNBits
 * (com.microsoft, bits = 8) reads: each row of W [out, in] in blocks of Q8_BLOCK along `in`, one float scale
 * per block, codes stored unsigned around the zero point 128. w ≈ (code − 128) · scale, with
 * scale = max|w in block| / 127 (symmetric: 0 stays exactly 0). A last partial block is padded with code 128.
 *
 * The dequantised matrix is the model the quantised path computes with: the TypeScript kernels multiply by it
 * and the backward passes (relevancy) differentiate it, so gradients belong to the same model as the forward.
 */
import { WEIGHT_FORMATS, type WeightFormat } from "../contracts/lists.js";
import { bf16ToF32Into, f16ToF32Into } from "../tensor/half.js";
import type { WeightMatrix } from "./types.js";

/** Elements per quantisation block along a row. */
export const Q8_BLOCK = 32;
/** Stored code of the value 0. */
export const Q8_ZERO = 128;

/** Blocks per row of a matrix with `cols` columns. */
export function q8Blocks(cols: number): number {
  return Math.ceil(cols / Q8_BLOCK);
}

export type { WeightFormat };

export function parseWeightFormat(s: string): WeightFormat {
  const v = s.trim().toLowerCase();
  if ((WEIGHT_FORMATS as readonly string[]).includes(v)) return v as WeightFormat;
  throw new Error(`invalid weight format "${s}" (expected one of: ${WEIGHT_FORMATS.join(", ")})`);
}

/** Rows r0 … r0+count−1 of a float or 16-bit matrix as float32 into `out`. */
function denseRowsInto(w: WeightMatrix, r0: number, count: number, out: Float32Array): void {
  const from = r0 * w.cols;
  const n = count * w.cols;
  if (w.dtype === "F32") out.set((w.data as Float32Array).subarray(from, from + n));
  else if (w.dtype === "BF16") bf16ToF32Into(w.data as Uint16Array, out, from, n);
  else if (w.dtype === "F16") f16ToF32Into(w.data as Uint16Array, out, from, n);
  else throw new Error("denseRowsInto: the matrix is already quantised");
}

/** An F32/F16/BF16 matrix quantised to int8 blocks (see the module comment). */
export function quantizeInt8(w: WeightMatrix): WeightMatrix {
  if (w.dtype === "Q8") return w;
  return quantizeRowsInt8(w.rows, w.cols, (r0, count, out) => denseRowsInto(w, r0, count, out));
}

let chunkElements = 1 << 20;

/** Rows quantised per call of `quantizeRowsInt8`'s source: ~1 Mi elements, whatever the row length. */
export function quantizeChunkRows(cols: number): number {
  return Math.max(1, Math.floor(chunkElements / Math.max(1, cols)));
}

/** Sets the elements per chunk and returns the previous value; tests set it small to read in several chunks. */
export function setQuantizeChunkElements(elements: number): number {
  const previous = chunkElements;
  chunkElements = Math.max(1, Math.floor(elements));
  return previous;
}

/**
 * A [rows, cols] matrix quantised to int8 blocks from a source that writes rows r0 … r0+count−1 as float32
 * into `out` ([count, cols]; count ≤ quantizeChunkRows(cols)): the float matrix is never whole, so a loader
 * can read a checkpoint's tensor chunk by chunk straight into the quantiser.
 */
export function quantizeRowsInt8(
  rows: number,
  cols: number,
  source: (r0: number, count: number, out: Float32Array) => void,
): WeightMatrix {
  const nb = q8Blocks(cols);
  const codes = new Uint8Array(rows * nb * Q8_BLOCK).fill(Q8_ZERO);
  const scales = new Float32Array(rows * nb);
  const chunk = quantizeChunkRows(cols);
  const row = new Float32Array(Math.min(rows, chunk) * cols);
  const inv = new Float64Array(nb);
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const count = Math.min(chunk, rows - r0);
    source(r0, count, row.subarray(0, count * cols));
    for (let r = 0; r < count; r++) {
      const base = r * cols;
      const first = (r0 + r) * nb;
      // Two passes over the row (block maxima, then codes): tight loops V8 compiles well.
      for (let b = 0; b < nb; b++) {
        const c1 = base + Math.min(cols, (b + 1) * Q8_BLOCK);
        // No branch on the sign: real weights' signs are random, and such a branch mispredicts half the time
        // (10–12 ns per parameter against 7 with random-sign bf16 values).
        let amax = 0;
        for (let c = base + b * Q8_BLOCK; c < c1; c++) amax = Math.max(amax, Math.abs(row[c]));
        const s = Math.fround(amax / 127);
        scales[first + b] = s;
        inv[b] = s === 0 ? 0 : 1 / s;
      }
      // |w| ≤ amax = 127·s up to s's float rounding (a relative 6e-8), so |w/s| < 127.5: code + 0.5 lies in
      // (0.5, 255.5), where truncation is Math.round's rounding (half up) without its cost per element.
      const out = first * Q8_BLOCK - base;
      for (let b = 0; b < nb; b++) {
        const k = inv[b];
        const c1 = base + Math.min(cols, (b + 1) * Q8_BLOCK);
        for (let c = base + b * Q8_BLOCK; c < c1; c++) codes[out + c] = (row[c] * k + (Q8_ZERO + 0.5)) | 0;
      }
    }
  }
  return { rows, cols, dtype: "Q8", data: codes, scales };
}

/**
 * Frees the TypeScript copy of an int8 matrix's codes once onnxruntime holds its own pre-packed one (a process
 * that only runs forward passes: ~1 byte per parameter, 6.5 GB for a 7B). Products then go through
 * onnxruntime only; the TypeScript kernels and the backward refuse the matrix (`checkHostCodes`).
 */
export function releaseHostCodes(w: WeightMatrix): void {
  if (w.dtype === "Q8") w.data = new Uint8Array(0);
}

/** Throws when an int8 matrix's codes were released (see `releaseHostCodes`). */
export function checkHostCodes(w: WeightMatrix): void {
  if (w.dtype === "Q8" && w.data.length === 0)
    throw new Error(
      "int8 weights loaded for forward passes only (their codes live in onnxruntime alone); " +
        "load the model again to compute relevancy",
    );
}

/** Rows r0 … r0+count−1 of an int8 matrix, dequantised to float32 into `out` ([count, cols]). */
export function dequantizeRowsInto(w: WeightMatrix, r0: number, count: number, out: Float32Array): void {
  checkHostCodes(w);
  const codes = w.data as Uint8Array;
  const scales = w.scales as Float32Array;
  const { cols } = w;
  const nb = q8Blocks(cols);
  for (let r = 0; r < count; r++) {
    const o = r * cols;
    for (let b = 0; b < nb; b++) {
      const at = (r0 + r) * nb + b;
      const s = scales[at];
      const c0 = b * Q8_BLOCK;
      const c1 = Math.min(cols, c0 + Q8_BLOCK);
      const src = at * Q8_BLOCK - c0;
      for (let c = c0; c < c1; c++) out[o + c] = (codes[src + c] - Q8_ZERO) * s;
    }
  }
}

/** Rows of any weight matrix as float32 (16-bit widened, int8 dequantised) into `out`. */
export function weightRowsInto(w: WeightMatrix, r0: number, count: number, out: Float32Array): void {
  if (w.dtype === "Q8") dequantizeRowsInto(w, r0, count, out);
  else denseRowsInto(w, r0, count, out);
}
