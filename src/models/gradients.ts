/**
 * Gradients of weights, for training: accumulated per weight array (keyed by the array the block reads its
 * weight from), so every block's backward adds to the same place whatever its caller. Relevancy never passes
 * one, and then no weight gradient is computed.
 */
import type { WeightMatrix } from "../kernels/types.js";

export class WeightGradients {
  private readonly map = new Map<Float32Array | Uint16Array, Float32Array>();

  /** The gradient array of a weight (zero-initialised on first use). */
  of(weight: Float32Array | WeightMatrix): Float32Array {
    const key = weight instanceof Float32Array ? weight : weight.data;
    if (!(key instanceof Float32Array))
      throw new Error("weight gradients need float32 weights (train in F32)");
    let g = this.map.get(key);
    if (!g) {
      g = new Float32Array(key.length);
      this.map.set(key, g);
    }
    return g;
  }

  get(weight: Float32Array): Float32Array | undefined {
    return this.map.get(weight);
  }

  zero(): void {
    for (const g of this.map.values()) g.fill(0);
  }
}
