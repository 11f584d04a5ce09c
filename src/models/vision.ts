/**
 * CLIP and SigLIP vision towers (pre-LN ViT encoders). Forward returns every hidden state (LLaVA picks one
 * by `vision_feature_layer`) and every layer's attention probabilities.
 */
import type { VisionConfig } from "../hf/config.js";
import type { Kernels, VisionBlockWeights, WeightMatrix } from "../kernels/types.js";
import {
  activationBackward,
  activationFn,
  activationGradFn,
  addInPlace,
  applyActivation,
  layerNorm,
  layerNormBackward,
  layerNormParamGrad,
} from "../tensor/ops.js";
import { attention, attentionBackward, headsFirst, rowsFirst } from "./attention.js";
import type { WeightGradients } from "./gradients.js";
import { linearBackwardInput, linearBackwardWeight } from "./linear-grad.js";
import { LayerTapes } from "./tape-store.js";
import type { ModelWeights } from "./weights.js";

type VisionLayerWeights = VisionBlockWeights;

export interface VisionOutput {
  /** hidden_states[0] = embeddings (after CLIP's pre-LN), [i+1] = output of layer i; each [seq, hidden]. */
  hiddenStates: Float32Array[];
  /** Per layer: [heads, seq, seq]. */
  attentions: Float32Array[];
  seqLen: number;
  gridRows: number;
  gridCols: number;
  /** With `tape: true`: the activations the backward pass needs. */
  tape?: VisionTape;
}

export interface VisionForwardOptions {
  /** Keep every activation the backward pass needs (opt-in). */
  tape?: boolean;
  /** Where the tape's layers go (default: all in memory); see `LayerTapes`. */
  tapeLayers?: LayerTapes<VisionLayerTape>;
  /** Return every layer's attention probabilities (default true); see `DecoderStepOptions`. */
  returnAttentions?: boolean;
  /** Hands each layer's probabilities over as the layer finishes, instead of returning them. */
  onAttention?: (layer: number, probs: Float32Array) => void;
  /** Hook on each layer's attention probabilities (see `AttentionInputs.onProbs`), e.g. for finite differences. */
  probsHook?: (layer: number, groupProbs: Float32Array, group: number) => void;
}

/** Activations of one encoder layer, kept for the backward pass (n = sequence length). */
export interface VisionLayerTape {
  hIn: Float32Array;
  /** layer_norm1(h) [n, D]. */
  x: Float32Array;
  /** Queries [n, D]; keys and values heads-first [H, n, hd]. */
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** [H, n, n]. */
  probs: Float32Array;
  /** Attention output before out_proj [n, D]. */
  ctx: Float32Array;
  h1: Float32Array;
  /** layer_norm2(h1) [n, D]. */
  x2: Float32Array;
  /** fc1 output before the activation [n, I]. */
  u: Float32Array;
}

export interface VisionTape {
  /** Embeddings before CLIP's pre-LN (= hidden_states[0] for SigLIP) [seq, D]. */
  embeddings: Float32Array;
  /** The unfolded pixel patches [g·g, C·p·p] that the patch embedding multiplied. */
  patches: Float32Array;
  /** Per layer; `dispose()` them when the backward passes are done. */
  layers: LayerTapes<VisionLayerTape>;
}

export interface VisionBackwardOptions {
  /**
   * Called once per layer, from the top down, with dProbs [H, n, n] and the forward probabilities ([passes,
   * H, n, n], pass-major, from `backwardPasses`).
   */
  onLayer?: (layer: number, dProbs: Float32Array, probs: Float32Array) => void;
  /** Also return the gradient w.r.t. pixel_values (through pre-LN, positions and the patch convolution). */
  pixels?: boolean;
  /** Accumulate weight gradients here (training), the projector's included when called from LLaVA. */
  grads?: WeightGradients;
}

export interface VisionBackwardResult {
  /** Gradient at hidden_states[0] [seq, D]. */
  dHidden0: Float32Array;
  /** Gradient at pixel_values [C, S, S] (with `pixels: true`). */
  dPixels?: Float32Array;
}

/** The arrays one after the other. */
function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export class VisionTower {
  readonly patch: WeightMatrix;
  readonly patchBias: Float32Array | null;
  readonly classEmbedding: Float32Array | null;
  readonly positionEmbedding: Float32Array;
  readonly preLnW: Float32Array | null;
  readonly preLnB: Float32Array | null;
  readonly layers: VisionLayerWeights[] = [];
  readonly act: (x: number) => number;
  readonly actGrad: (x: number) => number;
  readonly grid: number;

  constructor(
    readonly cfg: VisionConfig,
    w: ModelWeights,
  ) {
    const D = cfg.hiddenSize;
    const p = cfg.patchSize;
    const C = cfg.numChannels;
    // A stride-p convolution without padding: pixels past the last whole patch are ignored, as in HF (SigLIP
    // so400m: 384 px, patch 14 → 27×27).
    this.grid = Math.floor(cfg.imageSize / p);
    const nPos = this.grid * this.grid + (cfg.hasCls ? 1 : 0);
    this.patch = w.matrix("vision.embeddings.patch_embedding.weight", [D, C, p, p]);
    this.patchBias = cfg.hasCls ? null : w.vector("vision.embeddings.patch_embedding.bias", [D]);
    this.classEmbedding = cfg.hasCls ? w.vector("vision.embeddings.class_embedding", [D]) : null;
    this.positionEmbedding = w.vector("vision.embeddings.position_embedding.weight", [nPos, D]);
    this.preLnW = cfg.hasCls ? w.vector("vision.pre_layrnorm.weight", [D]) : null;
    this.preLnB = cfg.hasCls ? w.vector("vision.pre_layrnorm.bias", [D]) : null;
    this.act = activationFn(cfg.hiddenAct);
    this.actGrad = activationGradFn(cfg.hiddenAct);
    const I = cfg.intermediateSize;
    for (let i = 0; i < cfg.numLayers; i++) {
      const l = `vision.encoder.layers.${i}.`;
      this.layers.push({
        ln1w: w.vector(`${l}layer_norm1.weight`, [D]),
        ln1b: w.vector(`${l}layer_norm1.bias`, [D]),
        q: w.matrix(`${l}self_attn.q_proj.weight`, [D, D]),
        qb: w.vector(`${l}self_attn.q_proj.bias`, [D]),
        k: w.matrix(`${l}self_attn.k_proj.weight`, [D, D]),
        kb: w.vector(`${l}self_attn.k_proj.bias`, [D]),
        v: w.matrix(`${l}self_attn.v_proj.weight`, [D, D]),
        vb: w.vector(`${l}self_attn.v_proj.bias`, [D]),
        o: w.matrix(`${l}self_attn.out_proj.weight`, [D, D]),
        ob: w.vector(`${l}self_attn.out_proj.bias`, [D]),
        ln2w: w.vector(`${l}layer_norm2.weight`, [D]),
        ln2b: w.vector(`${l}layer_norm2.bias`, [D]),
        fc1: w.matrix(`${l}mlp.fc1.weight`, [I, D]),
        fc1b: w.vector(`${l}mlp.fc1.bias`, [I]),
        fc2: w.matrix(`${l}mlp.fc2.weight`, [D, I]),
        fc2b: w.vector(`${l}mlp.fc2.bias`, [D]),
      });
    }
  }

  get seqLen(): number {
    return this.grid * this.grid + (this.cfg.hasCls ? 1 : 0);
  }

  /** Patch embedding (a stride-p convolution as a matmul over unfolded patches) + CLS + positions. */
  async embed(kernels: Kernels, pixels: Float32Array): Promise<Float32Array> {
    return (await this.embedWithTape(kernels, pixels)).h;
  }

  private async embedWithTape(
    kernels: Kernels,
    pixels: Float32Array,
  ): Promise<{ h: Float32Array; embeddings: Float32Array; patches: Float32Array }> {
    const { patchSize: p, numChannels: C, hiddenSize: D, imageSize: S } = this.cfg;
    const g = this.grid;
    if (pixels.length !== C * S * S)
      throw new Error(`pixel_values has ${pixels.length} values, the vision tower expects ${C}×${S}×${S}`);
    const cols = C * p * p;
    const patches = new Float32Array(g * g * cols);
    for (let gy = 0; gy < g; gy++) {
      for (let gx = 0; gx < g; gx++) {
        const o = (gy * g + gx) * cols;
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < p; ky++) {
            const src = (c * S + gy * p + ky) * S + gx * p;
            patches.set(pixels.subarray(src, src + p), o + (c * p + ky) * p);
          }
        }
      }
    }
    const pe = await kernels.linear(patches, g * g, this.patch, this.patchBias);
    const cls = this.cfg.hasCls ? 1 : 0;
    const h = new Float32Array(this.seqLen * D);
    if (this.classEmbedding) h.set(this.classEmbedding, 0);
    h.set(pe, cls * D);
    addInPlace(h, this.positionEmbedding);
    if (this.preLnW && this.preLnB) {
      return {
        h: layerNorm(h, this.seqLen, D, this.preLnW, this.preLnB, this.cfg.layerNormEps),
        embeddings: h,
        patches,
      };
    }
    return { h, embeddings: h, patches };
  }

  /**
   * Backward of `embed`: dh0 (gradient at hidden_states[0]) → through pre-LN → positions/CLS (constants) →
   * patch convolution (dpatches = dpe·W) → folded back onto the pixel grid.
   */
  async embedBackward(kernels: Kernels, tape: VisionTape, dh0: Float32Array): Promise<Float32Array> {
    const { patchSize: p, numChannels: C, hiddenSize: D, imageSize: S } = this.cfg;
    const g = this.grid;
    const dEmb =
      this.preLnW && this.preLnB
        ? layerNormBackward(tape.embeddings, dh0, this.seqLen, D, this.preLnW, this.cfg.layerNormEps)
        : dh0;
    const cls = this.cfg.hasCls ? 1 : 0;
    const dpe = dEmb.subarray(cls * D, (cls + g * g) * D);
    const dPatches = await linearBackwardInput(kernels, dpe, g * g, this.patch);
    const cols = C * p * p;
    const dPixels = new Float32Array(C * S * S);
    for (let gy = 0; gy < g; gy++) {
      for (let gx = 0; gx < g; gx++) {
        const o = (gy * g + gx) * cols;
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < p; ky++) {
            const dst = (c * S + gy * p + ky) * S + gx * p;
            const src = o + (c * p + ky) * p;
            for (let kx = 0; kx < p; kx++) dPixels[dst + kx] += dPatches[src + kx];
          }
        }
      }
    }
    return dPixels;
  }

  /** Gradients of the embedding parameters (training): pre-LN, class and position embeddings, patch conv. */
  async embedParamGrads(
    kernels: Kernels,
    tape: VisionTape,
    dh0: Float32Array,
    grads: WeightGradients,
  ): Promise<void> {
    const D = this.cfg.hiddenSize;
    const n = this.seqLen;
    let dEmb = dh0;
    if (this.preLnW && this.preLnB) {
      layerNormParamGrad(
        tape.embeddings,
        dh0,
        n,
        D,
        this.cfg.layerNormEps,
        grads.of(this.preLnW),
        grads.of(this.preLnB),
      );
      dEmb = layerNormBackward(tape.embeddings, dh0, n, D, this.preLnW, this.cfg.layerNormEps);
    }
    addInPlace(grads.of(this.positionEmbedding), dEmb);
    const cls = this.cfg.hasCls ? 1 : 0;
    if (this.classEmbedding) addInPlace(grads.of(this.classEmbedding), dEmb.subarray(0, D));
    const g = this.grid;
    await linearBackwardWeight(
      kernels,
      dEmb.subarray(cls * D, (cls + g * g) * D),
      tape.patches,
      g * g,
      this.patch,
      this.patchBias,
      grads,
    );
  }

  async layer(
    kernels: Kernels,
    i: number,
    h: Float32Array,
    extra: { keep?: boolean; probsHook?: (groupProbs: Float32Array, group: number) => void } = {},
  ): Promise<{ h: Float32Array; probs: Float32Array; tape?: VisionLayerTape }> {
    const L = this.layers[i];
    const { hiddenSize: D, numHeads: H, layerNormEps: eps } = this.cfg;
    const n = this.seqLen;
    const hd = D / H;
    // One native call for the whole layer when the kernels have block graphs; a probabilities hook edits
    // them between softmax and values, which only the per-op path below can do.
    if (kernels.blocks && !extra.probsHook) {
      const keep = extra.keep ?? false;
      const b = await kernels.blocks.visionLayer({
        h,
        n,
        heads: H,
        eps,
        act: this.cfg.hiddenAct,
        weights: L,
        tape: keep,
      });
      if (b)
        return { h: b.h, probs: b.probs, tape: b.tape ? { hIn: h, probs: b.probs, ...b.tape } : undefined };
    }
    const x = layerNorm(h, n, D, L.ln1w, L.ln1b, eps);
    const q = await kernels.linear(x, n, L.q, L.qb);
    const k = await kernels.linear(x, n, L.k, L.kb);
    const v = await kernels.linear(x, n, L.v, L.vb);
    const kH = headsFirst(k, n, H, hd);
    const vH = headsFirst(v, n, H, hd);
    const att = await attention(kernels, {
      q,
      k: kH,
      v: vH,
      kvStride: n * hd,
      n,
      len: n,
      heads: H,
      kvHeads: H,
      headDim: hd,
      scale: hd ** -0.5,
      queryOffset: null,
      window: null,
      onProbs: extra.probsHook,
    });
    const h1 = await kernels.linear(att.out, n, L.o, L.ob);
    addInPlace(h1, h);
    const x2 = layerNorm(h1, n, D, L.ln2w, L.ln2b, eps);
    const u = await kernels.linear(x2, n, L.fc1, L.fc1b);
    const a = applyActivation(u, this.act);
    const h2 = await kernels.linear(a, n, L.fc2, L.fc2b);
    addInPlace(h2, h1);
    const tape = extra.keep
      ? { hIn: h, x, q, k: kH, v: vH, probs: att.probs, ctx: att.out, h1, x2, u }
      : undefined;
    return { h: h2, probs: att.probs, tape };
  }

  /** Backward of layer i: gradient at its output [n, D] → gradient at its input and dProbs [H, n, n]. */
  async layerBackward(
    kernels: Kernels,
    i: number,
    t: VisionLayerTape,
    dOut: Float32Array,
    grads?: WeightGradients,
  ): Promise<{ dIn: Float32Array; dProbs: Float32Array }> {
    const L = this.layers[i];
    const { hiddenSize: D, numHeads: H, layerNormEps: eps } = this.cfg;
    const n = this.seqLen;
    const hd = D / H;
    // One native call for the whole layer when the kernels have block graphs; weight gradients (training)
    // take the per-op path below, which is also the readable reference the graph must match.
    if (kernels.blocks && !grads) {
      const b = await kernels.blocks.visionLayerBackward({
        dOut,
        n,
        heads: H,
        eps,
        act: this.cfg.hiddenAct,
        weights: L,
        tape: t,
      });
      if (b) return b;
    }
    const da = await linearBackwardInput(kernels, dOut, n, L.fc2);
    const du = activationBackward(t.u, da, this.actGrad);
    const dx2 = await linearBackwardInput(kernels, du, n, L.fc1);
    if (grads) {
      await linearBackwardWeight(kernels, dOut, applyActivation(t.u, this.act), n, L.fc2, L.fc2b, grads);
      await linearBackwardWeight(kernels, du, t.x2, n, L.fc1, L.fc1b, grads);
      layerNormParamGrad(t.h1, dx2, n, D, eps, grads.of(L.ln2w), grads.of(L.ln2b));
    }
    const dh1 = layerNormBackward(t.h1, dx2, n, D, L.ln2w, eps);
    addInPlace(dh1, dOut);
    const dCtx = await linearBackwardInput(kernels, dh1, n, L.o);
    if (grads) await linearBackwardWeight(kernels, dh1, t.ctx, n, L.o, L.ob, grads);
    const ab = await attentionBackward(kernels, {
      q: t.q,
      k: t.k,
      v: t.v,
      kvStride: n * hd,
      probs: t.probs,
      dOut: dCtx,
      m: n,
      len: n,
      heads: H,
      kvHeads: H,
      headDim: hd,
      scale: hd ** -0.5,
    });
    const dk = rowsFirst(ab.dk, H, n, hd, 0, n);
    const dv = rowsFirst(ab.dv, H, n, hd, 0, n);
    const dx = await linearBackwardInput(kernels, ab.dq, n, L.q);
    addInPlace(dx, await linearBackwardInput(kernels, dk, n, L.k));
    addInPlace(dx, await linearBackwardInput(kernels, dv, n, L.v));
    if (grads) {
      await linearBackwardWeight(kernels, ab.dq, t.x, n, L.q, L.qb, grads);
      await linearBackwardWeight(kernels, dk, t.x, n, L.k, L.kb, grads);
      await linearBackwardWeight(kernels, dv, t.x, n, L.v, L.vb, grads);
      layerNormParamGrad(t.hIn, dx, n, D, eps, grads.of(L.ln1w), grads.of(L.ln1b));
    }
    const dIn = layerNormBackward(t.hIn, dx, n, D, L.ln1w, eps);
    addInPlace(dIn, dh1);
    return { dIn, dProbs: ab.dProbs };
  }

  /**
   * Backward from gradients at any hidden states (`dHidden[j]` at hidden_states[j], null = none; LLaVA
   * feeds one or several of them to the projector) down to hidden_states[0], reporting each layer's dProbs.
   * Layers above the highest hidden state with a gradient are skipped (their gradient is zero).
   */
  async backward(
    kernels: Kernels,
    tape: VisionTape,
    dHidden: (Float32Array | null)[],
    opts: VisionBackwardOptions = {},
  ): Promise<VisionBackwardResult> {
    return (await this.backwardPasses(kernels, [tape], [dHidden], opts))[0];
  }

  /**
   * `backward` over several passes of the tower (LLaVA-NeXT's base view and tiles) at once, layer by layer
   * from the top, so that `onLayer` sees one layer of every pass together: dProbs and probs
   * [passes, H, n, n], pass-major. Every pass gets its gradient at the same hidden states.
   */
  async backwardPasses(
    kernels: Kernels,
    tapes: VisionTape[],
    dHidden: (Float32Array | null)[][],
    opts: VisionBackwardOptions = {},
  ): Promise<VisionBackwardResult[]> {
    if (tapes.length === 0 || dHidden.length !== tapes.length)
      throw new Error(`vision backward: ${dHidden.length} gradients for ${tapes.length} passes`);
    let top = -1;
    dHidden[0].forEach((d, j) => {
      if (d) top = Math.max(top, j);
    });
    if (top < 0) throw new Error("vision backward: no gradient given");
    if (top > this.layers.length) throw new Error(`vision backward: hidden state ${top} beyond the tower`);
    const dh: Float32Array[] = dHidden.map((d, k) => {
      const g = d[top];
      if (!g) throw new Error(`vision backward: pass ${k} has no gradient at hidden state ${top}`);
      return g.slice();
    });
    const one = tapes.length === 1;
    for (let i = top - 1; i >= 0; i--) {
      const dProbs: Float32Array[] = [];
      for (let k = 0; k < tapes.length; k++) {
        const r = await this.layerBackward(kernels, i, tapes[k].layers.get(i), dh[k], opts.grads);
        dProbs.push(r.dProbs);
        dh[k] = r.dIn;
        const extra = dHidden[k][i];
        if (extra) addInPlace(dh[k], extra);
      }
      if (opts.onLayer) {
        const probs = tapes.map((t) => t.layers.get(i).probs);
        opts.onLayer(i, one ? dProbs[0] : concat(dProbs), one ? probs[0] : concat(probs));
      }
    }
    const out: VisionBackwardResult[] = [];
    for (let k = 0; k < tapes.length; k++) {
      if (opts.grads) await this.embedParamGrads(kernels, tapes[k], dh[k], opts.grads);
      const dPixels = opts.pixels ? await this.embedBackward(kernels, tapes[k], dh[k]) : undefined;
      out.push({ dHidden0: dh[k], dPixels });
    }
    return out;
  }

  async forward(
    kernels: Kernels,
    pixels: Float32Array,
    onLayer?: (i: number) => void,
    opts: VisionForwardOptions = {},
  ): Promise<VisionOutput> {
    const emb = await this.embedWithTape(kernels, pixels);
    let h = emb.h;
    const hiddenStates = [h];
    const attentions: Float32Array[] = [];
    const layerTapes = opts.tape ? (opts.tapeLayers ?? new LayerTapes<VisionLayerTape>()) : null;
    for (let i = 0; i < this.layers.length; i++) {
      const hook = opts.probsHook;
      const r = await this.layer(kernels, i, h, {
        keep: opts.tape,
        probsHook: hook ? (p, g) => hook(i, p, g) : undefined,
      });
      h = r.h;
      hiddenStates.push(h);
      if (opts.onAttention) opts.onAttention(i, r.probs);
      else if (opts.returnAttentions !== false) attentions.push(r.probs);
      if (r.tape) layerTapes?.push(r.tape);
      onLayer?.(i);
    }
    const tape = layerTapes
      ? { embeddings: emb.embeddings, patches: emb.patches, layers: layerTapes }
      : undefined;
    return { hiddenStates, attentions, seqLen: this.seqLen, gridRows: this.grid, gridCols: this.grid, tape };
  }
}
