/**
 * The Qwen2-VL / Qwen2.5-VL vision tower: Conv3d patch embedding (a Linear over each flattened patch), blocks
 * with 2-D rotary attention (Qwen2-VL: LayerNorm + MLP, full attention; Qwen2.5-VL: RMSNorm + SwiGLU, window
 * attention except in `fullatt_block_indexes`), and the merger (norm → m² neighbouring patches concatenated →
 * MLP). Everything runs in pixel_values order (merge-window-major): attention is permutation-equivariant when
 * each patch keeps its rotary angles, so Hugging Face's window permutation is a mask here, its probabilities
 * come out in patch order, and the merger's rows are already the image tokens' order.
 */
import type { Kernels, WeightMatrix } from "../../kernels/types.js";
import {
  activationBackward,
  activationFn,
  activationGradFn,
  addInPlace,
  applyActivation,
  gatedActivation,
  gatedActivationBackward,
  layerNorm,
  layerNormBackward,
  rmsNorm,
  rmsNormBackward,
  softmaxRows,
} from "../../tensor/ops.js";
import { attentionBackward, headsFirst, rowsFirst } from "../attention.js";
import { linearBackwardInput } from "../linear-grad.js";
import type { PositionIds } from "../positions.js";
import { applyRope, applyRopeBackward, ropeFrequencyAxes, ropeInverseFrequencies } from "../rope.js";
import type { ModelWeights } from "../weights.js";
import type { QwenVisionConfig } from "./config.js";
import { type GridThw, patchRowCol } from "./processor.js";
import { patchWindows } from "./windows.js";

interface Norm {
  w: Float32Array;
  b: Float32Array | null;
}

interface BlockWeights {
  norm1: Norm;
  norm2: Norm;
  qkv: WeightMatrix;
  qkvB: Float32Array;
  proj: WeightMatrix;
  projB: Float32Array;
  /** Qwen2-VL fc1/fc2; Qwen2.5-VL gate/up/down. */
  fc1: WeightMatrix | null;
  fc1B: Float32Array | null;
  fc2: WeightMatrix | null;
  fc2B: Float32Array | null;
  gate: WeightMatrix | null;
  gateB: Float32Array | null;
  up: WeightMatrix | null;
  upB: Float32Array | null;
  down: WeightMatrix | null;
  downB: Float32Array | null;
}

export interface QwenVisionOutput {
  /** [P, D]: one row per image token (merged cell, row-major). */
  features: Float32Array;
  count: number;
  /**
   * Per block: probabilities [H, N, N] in pixel_values order, exact zeros outside the allowed keys (none with
   * `onAttention`).
   */
  attentions: Float32Array[];
  /** [patch embeddings, after block 0, …] in pixel_values order, each [N, Dv]. */
  hiddenStates: Float32Array[];
  /** With `tape: true`: what the backward needs. */
  tape?: QwenVisionTape;
}

export interface QwenVisionForwardOptions {
  /** Keep every activation the backward needs (opt-in). */
  tape?: boolean;
  /** Hands each block's probabilities over as the block finishes, instead of returning them. */
  onAttention?: (layer: number, probs: Float32Array) => void;
  /** Hook on each block's probabilities [N, N] of one head, editable in place (finite-difference checks). */
  probsHook?: (layer: number, headProbs: Float32Array, head: number) => void;
}

/** One block's activations, kept for its backward (pixel_values order). */
export interface QwenBlockTape {
  hIn: Float32Array;
  /** Queries after the rotary [N, D]; keys and values heads-first [H, N, hd] (keys after the rotary). */
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  /** [H, N, N], exact zeros outside the allowed keys. */
  probs: Float32Array;
  /** Attention output before proj [N, D]. */
  ctx: Float32Array;
  h1: Float32Array;
  /** MLP pre-activation: fc1's output (Qwen2-VL) or gate_proj's (Qwen2.5-VL) [N, I]. */
  pre: Float32Array;
  /** Qwen2.5-VL's up_proj output [N, I]; null for Qwen2-VL. */
  up: Float32Array | null;
}

export interface QwenVisionTape {
  grid: GridThw;
  blocks: QwenBlockTape[];
  /** The last block's output (the merger's input) [N, D]. */
  mergerIn: Float32Array;
  /** mlp.0's output before the GELU [count, m²·D]. */
  mergerMid: Float32Array;
}

const NORM_EPS = 1e-6;

export class QwenVisionTower {
  private readonly patchEmbed: WeightMatrix;
  private readonly blocks: BlockWeights[] = [];
  private readonly mergerNorm: Norm;
  private readonly mlp0: WeightMatrix;
  private readonly mlp0B: Float32Array;
  private readonly mlp2: WeightMatrix;
  private readonly mlp2B: Float32Array;
  private readonly invFreq: Float32Array;
  private readonly freqAxes: Uint8Array;
  private readonly act: (x: number) => number;
  private readonly actGrad: (x: number) => number;
  private readonly gelu = activationFn("gelu");
  private readonly geluGrad = activationGradFn("gelu");

  constructor(
    readonly cfg: QwenVisionConfig,
    w: ModelWeights,
  ) {
    const { width: D, intermediateSize: I, patchSize: P, temporalPatchSize: T, inChannels: C } = cfg;
    const q2 = cfg.kind === "qwen2_vl";
    const norm = (name: string): Norm => ({
      w: w.vector(`${name}.weight`, [D]),
      b: q2 ? w.vector(`${name}.bias`, [D]) : null,
    });
    this.patchEmbed = w.matrix("vision.patch_embed.proj.weight", [D, C, T, P, P]);
    for (let i = 0; i < cfg.depth; i++) {
      const b = `vision.blocks.${i}.`;
      const mat = (n: string, shape: number[]) => w.matrix(`${b}${n}.weight`, shape);
      const vec = (n: string, len: number) => w.vector(`${b}${n}.bias`, [len]);
      this.blocks.push({
        norm1: norm(`${b}norm1`),
        norm2: norm(`${b}norm2`),
        qkv: mat("attn.qkv", [3 * D, D]),
        qkvB: vec("attn.qkv", 3 * D),
        proj: mat("attn.proj", [D, D]),
        projB: vec("attn.proj", D),
        fc1: q2 ? mat("mlp.fc1", [I, D]) : null,
        fc1B: q2 ? vec("mlp.fc1", I) : null,
        fc2: q2 ? mat("mlp.fc2", [D, I]) : null,
        fc2B: q2 ? vec("mlp.fc2", D) : null,
        gate: q2 ? null : mat("mlp.gate_proj", [I, D]),
        gateB: q2 ? null : vec("mlp.gate_proj", I),
        up: q2 ? null : mat("mlp.up_proj", [I, D]),
        upB: q2 ? null : vec("mlp.up_proj", I),
        down: q2 ? null : mat("mlp.down_proj", [D, I]),
        downB: q2 ? null : vec("mlp.down_proj", D),
      });
    }
    this.mergerNorm = norm("vision.merger.ln_q");
    const mm = cfg.mergeSize * cfg.mergeSize;
    this.mlp0 = w.matrix("vision.merger.mlp.0.weight", [D * mm, D * mm]);
    this.mlp0B = w.vector("vision.merger.mlp.0.bias", [D * mm]);
    this.mlp2 = w.matrix("vision.merger.mlp.2.weight", [cfg.outHiddenSize, D * mm]);
    this.mlp2B = w.vector("vision.merger.mlp.2.bias", [cfg.outHiddenSize]);
    // 2-D rotary: the first half of each head's frequencies read the patch row, the second half the column,
    // each half the same frequencies 1/10000^(2i/(hd/2)).
    const hd = D / cfg.numHeads;
    const half = ropeInverseFrequencies(hd / 2, 10000, { type: "default", factor: 1 });
    this.invFreq = new Float32Array(hd / 2);
    this.invFreq.set(half, 0);
    this.invFreq.set(half, hd / 4);
    this.freqAxes = ropeFrequencyAxes(hd, [hd / 4, hd / 4]);
    this.act = activationFn(cfg.hiddenAct);
    this.actGrad = activationGradFn(cfg.hiddenAct);
  }

  /** Rotary ids [2, N] (patch row, patch column) of each pixel_values row. */
  rotaryIds(grid: GridThw): PositionIds {
    const [t, gh, gw] = grid;
    const per = gh * gw;
    const n = t * per;
    const data = new Int32Array(2 * n);
    for (let r = 0; r < n; r++) {
      const [row, col] = patchRowCol(r % per, gw, this.cfg.mergeSize);
      data[r] = row;
      data[n + r] = col;
    }
    return { axes: 2, n, data };
  }

  private norm(x: Float32Array, rows: number, n: Norm): Float32Array {
    const D = this.cfg.width;
    return n.b ? layerNorm(x, rows, D, n.w, n.b, NORM_EPS) : rmsNorm(x, rows, D, n.w, NORM_EPS, false);
  }

  private normBackward(x: Float32Array, dy: Float32Array, rows: number, n: Norm): Float32Array {
    const D = this.cfg.width;
    return n.b
      ? layerNormBackward(x, dy, rows, D, n.w, NORM_EPS)
      : rmsNormBackward(x, dy, rows, D, n.w, NORM_EPS, false);
  }

  /** Which blocks attend inside windows (Qwen2.5-VL's non-full blocks). */
  isWindowed(block: number): boolean {
    return this.cfg.windowSize > 0 && !this.cfg.fullAttBlocks.includes(block);
  }

  /** Which attention group each patch belongs to in block l: its window (windowed blocks) or its frame. */
  attentionGroups(grid: GridThw): (block: number) => Int32Array {
    const cfg = this.cfg;
    const N = grid[0] * grid[1] * grid[2];
    const perFrame = grid[1] * grid[2];
    const frameOf = Int32Array.from({ length: N }, (_, i) => Math.floor(i / perFrame));
    const windowOf =
      cfg.windowSize > 0
        ? patchWindows(grid, cfg.mergeSize, cfg.windowSize / cfg.patchSize / cfg.mergeSize)
        : null;
    return (l) => (windowOf !== null && this.isWindowed(l) ? windowOf : frameOf);
  }

  async forward(
    kernels: Kernels,
    pixels: Float32Array,
    grid: GridThw,
    onLayer?: (layer: number) => void,
    opts: QwenVisionForwardOptions = {},
  ): Promise<QwenVisionOutput> {
    const cfg = this.cfg;
    const N = grid[0] * grid[1] * grid[2];
    const rowLen = cfg.inChannels * cfg.temporalPatchSize * cfg.patchSize * cfg.patchSize;
    if (pixels.length !== N * rowLen)
      throw new RangeError(
        `pixel_values hold ${pixels.length / rowLen} patches, image_grid_thw [${grid}] needs ${N}`,
      );
    const rot = this.rotaryIds(grid);
    // Attention blocks: full blocks attend within a frame (`cu_seqlens`), windowed ones within a window.
    const groupsOf = this.attentionGroups(grid);
    let h = await kernels.linear(pixels, N, this.patchEmbed);
    const hiddenStates = [h];
    const attentions: Float32Array[] = [];
    const blockTapes: QwenBlockTape[] = [];
    for (let l = 0; l < this.blocks.length; l++) {
      const hook = opts.probsHook;
      const r = await this.block(kernels, l, h, N, rot, groupsOf(l), {
        keep: opts.tape,
        probsHook: hook ? (p, head) => hook(l, p, head) : undefined,
      });
      h = r.h;
      hiddenStates.push(h);
      if (opts.onAttention) opts.onAttention(l, r.probs);
      else attentions.push(r.probs);
      if (r.tape) blockTapes.push(r.tape);
      onLayer?.(l);
    }
    const m = await this.merger(kernels, h, N);
    const tape: QwenVisionTape | undefined = opts.tape
      ? { grid, blocks: blockTapes, mergerIn: h, mergerMid: m.mid }
      : undefined;
    return { features: m.features, count: m.count, attentions, hiddenStates, tape };
  }

  /** One block: x = norm1(h); h1 = h + proj(attn(rope(q), rope(k), v) within groups); h2 = h1 + mlp(norm2(h1)). */
  private async block(
    kernels: Kernels,
    l: number,
    h: Float32Array,
    N: number,
    rot: PositionIds,
    group: Int32Array,
    extra: { keep?: boolean; probsHook?: (headProbs: Float32Array, head: number) => void },
  ): Promise<{ h: Float32Array; probs: Float32Array; tape?: QwenBlockTape }> {
    const b = this.blocks[l];
    const { width: D, numHeads: H } = this.cfg;
    const hd = D / H;
    const scale = hd ** -0.5;
    const x = this.norm(h, N, b.norm1);
    const qkv = await kernels.linear(x, N, b.qkv, b.qkvB);
    const q = new Float32Array(N * D);
    const k = new Float32Array(N * D);
    const v = new Float32Array(N * D);
    for (let i = 0; i < N; i++) {
      q.set(qkv.subarray(i * 3 * D, i * 3 * D + D), i * D);
      k.set(qkv.subarray(i * 3 * D + D, i * 3 * D + 2 * D), i * D);
      v.set(qkv.subarray(i * 3 * D + 2 * D, i * 3 * D + 3 * D), i * D);
    }
    applyRope(q, N, H, hd, rot, this.invFreq, this.freqAxes);
    applyRope(k, N, H, hd, rot, this.invFreq, this.freqAxes);
    const qh = headsFirst(q, N, H, hd);
    const kh = headsFirst(k, N, H, hd);
    const vh = headsFirst(v, N, H, hd);
    const scores = await kernels.bmm(qh, kh, H, N, hd, N, true);
    for (let hh = 0; hh < H; hh++) {
      for (let i = 0; i < N; i++) {
        const o = (hh * N + i) * N;
        const gi = group[i];
        for (let j = 0; j < N; j++)
          scores[o + j] = group[j] === gi ? scores[o + j] * scale : Number.NEGATIVE_INFINITY;
      }
    }
    softmaxRows(
      scores,
      H * N,
      N,
      () => 0,
      () => N,
    );
    if (extra.probsHook)
      for (let hh = 0; hh < H; hh++) extra.probsHook(scores.subarray(hh * N * N, (hh + 1) * N * N), hh);
    const ctxH = await kernels.bmm(scores, vh, H, N, N, hd, false);
    const ctx = rowsFirst(ctxH, H, N, hd, 0, N);
    const attnOut = await kernels.linear(ctx, N, b.proj, b.projB);
    const h1 = new Float32Array(h);
    for (let i = 0; i < h1.length; i++) h1[i] += attnOut[i];
    const x2 = this.norm(h1, N, b.norm2);
    let mlp: Float32Array;
    let pre: Float32Array;
    let up: Float32Array | null = null;
    if (b.fc1 && b.fc2) {
      pre = await kernels.linear(x2, N, b.fc1, b.fc1B);
      mlp = await kernels.linear(applyActivation(pre, this.act), N, b.fc2, b.fc2B);
    } else {
      pre = await kernels.linear(x2, N, b.gate!, b.gateB);
      up = await kernels.linear(x2, N, b.up!, b.upB);
      mlp = await kernels.linear(gatedActivation(pre, up, this.act), N, b.down!, b.downB);
    }
    const out = new Float32Array(h1);
    for (let i = 0; i < out.length; i++) out[i] += mlp[i];
    const tape = extra.keep ? { hIn: h, q, k: kh, v: vh, probs: scores, ctx, h1, pre, up } : undefined;
    return { h: out, probs: scores, tape };
  }

  /**
   * Backward of block l: the gradient at its output [N, D] → the gradient at its input, and dProbs [H, N, N]
   * (dctx·vᵀ, also at masked keys, where the probability is 0). The window mask needs nothing here: the
   * softmax backward gives 0 wherever the forward probability is 0.
   */
  private async blockBackward(
    kernels: Kernels,
    l: number,
    t: QwenBlockTape,
    dOut: Float32Array,
    N: number,
    rot: PositionIds,
  ): Promise<{ dIn: Float32Array; dProbs: Float32Array }> {
    const b = this.blocks[l];
    const { width: D, numHeads: H } = this.cfg;
    const hd = D / H;
    let dx2: Float32Array;
    if (b.fc1 && b.fc2) {
      const da = await linearBackwardInput(kernels, dOut, N, b.fc2);
      dx2 = await linearBackwardInput(kernels, activationBackward(t.pre, da, this.actGrad), N, b.fc1);
    } else {
      const dm = await linearBackwardInput(kernels, dOut, N, b.down!);
      const g = gatedActivationBackward(t.pre, t.up!, dm, this.act, this.actGrad);
      dx2 = await linearBackwardInput(kernels, g.dGate, N, b.gate!);
      addInPlace(dx2, await linearBackwardInput(kernels, g.dUp, N, b.up!));
    }
    const dh1 = this.normBackward(t.h1, dx2, N, b.norm2);
    addInPlace(dh1, dOut);
    const dCtx = await linearBackwardInput(kernels, dh1, N, b.proj);
    const ab = await attentionBackward(kernels, {
      q: t.q,
      k: t.k,
      v: t.v,
      kvStride: N * hd,
      probs: t.probs,
      dOut: dCtx,
      m: N,
      len: N,
      heads: H,
      kvHeads: H,
      headDim: hd,
      scale: hd ** -0.5,
    });
    const dk = rowsFirst(ab.dk, H, N, hd, 0, N);
    const dv = rowsFirst(ab.dv, H, N, hd, 0, N);
    applyRopeBackward(ab.dq, N, H, hd, rot, this.invFreq, this.freqAxes);
    applyRopeBackward(dk, N, H, hd, rot, this.invFreq, this.freqAxes);
    const dqkv = new Float32Array(N * 3 * D);
    for (let i = 0; i < N; i++) {
      dqkv.set(ab.dq.subarray(i * D, (i + 1) * D), i * 3 * D);
      dqkv.set(dk.subarray(i * D, (i + 1) * D), i * 3 * D + D);
      dqkv.set(dv.subarray(i * D, (i + 1) * D), i * 3 * D + 2 * D);
    }
    const dx = await linearBackwardInput(kernels, dqkv, N, b.qkv);
    const dIn = this.normBackward(t.hIn, dx, N, b.norm1);
    addInPlace(dIn, dh1);
    return { dIn, dProbs: ab.dProbs };
  }

  /** The merger: norm, m² consecutive rows (one merged cell) viewed as one row of [count, m²·D], MLP. */
  private async merger(
    kernels: Kernels,
    h: Float32Array,
    N: number,
  ): Promise<{ features: Float32Array; count: number; mid: Float32Array }> {
    const mm = this.cfg.mergeSize * this.cfg.mergeSize;
    const count = N / mm;
    const merged = this.norm(h, N, this.mergerNorm);
    const mid = await kernels.linear(merged, count, this.mlp0, this.mlp0B);
    const features = await kernels.linear(applyActivation(mid, this.gelu), count, this.mlp2, this.mlp2B);
    return { features, count, mid };
  }

  /** Backward of the merger: the gradient at the image features [count, out] → at its input [N, D]. */
  private async mergerBackward(
    kernels: Kernels,
    tape: QwenVisionTape,
    dFeatures: Float32Array,
    N: number,
  ): Promise<Float32Array> {
    const count = N / (this.cfg.mergeSize * this.cfg.mergeSize);
    const dAct = await linearBackwardInput(kernels, dFeatures, count, this.mlp2);
    const dMid = activationBackward(tape.mergerMid, dAct, this.geluGrad);
    const dMerged = await linearBackwardInput(kernels, dMid, count, this.mlp0);
    return this.normBackward(tape.mergerIn, dMerged, N, this.mergerNorm);
  }

  /**
   * From the gradient at the merger output back to the patch embeddings (and pixel_values with `pixels`),
   * reporting every block's dProbs [H, N, N] in pixel_values order, from the top block down.
   */
  async backward(
    kernels: Kernels,
    tape: QwenVisionTape,
    dFeatures: Float32Array,
    opts: {
      onLayer?: (layer: number, dProbs: Float32Array, probs: Float32Array) => void;
      pixels?: boolean;
    } = {},
  ): Promise<{ dHidden0: Float32Array; dPixels?: Float32Array }> {
    const N = tape.grid[0] * tape.grid[1] * tape.grid[2];
    const rot = this.rotaryIds(tape.grid);
    let dh = await this.mergerBackward(kernels, tape, dFeatures, N);
    for (let l = this.blocks.length - 1; l >= 0; l--) {
      const r = await this.blockBackward(kernels, l, tape.blocks[l], dh, N, rot);
      opts.onLayer?.(l, r.dProbs, tape.blocks[l].probs);
      dh = r.dIn;
    }
    // The patch embedding is a Linear over each flattened patch (no bias).
    const dPixels = opts.pixels ? await linearBackwardInput(kernels, dh, N, this.patchEmbed) : undefined;
    return { dHidden0: dh, dPixels };
  }
}
