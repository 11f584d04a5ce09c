/**
 * One interface for matmul-class work. Two implementations: "ts" (plain TypeScript reference) and "ort"
 * (onnxruntime-node graphs built in code). Element-wise work stays outside the kernels.
 */

import type { KernelChoice } from "../contracts/lists.js";

/** A weight matrix in Hugging Face Linear layout [out, in] (y = x·Wᵀ + b). 16-bit weights stay 16-bit. */
export interface WeightMatrix {
  rows: number; // out_features
  cols: number; // in_features
  dtype: "F32" | "F16" | "BF16";
  /** F32: Float32Array; F16/BF16: Uint16Array of raw bits. */
  data: Float32Array | Uint16Array;
}

export interface Kernels {
  /** The implementation ("auto" is a choice between them, not one). */
  readonly name: Exclude<KernelChoice, "auto">;
  /** y[m, w.rows] = x[m, w.cols] · wᵀ (+ bias). */
  linear(x: Float32Array, m: number, w: WeightMatrix, bias?: Float32Array | null): Promise<Float32Array>;
  /**
   * Batched matmul: out[b, m, n] = a[b, m, k] · B[b] where B[b] is [k, n], or [n, k] read transposed when
   * transB. Used for attention scores (q·kᵀ) and probabilities·values.
   */
  bmm(
    a: Float32Array,
    b: Float32Array,
    batch: number,
    m: number,
    k: number,
    n: number,
    transB: boolean,
  ): Promise<Float32Array>;
  /**
   * out[m, n] = aᵀ·b for a [k, m] and b [k, n]: products that sum over rows, such as weight gradients dyᵀ·x
   * and attention's Pᵀ·dctx, without transposing a first.
   */
  matmulTransA(a: Float32Array, b: Float32Array, k: number, m: number, n: number): Promise<Float32Array>;
  /** Release native resources (sessions). */
  dispose(): Promise<void>;
}

export type { KernelChoice };
