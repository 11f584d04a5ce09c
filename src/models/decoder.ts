/**
 * The text decoder of llama, mistral, qwen2 and gemma: pre-norm blocks of RoPE attention (GQA) and a gated
 * MLP. Family differences are configuration: q/k/v biases (qwen2), (1+w) RMSNorm and √hidden embedding scale
 * (gemma), explicit head_dim, activation, sliding window (mistral). Rows carry explicit position ids [axes, n]
 * (1 axis: RoPE; 3 axes: M-RoPE); the KV cache and the causal mask count sequence indices.
 */
import type { TextConfig } from "../hf/config.js";
import type { DecoderBlockWeights, DecoderLayerSpec, Kernels, WeightMatrix } from "../kernels/types.js";
import {
  activationFn,
  activationGradFn,
  addInPlace,
  gatedActivation,
  gatedActivationBackward,
  rmsNorm,
  rmsNormBackward,
  rmsNormWeightGrad,
} from "../tensor/ops.js";
import { attention, attentionBackward, rowsFirst } from "./attention.js";
import type { WeightGradients } from "./gradients.js";
import { linearBackwardInput, linearBackwardWeight } from "./linear-grad.js";
import { type PositionIds, positionColumns } from "./positions.js";
import {
  applyRope,
  applyRopeBackward,
  ropeFrequencyAxes,
  ropeInverseFrequencies,
  ropeTables,
} from "./rope.js";
import { LayerTapes } from "./tape-store.js";
import { type ModelWeights, matrixRow } from "./weights.js";

type DecoderLayerWeights = DecoderBlockWeights;

/**
 * Additive causal mask [n, past + n] of n rows after `past` cached ones (row i at position past + i): 0 for
 * the keys the row sees, −∞ elsewhere.
 */
function causalMask(n: number, window: number | null, past = 0): Float32Array {
  const keys = past + n;
  const m = new Float32Array(n * keys).fill(Number.NEGATIVE_INFINITY);
  for (let i = 0; i < n; i++) {
    const p = past + i;
    const from = window === null ? 0 : Math.max(0, p - window + 1);
    m.fill(0, i * keys + from, i * keys + p + 1);
  }
  return m;
}

/**
 * Forward probabilities of `count` tape rows from row r0, keys 0 … to−1: [H, count, to] out of the tape's
 * [H, n, len] (the tape's own array when that is all of it).
 */
function tapeProbRows(
  all: Float32Array,
  H: number,
  n: number,
  len: number,
  r0: number,
  count: number,
  to: number,
): Float32Array {
  if (count === n && to === len) return all;
  const out = new Float32Array(H * count * to);
  for (let h = 0; h < H; h++) {
    for (let r = 0; r < count; r++) {
      const src = (h * n + r0 + r) * len;
      out.set(all.subarray(src, src + to), (h * count + r) * to);
    }
  }
  return out;
}

/** Keys/values of every layer, [kvHeads, capacity, headDim] per layer, filled up to `length`. */
export class KvCache {
  readonly k: Float32Array[] = [];
  readonly v: Float32Array[] = [];
  length = 0;

  constructor(
    layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly capacity: number,
  ) {
    for (let l = 0; l < layers; l++) {
      this.k.push(new Float32Array(kvHeads * capacity * headDim));
      this.v.push(new Float32Array(kvHeads * capacity * headDim));
    }
  }

  /** Store n new rows ([n, kvHeads, headDim] layout) of layer l at positions length … length+n−1. */
  write(l: number, k: Float32Array, v: Float32Array, n: number): void {
    const { kvHeads: KV, headDim: hd, capacity } = this;
    if (this.length + n > capacity) throw new Error(`KV cache full (${capacity} positions)`);
    for (let i = 0; i < n; i++) {
      for (let g = 0; g < KV; g++) {
        const dst = (g * capacity + this.length + i) * hd;
        const src = (i * KV + g) * hd;
        this.k[l].set(k.subarray(src, src + hd), dst);
        this.v[l].set(v.subarray(src, src + hd), dst);
      }
    }
  }
}

export interface DecoderStepOptions {
  /** Rows of the final hidden state for which logits are wanted (default: the last one only). */
  logitRows?: number[];
  /** Keep each layer's input hidden states and final-normed output (for parity tests). */
  collectHidden?: boolean;
  /**
   * Keep every activation the backward pass needs (opt-in: generation does not pay the memory): `true` for
   * weight gradients too (training), "input-gradients" for what relevancy's backward reads (no x, ctx, x2:
   * three rows of hidden size per position and layer less). The keys and values stay in the KV cache, so the
   * cache must not be reused while the tape is in use.
   */
  tape?: boolean | "input-gradients";
  /**
   * Return every layer's attention probabilities (default true). A caller that reads them from the tape
   * says false: with the tape's layers in a file they would otherwise all stay in memory (1.4 GB at 7B).
   */
  returnAttentions?: boolean;
  /**
   * Hands each layer's attention probabilities over as soon as the layer has run, instead of returning them
   * all at the end (`attentions` is then empty): a caller can put them out of memory layer by layer.
   */
  onAttention?: (layer: number, probs: Float32Array) => void;
  /** Where the tape's layers go (default: all in memory); see `LayerTapes`. */
  tapeLayers?: LayerTapes<DecoderLayerTape>;
  /** Hook on each layer's attention probabilities (see `AttentionInputs.onProbs`), e.g. for finite differences. */
  probsHook?: (layer: number, groupProbs: Float32Array, group: number) => void;
}

/** Activations of one decoder layer for rows p0 … p0+n−1 (absolute positions), kept for the backward pass. */
export interface DecoderLayerTape {
  /** Layer input h [n, D]. */
  hIn: Float32Array;
  /** input_layernorm(h) [n, D]; this, ctx and x2 only in a tape for weight gradients. */
  x?: Float32Array;
  /** Queries after RoPE [n, H·hd]. */
  q: Float32Array;
  /** Attention output before o_proj [n, H·hd]. */
  ctx?: Float32Array;
  /** Attention probabilities [H, n, p0+n]. */
  probs: Float32Array;
  /** h + o_proj(attention) [n, D]. */
  h1: Float32Array;
  /** post_attention_layernorm(h1) [n, D]. */
  x2?: Float32Array;
  /** gate_proj / up_proj outputs [n, I]. */
  gate: Float32Array;
  up: Float32Array;
}

/** Everything the backward pass needs from one `forward` call (rows p0 … p0+n−1). */
export interface DecoderTape {
  p0: number;
  n: number;
  /** Position ids of rows p0 … p0+n−1 (RoPE's backward rotates back by the same angles). */
  positions: PositionIds;
  /** Per layer; `dispose()` them when the backward passes are done. */
  layers: LayerTapes<DecoderLayerTape>;
  /** Input of the final norm [n, D]. */
  hFinal: Float32Array;
  /** The cache the forward wrote: keys (after RoPE) and values of positions 0 … p0+n−1. */
  cache: KvCache;
}

/** The activations only weight gradients read; a tape recorded for input gradients has none. */
function weightGradientTape(t: DecoderLayerTape): { x: Float32Array; ctx: Float32Array; x2: Float32Array } {
  if (!t.x || !t.ctx || !t.x2)
    throw new Error(
      "decoder backward: weight gradients need a tape recorded with { tape: true } (this one keeps only what input gradients read)",
    );
  return { x: t.x, ctx: t.ctx, x2: t.x2 };
}

/** A backward target: the logit of vocabulary entry `tokenId` at absolute position `row`. */
export interface LogitTarget {
  row: number;
  tokenId: number;
}

export interface DecoderBackwardOptions {
  /**
   * First absolute position whose hidden states are variables (default: the tape's p0). Rows before it are
   * treated as constants: their keys and values get no gradient. `from = target row` gives the
   * single-position backward of a KV-cache step (the gradient w.r.t. the newest attention row only).
   */
  from?: number;
  /**
   * Called once per layer, from the last layer down, with the gradient w.r.t. that layer's attention
   * probabilities, dProbs [H, to−from, to] for query rows from … to−1 (to = last target row + 1), and the
   * forward probabilities of the same window.
   */
  onLayer?: (layer: number, dProbs: Float32Array, probs: Float32Array, from: number, to: number) => void;
  /** Accumulate weight gradients here (training). */
  grads?: WeightGradients;
}

export interface DecoderBackwardResult {
  from: number;
  to: number;
  /** d(Σ target logits)/d(inputs_embeds) for rows from … to−1 [to−from, D] (Gemma's √D scale included). */
  dInputsEmbeds: Float32Array;
}

export interface DecoderStepResult {
  /** [logitRows.length, vocab] */
  logits: Float32Array;
  /** Per layer: attention probabilities [heads, n, cacheLengthAfter] (none with `returnAttentions: false` or `onAttention`). */
  attentions: Float32Array[];
  /** HF `hidden_states` convention when collected: [input of layer 0, out 0, …, out L−2, norm(out L−1)]. */
  hiddenStates?: Float32Array[];
  /** With `tape: true`. */
  tape?: DecoderTape;
}

export class TextDecoder {
  readonly embedTokens: WeightMatrix;
  readonly lmHead: WeightMatrix;
  readonly finalNorm: Float32Array;
  readonly layers: DecoderLayerWeights[] = [];
  readonly invFreq: Float32Array;
  /** Position-id axis of each rotary frequency (all 0 unless the config has an M-RoPE section). */
  readonly freqAxes: Uint8Array;
  readonly act: (x: number) => number;
  readonly actGrad: (x: number) => number;

  constructor(
    readonly cfg: TextConfig,
    w: ModelWeights,
  ) {
    const {
      hiddenSize: D,
      numHeads: H,
      numKvHeads: KV,
      headDim: hd,
      intermediateSize: I,
      vocabSize: V,
    } = cfg;
    this.embedTokens = w.matrix("text.embed_tokens.weight", [V, D]);
    if (w.has("lm_head")) this.lmHead = w.matrix("lm_head", [V, D]);
    else if (cfg.tieWordEmbeddings) this.lmHead = this.embedTokens;
    else
      throw new Error(`${w.dir}: missing tensor "${w.diskName("lm_head")}" and tie_word_embeddings is false`);
    this.finalNorm = w.vector("text.norm.weight", [D]);
    this.invFreq = ropeInverseFrequencies(hd, cfg.ropeTheta, cfg.ropeScaling);
    this.freqAxes = ropeFrequencyAxes(hd, cfg.ropeScaling.mropeSection ?? null);
    this.act = activationFn(cfg.hiddenAct);
    this.actGrad = activationGradFn(cfg.hiddenAct);
    const opt = (name: string, n: number, present: boolean) => (present ? w.vector(name, [n]) : null);
    for (let i = 0; i < cfg.numLayers; i++) {
      const l = `text.layers.${i}.`;
      const qkvBias = cfg.qkvBias || w.has(`${l}self_attn.q_proj.bias`);
      const mlpBias = cfg.mlpBias;
      this.layers.push({
        inputNorm: w.vector(`${l}input_layernorm.weight`, [D]),
        q: w.matrix(`${l}self_attn.q_proj.weight`, [H * hd, D]),
        qb: opt(`${l}self_attn.q_proj.bias`, H * hd, qkvBias),
        k: w.matrix(`${l}self_attn.k_proj.weight`, [KV * hd, D]),
        kb: opt(`${l}self_attn.k_proj.bias`, KV * hd, qkvBias),
        v: w.matrix(`${l}self_attn.v_proj.weight`, [KV * hd, D]),
        vb: opt(`${l}self_attn.v_proj.bias`, KV * hd, qkvBias),
        o: w.matrix(`${l}self_attn.o_proj.weight`, [D, H * hd]),
        ob: opt(`${l}self_attn.o_proj.bias`, D, cfg.oBias),
        postNorm: w.vector(`${l}post_attention_layernorm.weight`, [D]),
        gate: w.matrix(`${l}mlp.gate_proj.weight`, [I, D]),
        gateB: opt(`${l}mlp.gate_proj.bias`, I, mlpBias),
        up: w.matrix(`${l}mlp.up_proj.weight`, [I, D]),
        upB: opt(`${l}mlp.up_proj.bias`, I, mlpBias),
        down: w.matrix(`${l}mlp.down_proj.weight`, [D, I]),
        downB: opt(`${l}mlp.down_proj.bias`, D, mlpBias),
      });
    }
  }

  newCache(capacity: number): KvCache {
    return new KvCache(this.cfg.numLayers, this.cfg.numKvHeads, this.cfg.headDim, capacity);
  }

  /** embed_tokens lookup, [ids.length, hidden]. */
  embed(ids: number[]): Float32Array {
    const D = this.cfg.hiddenSize;
    const out = new Float32Array(ids.length * D);
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= this.cfg.vocabSize)
        throw new Error(`token id ${id} outside the vocabulary (${this.cfg.vocabSize})`);
      matrixRow(this.embedTokens, id, out.subarray(i * D, (i + 1) * D));
    });
    return out;
  }

  private norm(x: Float32Array, n: number, w: Float32Array): Float32Array {
    return rmsNorm(x, n, this.cfg.hiddenSize, w, this.cfg.rmsNormEps, this.cfg.gemmaStyle);
  }

  async layer(
    kernels: Kernels,
    i: number,
    h: Float32Array,
    positions: PositionIds,
    cache: KvCache,
    extra: {
      keep?: boolean | "input-gradients";
      probsHook?: (groupProbs: Float32Array, group: number) => void;
    } = {},
  ): Promise<{ h: Float32Array; probs: Float32Array; tape?: DecoderLayerTape }> {
    const L = this.layers[i];
    const { numHeads: H, numKvHeads: KV, headDim: hd } = this.cfg;
    const n = positions.n;
    const p0 = cache.length;
    // The layer runs as one native call when the kernels have a block graph for it: from an empty cache, or
    // with int8 weights after cached rows too (the blocks say null otherwise). A probabilities hook takes the
    // per-op path below.
    if (kernels.blocks && (p0 === 0 || L.q.dtype === "Q8") && !extra.probsHook) {
      const b = await kernels.blocks.decoderLayer({
        ...this.blockSpec(i, positions),
        h,
        n,
        mask: causalMask(n, this.cfg.slidingWindow, p0),
        tape: Boolean(extra.keep),
        inputGradientsOnly: extra.keep === "input-gradients",
        cache: { k: cache.k[i], v: cache.v[i], capacity: cache.capacity, past: p0 },
      });
      if (b) {
        cache.write(i, b.k, b.v, n);
        const tape = b.tape ? { hIn: h, probs: b.probs, ...b.tape } : undefined;
        return { h: b.h, probs: b.probs, tape };
      }
    }
    const x = this.norm(h, n, L.inputNorm);
    const q = await kernels.linear(x, n, L.q, L.qb);
    const k = await kernels.linear(x, n, L.k, L.kb);
    const v = await kernels.linear(x, n, L.v, L.vb);
    applyRope(q, n, H, hd, positions, this.invFreq, this.freqAxes);
    applyRope(k, n, KV, hd, positions, this.invFreq, this.freqAxes);
    cache.write(i, k, v, n);
    const att = await attention(kernels, {
      q,
      k: cache.k[i],
      v: cache.v[i],
      kvStride: cache.capacity * hd,
      n,
      len: p0 + n,
      heads: H,
      kvHeads: KV,
      headDim: hd,
      scale: hd ** -0.5,
      queryOffset: p0,
      window: this.cfg.slidingWindow,
      onProbs: extra.probsHook,
    });
    const h1 = await kernels.linear(att.out, n, L.o, L.ob);
    addInPlace(h1, h);
    const x2 = this.norm(h1, n, L.postNorm);
    const gate = await kernels.linear(x2, n, L.gate, L.gateB);
    const up = await kernels.linear(x2, n, L.up, L.upB);
    const h2 = await kernels.linear(gatedActivation(gate, up, this.act), n, L.down, L.downB);
    addInPlace(h2, h1);
    const tape = !extra.keep
      ? undefined
      : extra.keep === "input-gradients"
        ? { hIn: h, q, probs: att.probs, h1, gate, up }
        : { hIn: h, x, q, ctx: att.out, probs: att.probs, h1, x2, gate, up };
    return { h: h2, probs: att.probs, tape };
  }

  /**
   * Run n = positions.n new rows (after the cache's current length) from their input embeddings, at the given
   * position ids; appends to the cache. Gemma's √hidden scale is applied here, to image features and text
   * embeddings alike.
   */
  async forward(
    kernels: Kernels,
    inputsEmbeds: Float32Array,
    positions: PositionIds,
    cache: KvCache,
    opts: DecoderStepOptions = {},
  ): Promise<DecoderStepResult> {
    const D = this.cfg.hiddenSize;
    const n = positions.n;
    if (inputsEmbeds.length !== n * D)
      throw new RangeError(`${inputsEmbeds.length / D} embedding rows for ${n} position ids`);
    let h: Float32Array = inputsEmbeds.slice();
    if (this.cfg.gemmaStyle) {
      const s = Math.fround(Math.sqrt(D));
      for (let i = 0; i < h.length; i++) h[i] *= s;
    }
    const hidden: Float32Array[] | undefined = opts.collectHidden ? [h] : undefined;
    const attentions: Float32Array[] = [];
    const p0 = cache.length;
    const layerTapes = opts.tape ? (opts.tapeLayers ?? new LayerTapes<DecoderLayerTape>()) : null;
    for (let i = 0; i < this.layers.length; i++) {
      const hook = opts.probsHook;
      const r = await this.layer(kernels, i, h, positions, cache, {
        keep: opts.tape,
        probsHook: hook ? (p, g) => hook(i, p, g) : undefined,
      });
      h = r.h;
      if (opts.onAttention) opts.onAttention(i, r.probs);
      else if (opts.returnAttentions !== false) attentions.push(r.probs);
      if (r.tape) layerTapes?.push(r.tape);
      if (hidden && i < this.layers.length - 1) hidden.push(h);
    }
    cache.length += n;
    const rows = opts.logitRows ?? [n - 1];
    const normed = this.norm(h, n, this.finalNorm);
    if (hidden) hidden.push(normed);
    const sel = new Float32Array(rows.length * D);
    rows.forEach((r, j) => {
      sel.set(normed.subarray(r * D, (r + 1) * D), j * D);
    });
    const logits = await kernels.linear(sel, rows.length, this.lmHead);
    const tape = layerTapes ? { p0, n, positions, layers: layerTapes, hFinal: h, cache } : undefined;
    return { logits, attentions, hiddenStates: hidden, tape };
  }

  /** Layer i as the block graphs take it, for rows at the given positions (their RoPE angles as data). */
  private blockSpec(i: number, positions: PositionIds): DecoderLayerSpec {
    const { cos, sin } = ropeTables(positions, this.cfg.headDim, this.invFreq, this.freqAxes);
    return { ...this.layerSpec(i), cos, sin };
  }

  private layerSpec(i: number): Omit<DecoderLayerSpec, "cos" | "sin"> {
    return {
      heads: this.cfg.numHeads,
      kvHeads: this.cfg.numKvHeads,
      headDim: this.cfg.headDim,
      eps: this.cfg.rmsNormEps,
      unitOffset: this.cfg.gemmaStyle,
      act: this.cfg.hiddenAct,
      weights: this.layers[i],
    };
  }

  /**
   * Builds, before the first question, the block graphs that hold weights of their own (layers with int8
   * weights: onnxruntime pre-packs them); returns the matrices those graphs now hold. `onHeld` hears of each
   * layer's as soon as its graph holds them (a forward-only caller frees their TypeScript copy there and then).
   */
  async prepareLayers(
    kernels: Kernels,
    opts: {
      onLayer?: (done: number, total: number) => void;
      onHeld?: (matrices: WeightMatrix[]) => void;
    } = {},
  ): Promise<WeightMatrix[]> {
    const blocks = kernels.blocks;
    if (!blocks?.prepareDecoderLayer) return [];
    const held: WeightMatrix[] = [];
    for (let i = 0; i < this.layers.length; i++) {
      opts.onLayer?.(i, this.layers.length);
      const L = this.layers[i];
      if (await blocks.prepareDecoderLayer(this.layerSpec(i))) {
        const matrices = [L.q, L.k, L.v, L.o, L.gate, L.up, L.down];
        opts.onHeld?.(matrices);
        held.push(...matrices);
      }
    }
    opts.onLayer?.(this.layers.length, this.layers.length);
    return held;
  }

  /**
   * Backward of one layer over the variable rows from … to−1 (absolute positions; rows before `from` are
   * constants), of which rows queryFrom … to−1 have a gradient at the layer output: dOut [to−queryFrom, D]
   * (queryFrom = from but at the top layer, where only the target rows have one). Returns the gradient at the
   * layer input of the variable rows [to−from, D], and the gradient w.r.t. the attention probabilities of the
   * query rows [H, to−queryFrom, to] with the matching forward probabilities.
   */
  async layerBackward(
    kernels: Kernels,
    i: number,
    tape: DecoderTape,
    dOut: Float32Array,
    from: number,
    to: number,
    grads?: WeightGradients,
    queryFrom = from,
  ): Promise<{ dIn: Float32Array; dProbs: Float32Array; probs: Float32Array }> {
    const L = this.layers[i];
    const T = tape.layers.get(i);
    const { hiddenSize: D, numHeads: H, numKvHeads: KV, headDim: hd, intermediateSize: I } = this.cfg;
    const eps = this.cfg.rmsNormEps;
    const gemma = this.cfg.gemmaStyle;
    if (from < tape.p0 || to > tape.p0 + tape.n || from >= to || queryFrom < from || queryFrom >= to) {
      throw new Error(
        `layerBackward: rows ${from}…${to - 1} (queries from ${queryFrom}) outside the tape (${tape.p0}…${tape.p0 + tape.n - 1})`,
      );
    }
    const m = to - from;
    const mq = to - queryFrom;
    const r0 = from - tape.p0;
    const q0 = queryFrom - tape.p0;
    const rows = (a: Float32Array, width: number) => a.subarray(r0 * width, (r0 + m) * width);
    const queryRows = (a: Float32Array, width: number) => a.subarray(q0 * width, (q0 + mq) * width);
    const probs = tapeProbRows(T.probs, H, tape.n, tape.p0 + tape.n, q0, mq, to);
    const positions = positionColumns(tape.positions, r0, m);
    const queryPositions = mq === m ? positions : positionColumns(tape.positions, q0, mq);
    // Without weight gradients the whole layer's backward runs as one native call when the kernels have
    // block graphs; the per-op path below is the reference it matches (and what training runs).
    if (!grads && kernels.blocks) {
      const keys = mq === m ? null : ropeTables(positions, hd, this.invFreq, this.freqAxes);
      const spec = this.blockSpec(i, queryPositions);
      const b = await kernels.blocks.decoderLayerBackward({
        ...spec,
        keyCos: keys?.cos ?? spec.cos,
        keySin: keys?.sin ?? spec.sin,
        dOut,
        m,
        queries: mq,
        to,
        hIn: rows(T.hIn, D),
        h1: queryRows(T.h1, D),
        gate: queryRows(T.gate, I),
        up: queryRows(T.up, I),
        q: queryRows(T.q, H * hd),
        k: tape.cache.k[i],
        v: tape.cache.v[i],
        capacity: tape.cache.capacity,
        probs,
      });
      if (b) return { dIn: b.dIn, dProbs: b.dProbs, probs };
    }
    const w = grads ? { grads, ...weightGradientTape(T) } : null;
    // MLP: h2 = h1 + down(act(gate(x2)) ⊙ up(x2)), x2 = norm(h1); query rows only.
    const dm = await linearBackwardInput(kernels, dOut, mq, L.down);
    const {
      dGate,
      dUp,
      product: mid,
    } = gatedActivationBackward(queryRows(T.gate, I), queryRows(T.up, I), dm, this.act, this.actGrad);
    const dx2 = await linearBackwardInput(kernels, dGate, mq, L.gate);
    addInPlace(dx2, await linearBackwardInput(kernels, dUp, mq, L.up));
    if (w) {
      await linearBackwardWeight(kernels, dOut, mid, mq, L.down, L.downB, w.grads);
      await linearBackwardWeight(kernels, dGate, queryRows(w.x2, D), mq, L.gate, L.gateB, w.grads);
      await linearBackwardWeight(kernels, dUp, queryRows(w.x2, D), mq, L.up, L.upB, w.grads);
      rmsNormWeightGrad(queryRows(T.h1, D), dx2, mq, D, eps, w.grads.of(L.postNorm));
    }
    const dh1 = rmsNormBackward(queryRows(T.h1, D), dx2, mq, D, L.postNorm, eps, gemma);
    addInPlace(dh1, dOut);
    // Attention: h1 = h + o(attn(q, k, v)), q/k/v from x = norm(h).
    const dCtx = await linearBackwardInput(kernels, dh1, mq, L.o);
    if (w) await linearBackwardWeight(kernels, dh1, queryRows(w.ctx, H * hd), mq, L.o, L.ob, w.grads);
    const cache = tape.cache;
    const ab = await attentionBackward(kernels, {
      q: queryRows(T.q, H * hd),
      k: cache.k[i],
      v: cache.v[i],
      kvStride: cache.capacity * hd,
      probs,
      dOut: dCtx,
      m: mq,
      len: to,
      heads: H,
      kvHeads: KV,
      headDim: hd,
      scale: hd ** -0.5,
    });
    const dq = ab.dq;
    applyRopeBackward(dq, mq, H, hd, queryPositions, this.invFreq, this.freqAxes);
    const dk = rowsFirst(ab.dk, KV, to, hd, from, m);
    applyRopeBackward(dk, m, KV, hd, positions, this.invFreq, this.freqAxes);
    const dv = rowsFirst(ab.dv, KV, to, hd, from, m);
    // dx of the variable rows: the query rows' q term (the others' is zero), then k and v.
    const dx = new Float32Array(m * D);
    dx.set(await linearBackwardInput(kernels, dq, mq, L.q), (m - mq) * D);
    addInPlace(dx, await linearBackwardInput(kernels, dk, m, L.k));
    addInPlace(dx, await linearBackwardInput(kernels, dv, m, L.v));
    if (w) {
      const x = rows(w.x, D);
      await linearBackwardWeight(kernels, dq, queryRows(w.x, D), mq, L.q, L.qb, w.grads);
      await linearBackwardWeight(kernels, dk, x, m, L.k, L.kb, w.grads);
      await linearBackwardWeight(kernels, dv, x, m, L.v, L.vb, w.grads);
      rmsNormWeightGrad(rows(T.hIn, D), dx, m, D, eps, w.grads.of(L.inputNorm));
    }
    const dIn = rmsNormBackward(rows(T.hIn, D), dx, m, D, L.inputNorm, eps, gemma);
    addInPlace(dIn.subarray((m - mq) * D), dh1);
    return { dIn, dProbs: ab.dProbs, probs };
  }

  /**
   * Gradient of Σ targets' logits (one-hot dLogits, so the final hidden gradient of a target row is the
   * lm_head row of its token) back through every layer to the input embeddings, reporting each layer's
   * dProbs on the way (see `DecoderBackwardOptions`).
   */
  async backward(
    kernels: Kernels,
    tape: DecoderTape,
    targets: LogitTarget[],
    opts: DecoderBackwardOptions = {},
  ): Promise<DecoderBackwardResult> {
    const D = this.cfg.hiddenSize;
    if (targets.length === 0) throw new Error("backward: no target");
    const to = Math.max(...targets.map((t) => t.row)) + 1;
    const from = opts.from ?? tape.p0;
    if (from > Math.min(...targets.map((t) => t.row))) {
      throw new Error(`backward: a target row lies before the first variable row ${from}`);
    }
    const m = to - from;
    const dNormed = new Float32Array(m * D);
    const row = new Float32Array(D);
    for (const t of targets) {
      if (!Number.isInteger(t.tokenId) || t.tokenId < 0 || t.tokenId >= this.cfg.vocabSize) {
        throw new Error(`backward: token id ${t.tokenId} outside the vocabulary (${this.cfg.vocabSize})`);
      }
      matrixRow(this.lmHead, t.tokenId, row);
      const o = (t.row - from) * D;
      for (let j = 0; j < D; j++) dNormed[o + j] += row[j];
    }
    return this.backwardFromNormed(kernels, tape, dNormed, from, to, opts);
  }

  /**
   * Backward of a loss given by its gradient at the logits of some rows (training: cross-entropy), with
   * weight gradients when `opts.grads` is given (the LM head's included). dLogits is [rows.length, vocab].
   */
  async backwardFromLogits(
    kernels: Kernels,
    tape: DecoderTape,
    rows: number[],
    dLogits: Float32Array,
    opts: DecoderBackwardOptions = {},
  ): Promise<DecoderBackwardResult> {
    const D = this.cfg.hiddenSize;
    if (rows.length === 0) throw new Error("backward: no rows");
    const from = opts.from ?? tape.p0;
    const to = Math.max(...rows) + 1;
    const m = to - from;
    const dSel = await linearBackwardInput(kernels, dLogits, rows.length, this.lmHead);
    const dNormed = new Float32Array(m * D);
    rows.forEach((r, j) => {
      for (let c = 0; c < D; c++) dNormed[(r - from) * D + c] += dSel[j * D + c];
    });
    if (opts.grads) {
      const normed = this.norm(tape.hFinal, tape.n, this.finalNorm);
      const sel = new Float32Array(rows.length * D);
      rows.forEach((r, j) => {
        sel.set(normed.subarray((r - tape.p0) * D, (r - tape.p0 + 1) * D), j * D);
      });
      await linearBackwardWeight(kernels, dLogits, sel, rows.length, this.lmHead, null, opts.grads);
    }
    return this.backwardFromNormed(kernels, tape, dNormed, from, to, opts);
  }

  private async backwardFromNormed(
    kernels: Kernels,
    tape: DecoderTape,
    dNormed: Float32Array,
    from: number,
    to: number,
    opts: DecoderBackwardOptions,
  ): Promise<DecoderBackwardResult> {
    const D = this.cfg.hiddenSize;
    const m = to - from;
    const r0 = from - tape.p0;
    const hLast = tape.hFinal.subarray(r0 * D, (r0 + m) * D);
    if (opts.grads)
      rmsNormWeightGrad(hLast, dNormed, m, D, this.cfg.rmsNormEps, opts.grads.of(this.finalNorm));
    let dh = rmsNormBackward(hLast, dNormed, m, D, this.finalNorm, this.cfg.rmsNormEps, this.cfg.gemmaStyle);
    // At the top layer only the target rows have a gradient at the output: the MLP, o_proj and q backward
    // of the rows before the first of them would multiply zeros, so they run from it on (keys and values of
    // every variable row still get their gradient).
    let first = 0;
    while (first < m - 1 && dh.subarray(first * D, (first + 1) * D).every((x) => x === 0)) first++;
    const H = this.cfg.numHeads;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const top = i === this.layers.length - 1;
      const queryFrom = top ? from + first : from;
      const dOut = top ? dh.subarray(first * D) : dh;
      const r = await this.layerBackward(kernels, i, tape, dOut, from, to, opts.grads, queryFrom);
      if (opts.onLayer && queryFrom > from) {
        // The rows before the first target have dProbs of exactly zero.
        const dProbs = new Float32Array(H * m * to);
        for (let h = 0; h < H; h++)
          dProbs.set(
            r.dProbs.subarray(h * (m - first) * to, (h + 1) * (m - first) * to),
            (h * m + first) * to,
          );
        const probs = tapeProbRows(tape.layers.get(i).probs, H, tape.n, tape.p0 + tape.n, r0, m, to);
        opts.onLayer(i, dProbs, probs, from, to);
      } else opts.onLayer?.(i, r.dProbs, r.probs, from, to);
      dh = r.dIn;
    }
    if (this.cfg.gemmaStyle) {
      const s = Math.fround(Math.sqrt(D));
      for (let i = 0; i < dh.length; i++) dh[i] *= s;
    }
    return { from, to, dInputsEmbeds: dh };
  }

  /** embed_tokens gradient (training): rows of dEmbeds [ids.length, D] added to their tokens' rows. */
  embedBackward(
    ids: number[],
    dEmbeds: Float32Array,
    grads: WeightGradients,
    skip?: (id: number) => boolean,
  ): void {
    const D = this.cfg.hiddenSize;
    const g = grads.of(this.embedTokens);
    ids.forEach((id, i) => {
      if (skip?.(id)) return;
      for (let c = 0; c < D; c++) g[id * D + c] += dEmbeds[i * D + c];
    });
  }
}
