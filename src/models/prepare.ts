/**
 * Readies a loaded model's weights on the kernels that will run it, before its first question: with
 * `--weights int8`, onnxruntime pre-packs every int8 matrix into its session (~5 ns per parameter, ~30 s for a
 * 7B), a cost of loading that would otherwise land on the first prefill. Nothing to do for weights as stored.
 */
import type { Kernels } from "../kernels/types.js";
import type { VisionLanguageModel } from "./types.js";

export async function prepareWeights(
  model: VisionLanguageModel,
  kernels: Kernels,
  onProgress?: (stage: string, done: number, total: number) => void,
): Promise<void> {
  const matrices = model.weights.quantisedMatrices();
  if (!kernels.prepare || matrices.length === 0) return;
  for (let i = 0; i < matrices.length; i++) {
    onProgress?.("prepare", i, matrices.length);
    await kernels.prepare(matrices[i]);
  }
  onProgress?.("prepare", matrices.length, matrices.length);
}
