/**
 * A Kernels wrapper that adds up the wall time spent inside kernel calls, so a stage's time splits into
 * "native" (kernel calls and whole-layer graphs, incl. their per-call overhead) and "the rest" (element-wise
 * work and copies in JS). `useBlocks: false` hides the whole-layer graphs, so the per-op path can be timed
 * side by side with them in one process.
 */
import type {
  BlockKernels,
  DecoderBackwardBlockInput,
  DecoderBlockInput,
  Kernels,
  VisionBlockBackwardInput,
  VisionBlockInput,
  WeightMatrix,
} from "../src/kernels/types.js";

export class TimedKernels implements Kernels {
  readonly name: "ts" | "ort";
  /** Milliseconds spent in kernel calls and their count since the last `reset()`. */
  ms = 0;
  calls = 0;
  readonly blocks?: BlockKernels;
  constructor(
    readonly inner: Kernels,
    useBlocks = true,
  ) {
    this.name = inner.name;
    const b = inner.blocks;
    if (b && useBlocks) {
      this.blocks = {
        visionLayer: (a: VisionBlockInput) => this.time(() => b.visionLayer(a)),
        visionLayerBackward: (a: VisionBlockBackwardInput) => this.time(() => b.visionLayerBackward(a)),
        decoderLayer: (a: DecoderBlockInput) => this.time(() => b.decoderLayer(a)),
        decoderLayerBackward: (a: DecoderBackwardBlockInput) => this.time(() => b.decoderLayerBackward(a)),
        // Readying is loading, not a kernel call: untimed.
        prepareDecoderLayer: b.prepareDecoderLayer?.bind(b),
      };
    }
  }

  reset(): void {
    this.ms = 0;
    this.calls = 0;
  }

  private async time<T>(p: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await p();
    } finally {
      this.ms += performance.now() - t0;
      this.calls++;
    }
  }

  linear(x: Float32Array, m: number, w: WeightMatrix, bias?: Float32Array | null): Promise<Float32Array> {
    return this.time(() => this.inner.linear(x, m, w, bias));
  }

  bmm(
    a: Float32Array,
    b: Float32Array,
    batch: number,
    m: number,
    k: number,
    n: number,
    transB: boolean,
  ): Promise<Float32Array> {
    return this.time(() => this.inner.bmm(a, b, batch, m, k, n, transB));
  }

  matmulTransA(a: Float32Array, b: Float32Array, k: number, m: number, n: number): Promise<Float32Array> {
    return this.time(() => this.inner.matmulTransA(a, b, k, m, n));
  }

  /** Not timed as a kernel call: the bench times the preparation of a model's weights on its own. */
  async prepare(w: WeightMatrix): Promise<void> {
    await this.inner.prepare?.(w);
  }

  dispose(): Promise<void> {
    return this.inner.dispose();
  }
}
