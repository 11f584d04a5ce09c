/**
 * Relevancy maps (Chefer et al. 2021, rules 5–6) for LLaVA-style models, computed with the hand-written
 * backward passes of the engine — no autograd framework.
 *
 * For a generated token t, predicted by position p = T + t − 1 with target logit_p[token_t]:
 *   G_l   = ∂ logit / ∂ A_l                  (gradient w.r.t. layer l's post-softmax attention probabilities)
 *   cam_l = mean_heads(max(0, G_l ⊙ A_l))
 *   R     = I;  R ← R + cam_l · R   for l = 0 … L−1,   i.e.   R = (I + cam_{L−1}) ⋯ (I + cam_0)
 * Row p of R says how relevant every input position is to token t.
 *
 * Modes:
 *  - `exact`: fresh gradients of logit_t w.r.t. every layer's full attention over positions 0 … p.
 *  - `incremental`: LVLM-Interpret's scheme under KV-cache generation. Step 0 is the prefill backward
 *    (= exact for t = 0); at step t > 0 each layer's CAM keeps its previous rows, gets a zero column and one
 *    new row mean_heads(max(0, g ⊙ a)) where a is the step's new attention row and g its gradient for
 *    token t. That gradient only needs a single-position backward (earlier positions are constants).
 *
 * Vision tower (CLS towers, as LVLM-Interpret defines them; ViT token 0 = CLS, image token i ↔ ViT token i+1;
 * in general image token i ↔ the tower tokens the model names, `towerGeometry(layout).sourcesOf(i)`).
 * A tower of several passes (LLaVA-NeXT: base view + tiles) gets every map below per pass, from that pass's
 * CAMs and CLS row; image tokens lift onto tower tokens (and back) through their weighted sources.
 * With R_v = (I + cv_{k−1}) ⋯ (I + cv_0) over the ViT layers that feed the selected feature layer:
 *  - `vit`:    R_v · I                         (we report the CLS row)
 *  - `all`:    R_v · R0, R0 = [[1, 0], [0, R[img, img]]]            (R = the LLM map, identity included)
 *  - `all_v2`: R_v · R0, R0 = I_S, R0[0, 1:] += r, R0[1:, 0] += r   (r = R[p, img])
 *  - `chain` (ours, also for towers without CLS): the LLM relevancy of the image tokens pushed back to the
 *    input patches through the tower's own rollout with gradients of the same target,
 *        chain = r_img · R_v[patches, patches],    r_img = R[p, img].
 *    Derivation: R[p, :] distributes token t's relevance over the LLM's input positions; each image
 *    position s0+i *is* ViT output token i (+1 with CLS) passed through the token-wise projector, which mixes
 *    no positions (an identity step of the rollout). Row i of R_v distributes ViT output token i's relevance
 *    over the tower's input patches, so composing the two linear maps gives
 *    chain[j] = Σ_i R[p, s0+i] · R_v[i, j] — the rollout of the stacked model (ViT layers, projector, LLM
 *    layers) read at row p and restricted to patch columns. Unlike `all`, which multiplies the ViT cams onto
 *    the LLM's image block from the left, this composes the maps in the order the data flows. CLS rows and
 *    columns are dropped (the CLS feature never reaches the LLM under "default").
 *  - ViT gradients are fresh (∂ logit_t / ∂ A_vit) or, for compatibility with the original tool,
 *    `accumulated`: Σ_{t' ≤ t} ∂ logit_t' / ∂ A_vit (the tool never clears them between tokens).
 *
 * Everything the run directory stores is a single row of a rollout, so it is computed as a row-vector
 * rollout u ← u + u·cam_l from the last layer down: O(L·n²) instead of the O(L·n³) matrix product
 * (`rolloutMatrix` computes full matrices for tests and `keepMatrices`).
 */
import type { Kernels } from "../../kernels/types.js";
import type { VisionLanguageModel } from "../../models/types.js";
import { featureGradSum, llmRelevancy } from "./llm.js";
import { relevancyMatrices } from "./matrices.js";
import { planRelevancy, type RelevancyPlan } from "./plan.js";
import { type Cam, rolloutRow } from "./rollout.js";
import { type ForwardTape, recordForward } from "./tape.js";
import type { RelevancyInputs, RelevancyOptions, RelevancyResult, TokenRelevancy } from "./types.js";
import { chainMap, clsRowMaps, towerCams } from "./vision.js";

/**
 * The relevancy maps of a run's generated tokens. The steps share one forward tape: `planRelevancy` checks
 * the request against the model, `recordForward` keeps every activation once, and for each token
 * `llmRelevancy` gives the LLM's CAMs (and, from the same backward, the gradient at the image features),
 * `towerCams` turns a feature gradient into the tower's CAMs, `clsRowMaps` the vit / all / all_v2 rows and
 * `chainMap` the patch map.
 */
export async function relevancyMaps(
  model: VisionLanguageModel,
  kernels: Kernels,
  inputs: RelevancyInputs,
  opts: RelevancyOptions,
): Promise<RelevancyResult> {
  const plan = planRelevancy(model, inputs, opts);
  const progress = opts.onProgress ?? (() => {});
  progress("forward", 0, 1);
  const tape = await recordForward(model, kernels, inputs, plan, opts.tapeMemoryBytes);
  progress("forward", 1, 1);
  try {
    return await backwardPasses(tape, plan, opts);
  } finally {
    tape.dispose();
  }
}

/** Every requested token's maps, from the backward passes on one forward tape. */
async function backwardPasses(
  tape: ForwardTape,
  plan: RelevancyPlan,
  opts: RelevancyOptions,
): Promise<RelevancyResult> {
  const { kernels } = tape;
  const progress = opts.onProgress ?? (() => {});

  const llmStep = llmRelevancy(tape, plan);
  const gradSum = plan.vitGradSum ? featureGradSum(tape, plan.vitGradSum === "running") : null;
  const wanted = new Set(plan.tokens);
  const results: TokenRelevancy[] = [];
  const total = plan.tokens.length;
  progress("backward", 0, total);
  for (const t of plan.steps) {
    // Fresh image-feature gradients: for the requested tokens' chain / fresh vit kinds, and at every step for
    // a running sum.
    const withFeatureGrad = (wanted.has(t) && plan.freshForWanted) || plan.vitGradSum === "running";
    const { cams, featureGrad } = await llmStep(t, withFeatureGrad);
    if (plan.vitGradSum === "running") gradSum!.add(featureGrad!);
    if (!wanted.has(t)) continue;
    const p = plan.T + t - 1;
    const n = p + 1;
    const llm = rolloutRow(cams, p);
    const res: TokenRelevancy = { token: t, position: p, llm };
    // Tower CAMs: with fresh gradients of this target (chain always; vit kinds when fresh), and those the
    // vit kinds use (a subset of the fresh ones, or from the accumulated gradients).
    const freshCams = plan.freshForWanted
      ? await towerCams(tape, plan, featureGrad!, plan.freshLayers)
      : null;
    let kindCams: Cam[][] | null = null;
    if (plan.vitKinds.length > 0) {
      kindCams = gradSum
        ? await towerCams(tape, plan, await gradSum.upTo(t), plan.vitLayers)
        : freshCams!.map((c) => plan.vitLayers.map((l) => c[plan.freshLayers.indexOf(l)]));
    }
    if (kindCams) Object.assign(res, clsRowMaps(plan, kindCams, llm, cams, n));
    if (plan.chain) res.chain = chainMap(plan, llm, freshCams!);
    if (opts.keepMatrices)
      res.matrices = await relevancyMatrices(kernels, plan, cams, n, kindCams, freshCams);
    results.push(res);
    progress("backward", results.length, total);
  }
  return {
    mode: plan.mode,
    vitGradients: plan.vitGradients,
    tokens: results,
    imagePositions: plan.imagePositions,
    vitSeqLen: plan.Sv,
    vitPasses: plan.passes,
    towerSources: plan.sources,
    hasCls: plan.hasCls,
    vitLayers: plan.vitLayers,
  };
}
