/**
 * CLIP and SigLIP vision towers (pre-LN ViT encoders). Forward returns every hidden state (LLaVA picks one
 * by `vision_feature_layer`) and every layer's attention probabilities.
 */
import type { VisionConfig } from "../hf/config.js";
import type { Kernels, WeightMatrix } from "../kernels/types.js";
import { activationFn, addInPlace, applyActivation, layerNorm } from "../tensor/ops.js";
import { attention, headsFirst } from "./attention.js";
import type { ModelWeights } from "./weights.js";

interface VisionLayerWeights {
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

export interface VisionOutput {
  /** hidden_states[0] = embeddings (after CLIP's pre-LN), [i+1] = output of layer i; each [seq, hidden]. */
  hiddenStates: Float32Array[];
  /** Per layer: [heads, seq, seq]. */
  attentions: Float32Array[];
  seqLen: number;
  gridRows: number;
  gridCols: number;
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
  readonly grid: number;

  constructor(
    readonly cfg: VisionConfig,
    w: ModelWeights,
  ) {
    const D = cfg.hiddenSize;
    const p = cfg.patchSize;
    const C = cfg.numChannels;
    if (cfg.imageSize % p !== 0)
      throw new Error(`vision_config: image_size ${cfg.imageSize} is not a multiple of patch_size ${p}`);
    this.grid = cfg.imageSize / p;
    const nPos = this.grid * this.grid + (cfg.hasCls ? 1 : 0);
    this.patch = w.matrix("vision.embeddings.patch_embedding.weight", [D, C, p, p]);
    this.patchBias = cfg.hasCls ? null : w.vector("vision.embeddings.patch_embedding.bias", [D]);
    this.classEmbedding = cfg.hasCls ? w.vector("vision.embeddings.class_embedding", [D]) : null;
    this.positionEmbedding = w.vector("vision.embeddings.position_embedding.weight", [nPos, D]);
    this.preLnW = cfg.hasCls ? w.vector("vision.pre_layrnorm.weight", [D]) : null;
    this.preLnB = cfg.hasCls ? w.vector("vision.pre_layrnorm.bias", [D]) : null;
    this.act = activationFn(cfg.hiddenAct);
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
    if (this.preLnW && this.preLnB)
      return layerNorm(h, this.seqLen, D, this.preLnW, this.preLnB, this.cfg.layerNormEps);
    return h;
  }

  async layer(
    kernels: Kernels,
    i: number,
    h: Float32Array,
  ): Promise<{ h: Float32Array; probs: Float32Array }> {
    const L = this.layers[i];
    const { hiddenSize: D, numHeads: H, layerNormEps: eps } = this.cfg;
    const n = this.seqLen;
    const hd = D / H;
    const x = layerNorm(h, n, D, L.ln1w, L.ln1b, eps);
    const q = await kernels.linear(x, n, L.q, L.qb);
    const k = await kernels.linear(x, n, L.k, L.kb);
    const v = await kernels.linear(x, n, L.v, L.vb);
    const att = await attention(kernels, {
      q,
      k: headsFirst(k, n, H, hd),
      v: headsFirst(v, n, H, hd),
      kvStride: n * hd,
      n,
      len: n,
      heads: H,
      kvHeads: H,
      headDim: hd,
      scale: hd ** -0.5,
      queryOffset: null,
      window: null,
    });
    const h1 = await kernels.linear(att.out, n, L.o, L.ob);
    addInPlace(h1, h);
    const x2 = layerNorm(h1, n, D, L.ln2w, L.ln2b, eps);
    const a = applyActivation(await kernels.linear(x2, n, L.fc1, L.fc1b), this.act);
    const h2 = await kernels.linear(a, n, L.fc2, L.fc2b);
    addInPlace(h2, h1);
    return { h: h2, probs: att.probs };
  }

  async forward(
    kernels: Kernels,
    pixels: Float32Array,
    onLayer?: (i: number) => void,
  ): Promise<VisionOutput> {
    let h = await this.embed(kernels, pixels);
    const hiddenStates = [h];
    const attentions: Float32Array[] = [];
    for (let i = 0; i < this.layers.length; i++) {
      const r = await this.layer(kernels, i, h);
      h = r.h;
      hiddenStates.push(h);
      attentions.push(r.probs);
      onLayer?.(i);
    }
    return { hiddenStates, attentions, seqLen: this.seqLen, gridRows: this.grid, gridCols: this.grid };
  }
}
