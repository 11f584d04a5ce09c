/** A relevancy request checked against the model and its inputs, and what it needs computed. */
import type { ImageLayout } from "../../models/image-layout.js";
import type { TowerGeometry, TowerSource, VisionLanguageModel } from "../../models/types.js";
import {
  RELEVANCY_MODES,
  RelevancyError,
  type RelevancyInputs,
  type RelevancyMode,
  type RelevancyOptions,
  VISION_RELEVANCY_KINDS,
  type VisionRelevancyKind,
  type VitGradients,
} from "./types.js";

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

/** What a request computes, checked against the model and its inputs before anything runs. */
export interface RelevancyPlan {
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
  /** The tower's geometry for this image (zeros / −1 / [] without a tower). */
  passes: number;
  /** Tokens per pass. */
  Sv: number;
  Hv: number;
  hasCls: boolean;
  clsIndex: number;
  /** The tower tokens behind each image token ([] for separators). */
  sources: TowerSource[][];
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

/**
 * Whether this model can give the vision maps `vision` for an image laid out as `layout` (a RelevancyError
 * saying why not), with its tower's geometry and the tower tokens behind each image token. Needs only the
 * preprocessed image, so a trace that is to add these maps can refuse before it runs.
 */
export function checkVisionMaps(
  model: VisionLanguageModel,
  layout: ImageLayout,
  vision: readonly VisionRelevancyKind[],
): { tower: TowerGeometry | null; sources: TowerSource[][] } {
  const tower = model.towerGeometry(layout);
  if (vision.length > 0 && !tower)
    throw new RelevancyError(
      `${vision.join(", ")} relevancy needs a vision tower maps can be propagated through (not so for ${model.info.modelType})`,
    );
  const sources = Array.from({ length: layout.token_count }, (_, i) => tower?.sourcesOf(i) ?? []);
  const vitKinds = vision.filter((k) => k !== "chain");
  if (vitKinds.length > 0 && !(tower !== null && tower.cls >= 0)) {
    throw new RelevancyError(
      `${vitKinds.join(", ")} relevancy needs a vision tower with a CLS token (this one has none); use "chain"`,
    );
  }
  // all/all_v2 lift the CLS row onto the image tokens through their sources: the CLS token must be none.
  const clsFed = sources.some((src) => src.some((s) => s.token === tower?.cls));
  if ((vitKinds.includes("all") || vitKinds.includes("all_v2")) && clsFed) {
    throw new RelevancyError(
      `all/all_v2 relevancy needs vision_feature_select_strategy "default" (image tokens = patches)`,
    );
  }
  return { tower, sources };
}

export function planRelevancy(
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
  const { tower, sources } = checkVisionMaps(model, inputs.layout, vision);
  const hasCls = tower !== null && tower.cls >= 0;
  const Sv = tower?.seqLen ?? 0;
  const vitKinds = vision.filter((k) => k !== "chain");
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
    passes: tower?.passes ?? 0,
    Sv,
    Hv: tower?.heads ?? 0,
    hasCls,
    clsIndex: tower?.cls ?? -1,
    sources,
    freshLayers,
    vitLayers,
    freshForWanted,
    vitGradSum: accumulate ? (running ? "running" : "backward") : null,
  };
}
