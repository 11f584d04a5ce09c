/** The LLM side of relevancy: Chefer's CAMs per generated token, and the gradients at the image features. */
import type { DecoderBackwardResult } from "../../models/decoder.js";
import type { RelevancyPlan } from "./plan.js";
import { type Cam, camInto } from "./rollout.js";
import type { ForwardTape } from "./tape.js";

/** One step of the LLM side: every layer's CAM for token t, and ∂logit_t/∂(image features) when asked. */
export interface LlmStep {
  cams: Cam[];
  featureGrad: Float32Array | null;
}

/**
 * Chefer's LLM CAMs per token, called for the plan's steps in order.
 *  - exact: fresh (p+1)×(p+1) CAMs from a backward of logit_t over positions 0 … p.
 *  - incremental: one buffer per layer sized for the longest step. Step 0 is the prefill: its backward covers
 *    every prompt position. A later step adds the row of the newest position only, whose gradient needs just
 *    a single-position backward (the cached keys and values are constants) — or, when the full backward runs
 *    anyway for the image-feature gradient, its last row (the same numbers).
 */
export function llmRelevancy(
  tape: ForwardTape,
  plan: RelevancyPlan,
): (t: number, withFeatureGrad: boolean) => Promise<LlmStep> {
  const { model, kernels } = tape;
  const H = model.info.llmHeads;
  const L = model.info.llmLayers;
  const target = (t: number) => [{ row: plan.T + t - 1, tokenId: tape.generatedIds[t] }];
  const featureGrad = (bw: DecoderBackwardResult) =>
    model.imageFeaturesGrad(tape.inputIds, bw.dInputsEmbeds, bw.from);
  if (plan.mode === "exact") {
    return async (t, withFeatureGrad) => {
      const n = plan.T + t;
      const cams = Array.from({ length: L }, () => ({ data: new Float32Array(n * n), stride: n }));
      const bw = await model.decoder.backward(kernels, tape.llm, target(t), {
        onLayer: (l, dP, pr, from, to) => camInto(cams[l], from, dP, pr, H, to - from, to),
      });
      return { cams, featureGrad: withFeatureGrad ? featureGrad(bw) : null };
    };
  }
  const nAll = plan.nAll;
  let cams: Cam[] | null = null;
  return async (t, withFeatureGrad) => {
    cams ??= Array.from({ length: L }, () => ({ data: new Float32Array(nAll * nAll), stride: nAll }));
    const ic = cams;
    const p = plan.T + t - 1;
    const full = t === 0 || withFeatureGrad;
    const bw = await model.decoder.backward(kernels, tape.llm, target(t), {
      from: full ? 0 : p,
      onLayer: (l, dP, pr, from, to) =>
        t === 0
          ? camInto(ic[l], from, dP, pr, H, to - from, to)
          : camInto(ic[l], p, dP, pr, H, to - from, to, p - from),
    });
    return { cams: ic, featureGrad: withFeatureGrad ? featureGrad(bw) : null };
  };
}

/**
 * Σ_{t' ≤ t} ∂logit_t'/∂(image features), the original tool's accumulated ViT gradients (it never clears them
 * between tokens). The backward is linear in its seed, so the sum is either kept running over every step's
 * fresh gradient (`add`), or formed by one multi-target LLM backward.
 */
export function featureGradSum(
  tape: ForwardTape,
  running: boolean,
): { add(fresh: Float32Array): void; upTo(t: number): Promise<Float32Array> } {
  let sum: Float32Array | null = null;
  return {
    add(fresh) {
      if (!sum) sum = fresh.slice();
      else for (let i = 0; i < sum.length; i++) sum[i] += fresh[i];
    },
    async upTo(t) {
      if (running) return sum!;
      const T = tape.inputIds.length;
      const targets = Array.from({ length: t + 1 }, (_, k) => ({
        row: T + k - 1,
        tokenId: tape.generatedIds[k],
      }));
      const bw = await tape.model.decoder.backward(tape.kernels, tape.llm, targets);
      return tape.model.imageFeaturesGrad(tape.inputIds, bw.dInputsEmbeds, bw.from);
    },
  };
}
