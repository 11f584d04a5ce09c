/**
 * CLEANN (Rohekar et al., "Causal Interpretation of Self-Attention in Pre-Trained Transformers", NeurIPS
 * 2023) for one attention head, with LVLM-Interpret's choice of nodes.
 *
 * For the sequence position x that predicts the explained token, with w = A[x, :]:
 * 1. Nodes: the k image tokens with the highest w (k = min(max(2, #{j : w_j > att_th}), max_image_tokens,
 *    #image tokens)), the text tokens after the image with w_j > att_th, and x.
 * 2. CI test: partial correlation / Fisher z on the correlation matrix of A·Aᵀ (sample size num_samples,
 *    threshold α).
 * 3. Structure: ordered ICD with the token position as causal order, no selection bias.
 * 4. Explanation: the PDS tree rooted at x within the search radius; its node set is the explanation, its
 *    levels the explanation per radius.
 * 5. Head importance: max w over image tokens / max w over the tokens after the image.
 * 6. Patch weights: for each image token in the explanation, 1 − p of its CI test with x given the other
 *    explanation image tokens, with num_samples as the sample size.
 */
import { ParCorrTest, rowCorrelation } from "./ci-test.js";
import { OrderedICD } from "./icd.js";
import { edgeString, MARK_NAMES, type MarkName, type MarkOrder, type PAG } from "./pag.js";
import { createPdsTree, type PDSTree } from "./pds-tree.js";
import { PySet } from "./py-set.js";

export interface CleannParams {
  /** CI p-value threshold α (independent when p > α). */
  alpha: number;
  /** Sample size of Fisher's z. */
  numSamples: number;
  /** Search radius (PDS-tree depth) of the explanation. */
  maxRange: number;
  /** Attention threshold for text nodes and for the count of attended tokens. */
  attTh: number;
  /** Cap on the number of image nodes. */
  maxImageTokens: number;
  /** Tie-breaking detail of the reference (see PAG); leave unset. */
  markOrder?: MarkOrder;
}

export const DEFAULT_CLEANN_PARAMS: CleannParams = {
  alpha: 1e-5,
  numSamples: 128,
  maxRange: 3,
  attTh: 0.01,
  maxImageTokens: 50,
};

/** Where the image tokens are in the sequence: their positions, ascending (separators included). */
export interface TokenLayout {
  imagePositions: readonly number[];
  /**
   * The image positions that may become graph nodes (default: all). Row separators (LLaVA-NeXT's
   * `image_newline`) are left out: they have no place in the picture, so they cannot explain by location.
   */
  nodePositions?: readonly number[];
}

/** One contiguous image span (the LLaVA case): positions start … start+count−1. */
export function contiguousLayout(start: number, count: number): TokenLayout {
  return { imagePositions: Array.from({ length: count }, (_, i) => start + i) };
}

export interface NodeSelection {
  /** Image token positions, highest attention first. */
  imageTokens: number[];
  /** Text token positions after the image (ascending). */
  textTokens: number[];
  /** max(2, #{j : w_j > att_th}). */
  numHighAtt: number;
  numImageTokens: number;
  /** True when k had to be cut to the number of image tokens. */
  clampedToGrid: boolean;
}

/** Pick the graph nodes for target position `x` from its attention row `w` (length ≥ x + 1). */
export function selectNodes(
  w: ArrayLike<number>,
  x: number,
  layout: TokenLayout,
  params: CleannParams,
): NodeSelection {
  const all = layout.imagePositions;
  const last = all[all.length - 1];
  const pos = layout.nodePositions ?? all;
  const p = pos.length;
  if (x <= last)
    throw new RangeError(`CLEANN: target position ${x} is not after the image (${pos[0]}…${last})`);
  let above = 0;
  for (let j = 0; j < w.length; j++) if (w[j] > params.attTh) above++;
  const numHighAtt = Math.max(2, above);
  let k = Math.min(numHighAtt, params.maxImageTokens);
  const clampedToGrid = k > p;
  k = Math.min(k, p);
  // Descending attention; ties put the later token first (a reversed ascending stable sort).
  const idx = Array.from({ length: p }, (_, i) => i);
  idx.sort((a, b) => w[pos[b]] - w[pos[a]] || b - a);
  const imageTokens = idx.slice(0, k).map((i) => pos[i]);
  const textTokens: number[] = [];
  for (let j = last + 1; j < x; j++) if (w[j] > params.attTh) textTokens.push(j);
  return { imageTokens, textTokens, numHighAtt, numImageTokens: k, clampedToGrid };
}

export interface EdgeRecord {
  i: number;
  j: number;
  mark_at_i: MarkName;
  mark_at_j: MarkName;
  edge: string;
}

export interface HeadExplanation {
  head: number;
  num_high_att: number;
  num_image_tokens: number;
  num_image_tokens_clamped_to_grid: boolean;
  relevant_image_tokens: number[];
  relevant_text_tokens: number[];
  nodes: number[];
  edges: EdgeRecord[];
  explanation: number[];
  explanation_image_patches: number[];
  /** "0": the target; "r": sorted nodes at PDS-tree level r. */
  explanation_per_radius: Record<string, number | number[]>;
  max_pds_tree_depth: number;
  head_importance: number | null;
  image_expla_weights: number[];
  ci_tests: {
    n_tests: number;
    n_independent: number;
    per_cond_size: number[];
    min_log10_margin: number | null;
    closest_test: [number, number, number[], number] | null;
  };
  timings_ms: { structure: number; explanation: number };
}

/** Everything CLEANN learns for one head, plus the objects (for callers that want more than the record). */
export interface HeadResult {
  record: HeadExplanation;
  graph: PAG;
  tree: PDSTree;
  ci: ParCorrTest;
}

/**
 * Explain position `x` with one head's attention `att` (S×S, row-major, causal).
 * `head` is only copied into the record.
 */
export function explainHead(
  att: ArrayLike<number>,
  size: number,
  x: number,
  layout: TokenLayout,
  params: CleannParams,
  head = 0,
): HeadResult {
  if (att.length !== size * size)
    throw new RangeError(`CLEANN: attention has ${att.length} values, expected ${size}×${size}`);
  if (!(x >= 0 && x < size)) throw new RangeError(`CLEANN: target position ${x} outside 0…${size - 1}`);
  const w = Array.from({ length: size }, (_, j) => att[x * size + j]);
  const sel = selectNodes(w, x, layout, params);
  const tokens = [...sel.imageTokens, ...sel.textTokens, x];

  const t0 = performance.now();
  const ci = new ParCorrTest(rowCorrelation(att, size, tokens), params.numSamples, params.alpha);
  const icd = new OrderedICD(
    PySet.from(tokens),
    [...tokens].sort((a, b) => a - b),
    ci,
    { selectionBias: false, markOrder: params.markOrder },
  );
  const graph = icd.learn();
  const t1 = performance.now();
  const { tree, pdsSet } = createPdsTree(graph, x, { maxDepth: params.maxRange });
  const explanation = pdsSet.toArray().sort((a, b) => a - b);
  const levels = tree.levels();
  const perRadius: Record<string, number | number[]> = { "0": x };
  for (let r = 1; r < levels.length; r++) perRadius[String(r)] = levels[r];

  const imageIndex = new Map(layout.imagePositions.map((q, i) => [q, i]));
  const imageExpl = explanation.filter((v) => imageIndex.has(v));
  const weights = imageExpl.map((v) => patchWeight(ci, v, x, imageExpl, params.numSamples));
  const t2 = performance.now();

  let maxImg = Number.NEGATIVE_INFINITY;
  for (const q of layout.imagePositions) maxImg = Math.max(maxImg, w[q]);
  let maxAfter = Number.NEGATIVE_INFINITY;
  for (let j = layout.imagePositions[layout.imagePositions.length - 1] + 1; j < size; j++)
    maxAfter = Math.max(maxAfter, w[j]);
  const importance = maxImg / maxAfter;

  const s = ci.stats;
  const record: HeadExplanation = {
    head,
    num_high_att: sel.numHighAtt,
    num_image_tokens: sel.numImageTokens,
    num_image_tokens_clamped_to_grid: sel.clampedToGrid,
    relevant_image_tokens: sel.imageTokens,
    relevant_text_tokens: sel.textTokens,
    nodes: tokens,
    edges: graph.edges().map((e) => ({
      i: e.i,
      j: e.j,
      mark_at_i: MARK_NAMES[e.markAtI],
      mark_at_j: MARK_NAMES[e.markAtJ],
      edge: edgeString(e),
    })),
    explanation,
    explanation_image_patches: imageExpl.map((v) => imageIndex.get(v)!),
    explanation_per_radius: perRadius,
    max_pds_tree_depth: tree.maxDepth(),
    head_importance: Number.isFinite(importance) ? importance : null,
    image_expla_weights: weights,
    ci_tests: {
      n_tests: s.nTests,
      n_independent: s.nIndependent,
      per_cond_size: Array.from(s.perSize, (v) => v ?? 0),
      min_log10_margin: Number.isFinite(s.minLog10Margin) ? s.minLog10Margin : null,
      closest_test: s.closest,
    },
    timings_ms: { structure: t1 - t0, explanation: t2 - t1 },
  };
  return { record, graph, tree, ci };
}

/**
 * Weight of an explanation image token v: 1 − p of v ⟂ x | (other explanation image tokens), with
 * `numSamples` as the sample size. When the set is so large that Fisher's z would have no degrees of freedom
 * (|Z| ≥ numSamples − 3) the sample size is raised to |Z| + 4; an undefined partial correlation (degenerate
 * matrix) gives weight 0. Always finite, in [0, 1].
 */
export function patchWeight(
  ci: ParCorrTest,
  v: number,
  x: number,
  imageExpl: readonly number[],
  numSamples: number,
): number {
  const z = imageExpl.filter((u) => u !== v);
  const n = Math.max(numSamples, z.length + 4);
  const p = ci.pValue(v, x, z, n);
  if (Number.isNaN(p)) return 0;
  return 1 - Math.min(p, 1);
}
