/**
 * One interface for matmul-class work. Two implementations: "ts" (plain TypeScript reference) and "ort"
 * (onnxruntime-node graphs built in code). Element-wise work stays outside the kernels.
 */

import type { KernelChoice } from "../contracts/lists.js";

/**
 * A weight matrix in Hugging Face Linear layout [out, in] (y = x·Wᵀ + b). 16-bit weights stay 16-bit; "Q8" is
 * the opt-in int8 quantisation of kernels/quantize.ts.
 */
export interface WeightMatrix {
  rows: number; // out_features
  cols: number; // in_features
  dtype: "F32" | "F16" | "BF16" | "Q8";
  /**
   * F32: Float32Array; F16/BF16: Uint16Array of raw bits; Q8: Uint8Array of codes [out, blocks, Q8_BLOCK]
   * (rows padded to whole blocks).
   */
  data: Float32Array | Uint16Array | Uint8Array;
  /** Q8 only: one scale per block [out · blocks]. */
  scales?: Float32Array;
}

export interface Kernels {
  /** The implementation ("auto" is a choice between them, not one). */
  readonly name: Exclude<KernelChoice, "auto">;
  /** y[m, w.rows] = x[m, w.cols] · wᵀ (+ bias). */
  linear(x: Float32Array, m: number, w: WeightMatrix, bias?: Float32Array | null): Promise<Float32Array>;
  /**
   * Batched matmul: out[b, m, n] = a[b, m, k] · B[b] where B[b] is [k, n], or [n, k] read transposed when
   * transB. Used for attention scores (q·kᵀ) and probabilities·values.
   */
  bmm(
    a: Float32Array,
    b: Float32Array,
    batch: number,
    m: number,
    k: number,
    n: number,
    transB: boolean,
  ): Promise<Float32Array>;
  /**
   * out[m, n] = aᵀ·b for a [k, m] and b [k, n]: products that sum over rows, such as weight gradients dyᵀ·x
   * and attention's Pᵀ·dctx, without transposing a first.
   */
  matmulTransA(a: Float32Array, b: Float32Array, k: number, m: number, n: number): Promise<Float32Array>;
  /**
   * Whole transformer blocks as one native call each (onnxruntime graphs), when the implementation has them.
   * Absent for the TypeScript kernels, whose per-op path is the readable reference the blocks must match.
   */
  readonly blocks?: BlockKernels;
  /**
   * Readies a weight for fast products ahead of its first use (onnxruntime: an int8 weight's pre-packed
   * session); absent or a no-op where there is nothing to ready.
   */
  prepare?(w: WeightMatrix): Promise<void>;
  /** Release native resources (sessions). */
  dispose(): Promise<void>;
}

export type { KernelChoice };
/** Weights of one pre-LN ViT encoder layer (CLIP/SigLIP), Hugging Face layouts. */
export interface VisionBlockWeights {
  ln1w: Float32Array;
  ln1b: Float32Array;
  q: WeightMatrix;
  qb: Float32Array;
  k: WeightMatrix;
  kb: Float32Array;
  v: WeightMatrix;
  vb: Float32Array;
  o: WeightMatrix;
  ob: Float32Array;
  ln2w: Float32Array;
  ln2b: Float32Array;
  fc1: WeightMatrix;
  fc1b: Float32Array;
  fc2: WeightMatrix;
  fc2b: Float32Array;
}

export interface VisionBlockInput {
  /** Layer input [n, D]. */
  h: Float32Array;
  n: number;
  heads: number;
  eps: number;
  /** config `hidden_act`. */
  act: string;
  weights: VisionBlockWeights;
  /** Also return the activations the backward pass needs. */
  tape: boolean;
}

export interface VisionBlockOutput {
  /** Layer output [n, D]. */
  h: Float32Array;
  /** Attention probabilities [H, n, n]. */
  probs: Float32Array;
  /** With `tape`: layer_norm1 output, q [n, D], k/v heads-first [H, n, hd], ctx, h1, layer_norm2 output, fc1 output. */
  tape?: {
    x: Float32Array;
    q: Float32Array;
    k: Float32Array;
    v: Float32Array;
    ctx: Float32Array;
    h1: Float32Array;
    x2: Float32Array;
    u: Float32Array;
  };
}

/** Weights of one llama-family decoder layer; biases are null where the family has none. */
export interface DecoderBlockWeights {
  inputNorm: Float32Array;
  q: WeightMatrix;
  qb: Float32Array | null;
  k: WeightMatrix;
  kb: Float32Array | null;
  v: WeightMatrix;
  vb: Float32Array | null;
  o: WeightMatrix;
  ob: Float32Array | null;
  postNorm: Float32Array;
  gate: WeightMatrix;
  gateB: Float32Array | null;
  up: WeightMatrix;
  upB: Float32Array | null;
  down: WeightMatrix;
  downB: Float32Array | null;
}

/**
 * A decoder layer over n rows that attend to themselves only (a prefill from an empty cache): RoPE angles
 * and the causal mask come precomputed, so every family variant (M-RoPE, sliding window) is data, not graph.
 */
/** One decoder layer as the block graphs see it, forward and backward alike. */
export interface DecoderLayerSpec {
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  /** Gemma's (1 + w) RMSNorm weights. */
  unitOffset: boolean;
  /** config `hidden_act` of the gated MLP. */
  act: string;
  /** cos / sin of each row's rotary angles [rows, headDim/2], as models/rope.ts rounds them. */
  cos: Float32Array;
  sin: Float32Array;
  weights: DecoderBlockWeights;
}

export interface DecoderBlockInput extends DecoderLayerSpec {
  /** Layer input [n, D]. */
  h: Float32Array;
  n: number;
  /** Additive mask [n, past + n]: 0 where row i may attend to key j, −∞ elsewhere. */
  mask: Float32Array;
  tape: boolean;
  /**
   * With `tape`: keep only what input gradients read (relevancy), not x, ctx and x2, which only weight
   * gradients (training) read.
   */
  inputGradientsOnly?: boolean;
  /**
   * The layer's KV cache [KV, capacity, hd] (keys after RoPE) with `past` positions already filled: the n rows
   * follow them. Only layers with int8 weights run rows after a non-empty cache as one graph (their graph serves
   * the prefill and every decode step, so onnxruntime holds their pre-packed weights once); the others return
   * null for past > 0.
   */
  cache?: { k: Float32Array; v: Float32Array; capacity: number; past: number };
}

export interface DecoderBlockOutput {
  /** Layer output [n, D]. */
  h: Float32Array;
  /** Attention probabilities [H, n, past + n]. */
  probs: Float32Array;
  /** Keys after RoPE and values, [n, KV·hd] rows (for the KV cache). */
  k: Float32Array;
  v: Float32Array;
  /** With `tape`: the activations of `DecoderLayerTape` (q after RoPE). */
  tape?: {
    /** Not with `inputGradientsOnly`. */
    x?: Float32Array;
    q: Float32Array;
    ctx?: Float32Array;
    h1: Float32Array;
    x2?: Float32Array;
    gate: Float32Array;
    up: Float32Array;
  };
}

/**
 * The backward of one ViT encoder layer without weight gradients (relevancy's per-token tower backward):
 * the gradient at the layer output and the forward activations it needs (`VisionLayerTape`'s).
 */
export interface VisionBlockBackwardInput {
  /** Gradient at the layer output [n, D]. */
  dOut: Float32Array;
  n: number;
  heads: number;
  eps: number;
  /** config `hidden_act`. */
  act: string;
  weights: VisionBlockWeights;
  tape: {
    /** Layer input [n, D]. */
    hIn: Float32Array;
    /** Queries [n, D]; keys and values heads-first [H, n, hd]. */
    q: Float32Array;
    k: Float32Array;
    v: Float32Array;
    /** Attention probabilities [H, n, n]. */
    probs: Float32Array;
    /** Residual stream after attention [n, D]. */
    h1: Float32Array;
    /** fc1 output before the activation [n, I]. */
    u: Float32Array;
  };
}

export interface VisionBlockBackwardOutput {
  /** Gradient at the layer input [n, D]. */
  dIn: Float32Array;
  /** Gradient at the attention probabilities [H, n, n] (Chefer's G, as `attentionBackward` reports it). */
  dProbs: Float32Array;
}

/**
 * Backward of one decoder layer (input gradient only, no weight gradients) for the query rows from … to−1 of a
 * prefill tape: m = to − from rows. Keys/values of rows before `from` are constants (no gradient), so only the
 * last m key/value columns feed back into the layer input.
 */
/**
 * One decoder layer's backward over the variable rows from … to−1 (m = to − from; earlier keys are constants),
 * of which the last `queries` have a gradient at the layer output (all m but at the top layer, where only the
 * target rows do). The spec's cos/sin are the query rows'.
 */
export interface DecoderBackwardBlockInput extends DecoderLayerSpec {
  /** Gradient at the layer output of the query rows [queries, D]. */
  dOut: Float32Array;
  /** Variable rows. */
  m: number;
  /** Query rows: the last `queries` of the m (1 … m). */
  queries: number;
  /** Keys seen by the last query row (= its position + 1). */
  to: number;
  /** Layer input of the variable rows [m, D], and their rotary cos/sin [m, hd/2]. */
  hIn: Float32Array;
  keyCos: Float32Array;
  keySin: Float32Array;
  /** Tape rows of the query rows: h1 [queries, D], gate/up outputs [queries, I], q after RoPE [queries, H·hd]. */
  h1: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  q: Float32Array;
  /** The KV cache of the layer, [KV, capacity, hd] (keys after RoPE); positions 0 … to−1 are read. */
  k: Float32Array;
  v: Float32Array;
  capacity: number;
  /** Forward probabilities of the query rows [H, queries, to]. */
  probs: Float32Array;
}

export interface DecoderBackwardBlockOutput {
  /** Gradient at the layer input [m, D]. */
  dIn: Float32Array;
  /** Gradient w.r.t. the attention probabilities of the query rows [H, queries, to]. */
  dProbs: Float32Array;
}

export interface BlockKernels {
  /**
   * One ViT encoder layer in one call; null when this layer cannot run as one graph here (an activation or
   * weight layout the block graphs do not cover), and the caller takes the per-op path.
   */
  visionLayer(a: VisionBlockInput): Promise<VisionBlockOutput | null>;
  /**
   * The backward of one ViT encoder layer (input gradient and dProbs, no weight gradients) in one call; null
   * as for `visionLayer`.
   */
  visionLayerBackward(a: VisionBlockBackwardInput): Promise<VisionBlockBackwardOutput | null>;
  /** One decoder layer over a fresh prefill (or, int8, any rows) in one call; null as for `visionLayer`. */
  decoderLayer(a: DecoderBlockInput): Promise<DecoderBlockOutput | null>;
  /**
   * Builds an int8 decoder layer's graph ahead of its first use (onnxruntime pre-packs its seven matrices);
   * false when the layer does not run as one graph here, and its matrices take the per-op path.
   */
  prepareDecoderLayer?(spec: Omit<DecoderLayerSpec, "cos" | "sin">): Promise<boolean>;
  /** One decoder layer's backward (input gradient and dProbs) in one call; null as for `visionLayer`. */
  decoderLayerBackward(a: DecoderBackwardBlockInput): Promise<DecoderBackwardBlockOutput | null>;
}
