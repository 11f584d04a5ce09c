/**
 * Readies a loaded model's weights on the kernels that will run it, before its first question: with
 * `--weights int8`, onnxruntime pre-packs each int8 decoder layer into its one graph and any other int8 matrix
 * into a session of its own (~4 ns per parameter, ~25 s for a 7B), a cost of loading that would otherwise land
 * on the first prefill. Nothing to do for weights as stored.
 */
import { releaseHostCodes } from "../kernels/quantize.js";
import type { Kernels, WeightMatrix } from "../kernels/types.js";
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
  if (matrices.length === 0) return;
  const progress = (done: number, total: number) => opts.onProgress?.("prepare", done, total);
  // onnxruntime's kernels ("ort", and "auto" which sends every int8 product there) hold each matrix once
  // readied: a forward-only process frees the TypeScript copy at once, so the two copies never add up.
  const release = (held: WeightMatrix[]) => {
    if (opts.forwardOnly && kernels.name === "ort") for (const w of held) releaseHostCodes(w);
  };
  // Whole int8 layers first (one graph each holds its seven matrices), then each matrix left on its own.
  const inLayers = new Set(
    (await model.decoder.prepareLayers?.(kernels, { onLayer: progress, onHeld: release })) ?? [],
  );
  const rest = matrices.filter((w) => !inLayers.has(w));
  if (!kernels.prepare) return;
  for (let i = 0; i < rest.length; i++) {
    progress(i, rest.length);
    await kernels.prepare(rest[i]);
    release([rest[i]]);
  }
  progress(rest.length, rest.length);
}
