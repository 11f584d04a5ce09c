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
 * in general image token i ↔ the tower token the model names, `model.tower.tokenOf(i)`).
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
import type { Kernels } from "../kernels/types.js";
import type { DecoderBackwardResult, DecoderTape } from "../models/decoder.js";
import type { ImageLayout } from "../models/image-layout.js";
import type { ImageEncoding, PixelValues, VisionLanguageModel } from "../models/types.js";

/** The relevancy modes and vision-side kinds, listed once (CLI choices and server schemas use these). */
export const RELEVANCY_MODES = ["exact", "incremental"] as const;
export const VISION_RELEVANCY_KINDS = ["vit", "all", "all_v2", "chain"] as const;
export type RelevancyMode = (typeof RELEVANCY_MODES)[number];
export type VisionRelevancyKind = (typeof VISION_RELEVANCY_KINDS)[number];
export type VitGradients = "fresh" | "accumulated";

export class RelevancyError extends Error {}

// ------------------------------------------------------------------------------------------------------
// Core math
// ------------------------------------------------------------------------------------------------------

/** A square CAM stored with a row stride (incremental CAMs live in a buffer sized for the longest step). */
export interface Cam {
  data: Float32Array;
  stride: number;
}

/**
 * Writes mean_heads(max(0, dP ⊙ P)) for a window of query rows into `cam`: dP and P are
 * [heads, rows, cols]; window row i (i ≥ fromRow) lands in cam row rowOffset + i − fromRow, columns
 * 0 … cols−1.
 */
export function camInto(
  cam: Cam,
  rowOffset: number,
  dProbs: Float32Array,
  probs: Float32Array,
  heads: number,
  rows: number,
  cols: number,
  fromRow = 0,
): void {
  const { data, stride } = cam;
  const acc = new Float64Array(cols);
  for (let i = fromRow; i < rows; i++) {
    acc.fill(0);
    for (let h = 0; h < heads; h++) {
      const o = (h * rows + i) * cols;
      for (let j = 0; j < cols; j++) {
        const v = dProbs[o + j] * probs[o + j];
        if (v > 0) acc[j] += v;
      }
    }
    const dst = (rowOffset + i - fromRow) * stride;
    for (let j = 0; j < cols; j++) data[dst + j] = acc[j] / heads;
  }
}

/** cam = mean_heads(max(0, dP ⊙ P)) as a new [rows, cols] array. */
export function camFromGrad(
  dProbs: Float32Array,
  probs: Float32Array,
  heads: number,
  rows: number,
  cols: number,
): Float32Array {
  const data = new Float32Array(rows * cols);
  camInto({ data, stride: cols }, 0, dProbs, probs, heads, rows, cols);
  return data;
}

/**
 * Row-vector rollout: u · (I + cam_{L−1}) ⋯ (I + cam_0), i.e. u ← u + u·cam_l for l = L−1 … 0, over the
 * leading n×n block of each CAM. With u = e_p this is row p of the rollout R.
 */
export function rolloutLeft(u: ArrayLike<number>, cams: Cam[], n: number): Float64Array {
  const v = Float64Array.from({ length: n }, (_, i) => u[i] ?? 0);
  const add = new Float64Array(n);
  for (let l = cams.length - 1; l >= 0; l--) {
    const { data, stride } = cams[l];
    add.fill(0);
    for (let i = 0; i < n; i++) {
      const vi = v[i];
      if (vi === 0) continue;
      const o = i * stride;
      for (let j = 0; j < n; j++) add[j] += vi * data[o + j];
    }
    for (let j = 0; j < n; j++) v[j] += add[j];
  }
  return v;
}

/** Row p of the rollout R over the leading (p+1)×(p+1) blocks. */
export function rolloutRow(cams: Cam[], p: number): Float32Array {
  const e = new Float64Array(p + 1);
  e[p] = 1;
  return Float32Array.from(rolloutLeft(e, cams, p + 1));
}

/** Full rollout matrix R = (I + cam_{L−1}) ⋯ (I + cam_0) · R0 (R0 = I by default), n×n, via the kernels. */
export async function rolloutMatrix(
  kernels: Kernels,
  cams: Cam[],
  n: number,
  r0?: Float32Array,
): Promise<Float32Array> {
  let R: Float32Array;
  if (r0) R = r0.slice();
  else {
    R = new Float32Array(n * n);
    for (let i = 0; i < n; i++) R[i * n + i] = 1;
  }
  const c = new Float32Array(n * n);
  for (const cam of cams) {
    for (let i = 0; i < n; i++) c.set(cam.data.subarray(i * cam.stride, i * cam.stride + n), i * n);
    const cr = await kernels.bmm(c, R, 1, n, n, n, false);
    for (let i = 0; i < R.length; i++) R[i] += cr[i];
  }
  return R;
}

/**
 * LVLM-Interpret's display normalisation (`handle_residual`, eq. 8–9): A = R − I; every row divided by its
 * sum (rows summing to 0 stay unchanged); + I. R is n×n.
 */
export function handleResidual(R: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n * n);
  for (let i = 0; i < n; i++) out.set(normalizeRow(R.subarray(i * n, (i + 1) * n), i), i * n);
  return out;
}

/** `handleResidual` of one row: row p of R (its diagonal entry at index p) → row p of the normalised map. */
export function normalizeRow(row: ArrayLike<number>, p: number): Float32Array {
  const n = row.length;
  let sum = 0;
  for (let j = 0; j < n; j++) sum += row[j] - (j === p ? 1 : 0);
  const div = sum === 0 ? 1 : sum;
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) out[j] = (row[j] - (j === p ? 1 : 0)) / div + (j === p ? 1 : 0);
  return out;
}

/** Initial ViT map of `all`: [[1, 0], [0, R_llm[img, img]]] (S×S, S = P + 1; img = the image positions). */
export function allInitialMap(R: Float32Array, n: number, imagePositions: readonly number[]): Float32Array {
  const P = imagePositions.length;
  const S = P + 1;
  const r0 = new Float32Array(S * S);
  r0[0] = 1;
  for (let i = 0; i < P; i++) {
    for (let j = 0; j < P; j++) r0[(i + 1) * S + j + 1] = R[imagePositions[i] * n + imagePositions[j]];
  }
  return r0;
}

/** Initial ViT map of `all_v2`: I_S with r added to row 0 and column 0 beyond the corner. */
export function allV2InitialMap(r: ArrayLike<number>): Float32Array {
  const S = r.length + 1;
  const r0 = new Float32Array(S * S);
  for (let i = 0; i < S; i++) r0[i * S + i] = 1;
  for (let i = 0; i < r.length; i++) {
    r0[i + 1] += r[i];
    r0[(i + 1) * S] += r[i];
  }
  return r0;
}

/**
 * The chain map from the matrices: r_img · R_v restricted to patch rows/columns. `vitTokenOf(i)` is the ViT
 * token of image token i; `cls` the CLS index or −1.
 */
export function chainFromMatrix(
  rImg: ArrayLike<number>,
  Rv: Float32Array,
  S: number,
  vitTokenOf: (i: number) => number,
  cls: number,
): Float32Array {
  const patches = Array.from({ length: S }, (_, j) => j).filter((j) => j !== cls);
  const out = new Float32Array(patches.length);
  for (let i = 0; i < rImg.length; i++) {
    const r = vitTokenOf(i);
    if (r === cls) continue;
    patches.forEach((c, j) => {
      out[j] += rImg[i] * Rv[r * S + c];
    });
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------
// Computing the maps for a run (model + ids + pixels)
// ------------------------------------------------------------------------------------------------------

export interface RelevancyInputs {
  /** Expanded prompt ids (length T). */
  inputIds: number[];
  /** Generated ids (length G). Token t is predicted by position T + t − 1. */
  generatedIds: number[];
  /** pixel_values as the processor returned them. */
  pixels: PixelValues;
  /** The image's token layout (the run's `image_layout`): position ids may depend on it. */
  layout: ImageLayout;
}

export interface RelevancyOptions {
  mode: RelevancyMode;
  vision?: VisionRelevancyKind[];
  /** Generated-token indices to compute (default: all). */
  tokens?: number[];
  /** ViT gradients for vit/all/all_v2 (default: fresh for exact, accumulated for incremental — the tool's). */
  vitGradients?: VitGradients;
  /** Also return full matrices (R, CAMs, ViT maps): for tests and debugging, costs O(n³). */
  keepMatrices?: boolean;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface TokenRelevancy {
  /** Generated-token index t. */
  token: number;
  /** Position p = T + t − 1 whose logits chose it. */
  position: number;
  /** Row p of the raw LLM map R (length p + 1). */
  llm: Float32Array;
  /** CLS rows (length S_vit) of the raw ViT-propagated maps. */
  vit?: Float32Array;
  all?: Float32Array;
  allV2?: Float32Array;
  /** Patch relevancy (length = number of patches). */
  chain?: Float32Array;
  matrices?: {
    /** Raw LLM rollout (p+1)×(p+1) and its per-layer CAMs. */
    R: Float32Array;
    cams: Float32Array[];
    /** ViT CAMs of the layers used (with the gradients of the vit kinds), and the S×S maps. */
    vitCams?: Float32Array[];
    vitR?: Float32Array;
    allR?: Float32Array;
    /** ViT rollout with fresh gradients (what `chain` uses). */
    chainVitR?: Float32Array;
  };
}

export interface RelevancyResult {
  mode: RelevancyMode;
  vitGradients: VitGradients;
  tokens: TokenRelevancy[];
  /** Sequence positions of the image tokens. */
  imagePositions: number[];
  /** ViT sequence length (with CLS when present; 0 without vision maps on a tower-less geometry). */
  vitSeqLen: number;
  hasCls: boolean;
  /** ViT layers whose CAMs enter the vit/all/all_v2 rollouts (and, fresh, the chain). */
  vitLayers: number[];
}

/** Validates and sorts a token selection. */
export function resolveTokens(tokens: number[] | undefined, G: number): number[] {
  if (G < 1) throw new RelevancyError("the run has no generated tokens");
  if (!tokens) return Array.from({ length: G }, (_, i) => i);
  const out = [...new Set(tokens)].sort((a, b) => a - b);
  for (const t of out) {
    if (!Number.isInteger(t) || t < 0 || t >= G)
      throw new RelevancyError(`token index ${t} outside 0…${G - 1}`);
  }
  if (out.length === 0) throw new RelevancyError("no tokens selected");
  return out;
}

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
  const tape = await recordForward(model, kernels, inputs, plan);
  progress("forward", 1, 1);

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
    let kindCams: Cam[] | null = null;
    if (plan.vitKinds.length > 0) {
      kindCams = gradSum
        ? await towerCams(tape, plan, await gradSum.upTo(t), plan.vitLayers)
        : plan.vitLayers.map((l) => freshCams![plan.freshLayers.indexOf(l)]);
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
    hasCls: plan.hasCls,
    vitLayers: plan.vitLayers,
  };
}

/** What a request computes, checked against the model and its inputs before anything runs. */
interface RelevancyPlan {
  mode: RelevancyMode;
  vitGradients: VitGradients;
  /** Requested generated-token indices, sorted. */
  tokens: number[];
  /** Steps the backward visits: the requested tokens (exact) or every step up to the last one (incremental). */
  steps: number[];
  /** Prompt length; token t is predicted by position T + t − 1. */
  T: number;
  /** Positions the tape covers: 0 … nAll − 1. */
  nAll: number;
  imagePositions: number[];
  /** Vision kinds read from the tower's CLS row (vit, all, all_v2), and whether the chain is wanted. */
  vitKinds: VisionRelevancyKind[];
  chain: boolean;
  /** Whether the tower keeps a tape (any vision map). */
  needVision: boolean;
  /** The tower's geometry (zeros / −1 / [] without a tower). */
  Sv: number;
  hasCls: boolean;
  clsIndex: number;
  /** Tower token of each image token. */
  vitOf: number[];
  /** Tower layers fresh gradients reach, and those whose CAMs enter the vit kinds' rollouts. */
  freshLayers: number[];
  vitLayers: number[];
  /** Requested tokens need fresh image-feature gradients (chain, or fresh vit kinds). */
  freshForWanted: boolean;
  /**
   * How the accumulated gradients Σ_{t' ≤ t} are formed (null: not needed): as a running sum of every step's
   * fresh gradients when that costs no more full backward passes than one multi-target backward per requested
   * token, else by that multi-target backward.
   */
  vitGradSum: "running" | "backward" | null;
}

function planRelevancy(
  model: VisionLanguageModel,
  inputs: RelevancyInputs,
  opts: RelevancyOptions,
): RelevancyPlan {
  const { inputIds, generatedIds } = inputs;
  const mode = opts.mode;
  if (!RELEVANCY_MODES.includes(mode))
    throw new RelevancyError(`unknown relevancy mode "${mode}" (expected exact or incremental)`);
  const vision = [...new Set(opts.vision ?? [])];
  for (const k of vision) {
    if (!VISION_RELEVANCY_KINDS.includes(k))
      throw new RelevancyError(
        `unknown vision relevancy "${k}" (expected ${VISION_RELEVANCY_KINDS.join(", ")})`,
      );
  }
  const vitGradients: VitGradients = opts.vitGradients ?? (mode === "exact" ? "fresh" : "accumulated");
  const T = inputIds.length;
  const tokens = resolveTokens(opts.tokens, generatedIds.length);
  const tmax = tokens[tokens.length - 1];
  const imagePositions = model.imagePositions(inputIds);
  const P = imagePositions.length;
  if (P !== inputs.layout.token_count)
    throw new RelevancyError(
      `prompt has ${P} image tokens, the image layout has ${inputs.layout.token_count}`,
    );
  const needVision = vision.length > 0;
  const tower = model.tower;
  if (needVision && !tower)
    throw new RelevancyError(
      `${vision.join(", ")} relevancy needs image tokens that are single vision-tower tokens (not so for ${model.info.modelType})`,
    );
  const hasCls = tower !== null && tower.cls >= 0;
  const Sv = tower?.seqLen ?? 0;
  const vitOf = Array.from({ length: P }, (_, i) => tower?.tokenOf(i) ?? -1);
  const vitKinds = vision.filter((k) => k !== "chain");
  if (vitKinds.length > 0 && !hasCls) {
    throw new RelevancyError(
      `${vitKinds.join(", ")} relevancy needs a vision tower with a CLS token (this one has none); use "chain"`,
    );
  }
  // all/all_v2 lift the CLS row onto the image tokens 1:1: image token i must be ViT token i + 1.
  const patchesAfterCls = P === Sv - 1 && vitOf.every((v, i) => v === i + 1);
  if ((vitKinds.includes("all") || vitKinds.includes("all_v2")) && !patchesAfterCls) {
    throw new RelevancyError(
      `all/all_v2 relevancy needs vision_feature_select_strategy "default" (image tokens = patches)`,
    );
  }
  const chain = vision.includes("chain");
  // ViT layers used: fresh gradients reach exactly the layers below the highest feature layer; the tool's
  // accumulated variant uses all layers but the last.
  const Lv = tower?.layers ?? 0;
  const freshLayers = tower?.featureLayers ?? [];
  const vitLayers = vitGradients === "fresh" ? freshLayers : freshLayers.filter((l) => l < Lv - 1);
  const steps = mode === "exact" ? tokens : Array.from({ length: tmax + 1 }, (_, t) => t);
  const freshForWanted = chain || (vitKinds.length > 0 && vitGradients === "fresh");
  const accumulate = vitKinds.length > 0 && vitGradients === "accumulated";
  const everyStep = steps.length === tmax + 1;
  const running = accumulate && everyStep && tmax + 1 <= tokens.length * (freshForWanted ? 2 : 1);
  return {
    mode,
    vitGradients,
    tokens,
    steps,
    T,
    nAll: T + tmax,
    imagePositions,
    vitKinds,
    chain,
    needVision,
    Sv,
    hasCls,
    clsIndex: tower?.cls ?? -1,
    vitOf,
    freshLayers,
    vitLayers,
    freshForWanted,
    vitGradSum: accumulate ? (running ? "running" : "backward") : null,
  };
}

/** The one forward every backward of a request runs on. */
interface ForwardTape {
  model: VisionLanguageModel;
  kernels: Kernels;
  inputIds: number[];
  generatedIds: number[];
  /** The image encoding, with the tower's activations when vision maps are wanted. */
  image: ImageEncoding;
  llm: DecoderTape;
}

/**
 * One forward over positions 0 … T+tmax−1 with every activation kept: position p's activations do not
 * depend on later positions, so the backward of token t runs on the prefix 0 … T+t−1 of this tape.
 */
async function recordForward(
  model: VisionLanguageModel,
  kernels: Kernels,
  inputs: RelevancyInputs,
  plan: RelevancyPlan,
): Promise<ForwardTape> {
  const { inputIds, generatedIds } = inputs;
  const nAll = plan.nAll;
  const seq = [...inputIds, ...generatedIds].slice(0, nAll);
  const image = await model.encodeImage(kernels, inputs.pixels, { tape: plan.needVision });
  const embeds = model.buildInputsEmbeds(seq, image);
  const dec = model.decoder;
  const fwd = await dec.forward(kernels, embeds, model.positionIds(seq, inputs.layout), dec.newCache(nAll), {
    tape: true,
    logitRows: [nAll - 1],
  });
  return { model, kernels, inputIds, generatedIds, image, llm: fwd.tape! };
}

/** One step of the LLM side: every layer's CAM for token t, and ∂logit_t/∂(image features) when asked. */
interface LlmStep {
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
function llmRelevancy(
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
function featureGradSum(
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

/** The tower's CAMs of `layers` for a gradient at the image features (one tower backward on the tape). */
async function towerCams(
  tape: ForwardTape,
  plan: RelevancyPlan,
  dFeatures: Float32Array,
  layers: number[],
): Promise<Cam[]> {
  const Sv = plan.Sv;
  const Hv = tape.model.tower?.heads ?? 0;
  const cams: Cam[] = [];
  await tape.model.imageBackward(tape.kernels, tape.image, dFeatures, {
    onLayer: (l, dP, pr) => {
      cams[l] = { data: camFromGrad(dP, pr, Hv, Sv, Sv), stride: Sv };
    },
  });
  return layers.map((l) => cams[l] ?? { data: new Float32Array(Sv * Sv), stride: Sv });
}

/**
 * The CLS-row maps vit / all / all_v2 (those the plan asks for) from the tower CAMs, the LLM row and the LLM
 * CAMs. w = CLS row of R_v; every CLS row is w · R0 for its initial map R0.
 */
function clsRowMaps(
  plan: RelevancyPlan,
  kindCams: Cam[],
  llm: Float32Array,
  cams: Cam[],
  n: number,
): Pick<TokenRelevancy, "vit" | "all" | "allV2"> {
  const { Sv, imagePositions: imgPos, vitKinds } = plan;
  const P = imgPos.length;
  const out: Pick<TokenRelevancy, "vit" | "all" | "allV2"> = {};
  const e0 = new Float64Array(Sv);
  e0[0] = 1;
  const w = rolloutLeft(e0, kindCams, Sv);
  if (vitKinds.includes("vit")) out.vit = Float32Array.from(w);
  if (vitKinds.includes("all")) {
    // [w_0, (w_img · R[img, img])]: lift w_img onto the image positions and roll it through the LLM.
    const u = new Float64Array(n);
    for (let i = 0; i < P; i++) u[imgPos[i]] = w[i + 1];
    const ur = rolloutLeft(u, cams, n);
    const all = new Float32Array(Sv);
    all[0] = w[0];
    for (let j = 0; j < P; j++) all[j + 1] = ur[imgPos[j]];
    out.all = all;
  }
  if (vitKinds.includes("all_v2")) {
    // w · (I + e_0 r̃ᵀ + r̃ e_0ᵀ) = w + w_0 · r̃ + (w · r̃) e_0, r̃ = [0, r], r = R[p, img].
    const v2 = Float32Array.from(w);
    let wr = 0;
    for (let i = 0; i < P; i++) {
      v2[i + 1] += w[0] * llm[imgPos[i]];
      wr += w[i + 1] * llm[imgPos[i]];
    }
    v2[0] += wr;
    out.allV2 = v2;
  }
  return out;
}

/** The chain map: the LLM row's image part pushed back through the tower's fresh-gradient rollout, CLS dropped. */
function chainMap(plan: RelevancyPlan, llm: Float32Array, freshCams: Cam[]): Float32Array {
  const { Sv, clsIndex, vitOf, imagePositions: imgPos } = plan;
  const u = new Float64Array(Sv);
  for (let i = 0; i < imgPos.length; i++) u[vitOf[i]] = llm[imgPos[i]];
  if (clsIndex >= 0) u[clsIndex] = 0;
  const ur = rolloutLeft(u, freshCams, Sv);
  return Float32Array.from(ur.filter((_, j) => j !== clsIndex));
}

/** Full matrices for tests and debugging (`keepMatrices`): the LLM rollout and CAMs, and the tower's maps. */
async function relevancyMatrices(
  kernels: Kernels,
  plan: RelevancyPlan,
  cams: Cam[],
  n: number,
  kindCams: Cam[] | null,
  freshCams: Cam[] | null,
): Promise<NonNullable<TokenRelevancy["matrices"]>> {
  const m: NonNullable<TokenRelevancy["matrices"]> = await llmMatrices(kernels, cams, n);
  const { Sv, vitKinds } = plan;
  if (kindCams) {
    m.vitCams = kindCams.map((c) => c.data.slice());
    if (vitKinds.includes("vit")) m.vitR = await rolloutMatrix(kernels, kindCams, Sv);
    if (vitKinds.includes("all"))
      m.allR = await rolloutMatrix(kernels, kindCams, Sv, allInitialMap(m.R, n, plan.imagePositions));
  }
  if (freshCams && plan.chain) m.chainVitR = await rolloutMatrix(kernels, freshCams, Sv);
  return m;
}

async function llmMatrices(
  kernels: Kernels,
  cams: Cam[],
  n: number,
): Promise<{ R: Float32Array; cams: Float32Array[] }> {
  const sq = cams.map((c) => {
    const out = new Float32Array(n * n);
    for (let i = 0; i < n; i++) out.set(c.data.subarray(i * c.stride, i * c.stride + n), i * n);
    return out;
  });
  const R = await rolloutMatrix(
    kernels,
    sq.map((data) => ({ data, stride: n })),
    n,
  );
  return { R, cams: sq };
}
