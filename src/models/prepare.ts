/**
 * Readies a loaded model's weights on the kernels that will run it, before its first question: with
 * `--weights int8`, onnxruntime pre-packs every int8 matrix into its session (~5 ns per parameter, ~30 s for a
 * 7B), a cost of loading that would otherwise land on the first prefill. Nothing to do for weights as stored.
 */
import { releaseHostCodes } from "../kernels/quantize.js";
import type { Kernels } from "../kernels/types.js";
import type { VisionLanguageModel } from "./types.js";

export async function prepareWeights(
  model: VisionLanguageModel,
  kernels: Kernels,
  opts: {
    onProgress?: (stage: string, done: number, total: number) => void;
    /**
     * The process will only run forward passes (`lvlm-interpret trace`): once onnxruntime holds
     * an int8 matrix, its TypeScript copy is freed (~6.5 GB at 7B). Only kernels that run every int8
     * product in onnxruntime ("ort", "auto") can take this.
     */
    forwardOnly?: boolean;
  } = {},
): Promise<void> {
  const matrices = model.weights.quantisedMatrices();
  if (!kernels.prepare || matrices.length === 0) return;
  for (let i = 0; i < matrices.length; i++) {
    opts.onProgress?.("prepare", i, matrices.length);
    await kernels.prepare(matrices[i]);
    if (opts.forwardOnly && kernels.name === "ort") releaseHostCodes(matrices[i]);
  }
  opts.onProgress?.("prepare", matrices.length, matrices.length);
}
