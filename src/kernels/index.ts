/**
 * Kernel selection. "ts" and "ort" force one implementation; "auto" sends calls below a FLOP threshold to
 * the TypeScript kernels (no per-call overhead) and everything larger to onnxruntime.
 */
import { KERNEL_CHOICES } from "../contracts/lists.js";
import { OrtKernels, type OrtKernelsOptions } from "./ort-kernels.js";
import { TsKernels } from "./ts-kernels.js";
import type { BlockKernels, KernelChoice, Kernels, WeightMatrix } from "./types.js";

export { OrtKernels } from "./ort-kernels.js";
export { TsKernels } from "./ts-kernels.js";
export type { BlockKernels, KernelChoice, Kernels, WeightMatrix } from "./types.js";

export { KERNEL_CHOICES };

/**
 * Calls doing fewer than this many FLOPs (2·batch·m·k·n) go to the TS kernels under "auto". Measured on a
 * 2-core x86 VM (`node dist/bench/kernels-main.js --crossover`): an onnxruntime call has ~11–17 µs of fixed
 * cost (N-API, tensor wrapping, thread hand-off, promise) while the TS kernels run ~1.1–1.5 GFLOPS on small
 * shapes (less with 16-bit weights, which they widen per call), so the two meet at ~1.5–2.5·10^4 FLOPs:
 * linear 1×64×64 (8 kFLOP) ts 7 µs vs ort 12–16 µs; 4×64×64 (33 kFLOP) ts 22–25 µs vs ort 11–18 µs.
 * Above that ORT's MLAS sgemm wins by up to ~100×. At 2^14 a wrong pick costs a few µs either way.
 */
export const AUTO_THRESHOLD_FLOPS = 1 << 14;

export function parseKernelChoice(s: string): KernelChoice {
  const v = s.trim().toLowerCase();
  if ((KERNEL_CHOICES as readonly string[]).includes(v)) return v as KernelChoice;
  throw new Error(`invalid kernel choice "${s}" (expected one of: ${KERNEL_CHOICES.join(", ")})`);
}

/**
 * Routes each call by size. `name` is "ort" because onnxruntime does all the substantial work and owns the
 * native resources; the TS kernels only take calls too small to amortise ORT's per-call overhead.
 */
export class AutoKernels implements Kernels {
  readonly name = "ort" as const;
  constructor(
    readonly ts: TsKernels,
    readonly ort: OrtKernels,
    readonly thresholdFlops: number = AUTO_THRESHOLD_FLOPS,
  ) {}

  /** Whole layers always go to onnxruntime: they are never small enough for the TS kernels to win. */
  get blocks(): BlockKernels {
    return this.ort.blocks;
  }

  /** Which implementation a call of this size goes to. */
  route(m: number, k: number, n: number, batch = 1): Kernels {
    return 2 * batch * m * k * n < this.thresholdFlops ? this.ts : this.ort;
  }

  linear(x: Float32Array, m: number, w: WeightMatrix, bias?: Float32Array | null): Promise<Float32Array> {
    // An int8 weight always goes to onnxruntime, whatever the size: its int8 product rounds the input too,
    // and a model's numbers should not depend on which calls happen to be small.
    if (w.dtype === "Q8") return this.ort.linear(x, m, w, bias);
    return this.route(m, w.cols, w.rows).linear(x, m, w, bias);
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
    return this.route(m, k, n, batch).bmm(a, b, batch, m, k, n, transB);
  }

  matmulTransA(a: Float32Array, b: Float32Array, k: number, m: number, n: number): Promise<Float32Array> {
    return this.route(m, k, n).matmulTransA(a, b, k, m, n);
  }

  /** int8 weights always go to onnxruntime (see `linear`), so it readies them. */
  prepare(w: WeightMatrix): Promise<void> {
    return this.ort.prepare(w);
  }

  async dispose(): Promise<void> {
    await Promise.all([this.ts.dispose(), this.ort.dispose()]);
  }
}

/** `ort` options reach ORT's sessions (e.g. one thread per process when several processes share the cores). */
export async function createKernels(choice: KernelChoice, ort: OrtKernelsOptions = {}): Promise<Kernels> {
  switch (choice) {
    case "ts":
      return new TsKernels();
    case "ort":
      return OrtKernels.create(ort);
    case "auto":
      return new AutoKernels(new TsKernels(), await OrtKernels.create(ort));
    default:
      throw new Error(
        `invalid kernel choice "${String(choice)}" (expected one of: ${KERNEL_CHOICES.join(", ")})`,
      );
  }
}
