/**
 * The text decoder of llama, mistral, qwen2 and gemma: pre-norm blocks of RoPE attention (GQA) and a gated
 * MLP. Family differences are configuration: q/k/v biases (qwen2), (1+w) RMSNorm and √hidden embedding scale
 * (gemma), explicit head_dim, activation, sliding window (mistral).
 */
import type { TextConfig } from "../hf/config.js";
import type { Kernels, WeightMatrix } from "../kernels/types.js";
import { activationFn, addInPlace, gatedActivation, rmsNorm } from "../tensor/ops.js";
import { attention } from "./attention.js";
import { applyRope, ropeInverseFrequencies } from "./rope.js";
import { type ModelWeights, matrixRow } from "./weights.js";

interface DecoderLayerWeights {
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
}

export interface DecoderStepResult {
  /** [logitRows.length, vocab] */
  logits: Float32Array;
  /** Per layer: attention probabilities [heads, n, cacheLengthAfter]. */
  attentions: Float32Array[];
  /** HF `hidden_states` convention when collected: [input of layer 0, out 0, …, out L−2, norm(out L−1)]. */
  hiddenStates?: Float32Array[];
}

export class TextDecoder {
  readonly embedTokens: WeightMatrix;
  readonly lmHead: WeightMatrix;
  readonly finalNorm: Float32Array;
  readonly layers: DecoderLayerWeights[] = [];
  readonly invFreq: Float32Array;
  readonly act: (x: number) => number;

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
    this.act = activationFn(cfg.hiddenAct);
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
    n: number,
    cache: KvCache,
  ): Promise<{ h: Float32Array; probs: Float32Array }> {
    const L = this.layers[i];
    const { numHeads: H, numKvHeads: KV, headDim: hd } = this.cfg;
    const p0 = cache.length;
    const positions = Array.from({ length: n }, (_, r) => p0 + r);
    const x = this.norm(h, n, L.inputNorm);
    const q = await kernels.linear(x, n, L.q, L.qb);
    const k = await kernels.linear(x, n, L.k, L.kb);
    const v = await kernels.linear(x, n, L.v, L.vb);
    applyRope(q, n, H, hd, positions, this.invFreq);
    applyRope(k, n, KV, hd, positions, this.invFreq);
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
    });
    const h1 = await kernels.linear(att.out, n, L.o, L.ob);
    addInPlace(h1, h);
    const x2 = this.norm(h1, n, L.postNorm);
    const gate = await kernels.linear(x2, n, L.gate, L.gateB);
    const up = await kernels.linear(x2, n, L.up, L.upB);
    const h2 = await kernels.linear(gatedActivation(gate, up, this.act), n, L.down, L.downB);
    addInPlace(h2, h1);
    return { h: h2, probs: att.probs };
  }

  /**
   * Run n new positions (after the cache's current length) from their input embeddings; appends to the
   * cache. Gemma's √hidden scale is applied here, to image features and text embeddings alike.
   */
  async forward(
    kernels: Kernels,
    inputsEmbeds: Float32Array,
    n: number,
    cache: KvCache,
    opts: DecoderStepOptions = {},
  ): Promise<DecoderStepResult> {
    const D = this.cfg.hiddenSize;
    let h: Float32Array = inputsEmbeds.slice();
    if (this.cfg.gemmaStyle) {
      const s = Math.fround(Math.sqrt(D));
      for (let i = 0; i < h.length; i++) h[i] *= s;
    }
    const hidden: Float32Array[] | undefined = opts.collectHidden ? [h] : undefined;
    const attentions: Float32Array[] = [];
    for (let i = 0; i < this.layers.length; i++) {
      const r = await this.layer(kernels, i, h, n, cache);
      h = r.h;
      attentions.push(r.probs);
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
    return { logits, attentions, hiddenStates: hidden };
  }
}
