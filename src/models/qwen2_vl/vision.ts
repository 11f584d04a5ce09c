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
  activationFn,
  applyActivation,
  gatedActivation,
  layerNorm,
  rmsNorm,
  softmaxRows,
} from "../../tensor/ops.js";
import type { PositionIds } from "../positions.js";
import { applyRope, ropeFrequencyAxes, ropeInverseFrequencies } from "../rope.js";
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
  /** Per block: probabilities [H, N, N] in pixel_values order, exact zeros outside the allowed keys. */
  attentions: Float32Array[];
  /** [patch embeddings, after block 0, …] in pixel_values order, each [N, Dv]. */
  hiddenStates: Float32Array[];
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
  private readonly gelu = activationFn("gelu");

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

  /** Which blocks attend inside windows (Qwen2.5-VL's non-full blocks). */
  isWindowed(block: number): boolean {
    return this.cfg.windowSize > 0 && !this.cfg.fullAttBlocks.includes(block);
  }

  async forward(
    kernels: Kernels,
    pixels: Float32Array,
    grid: GridThw,
    onLayer?: (layer: number) => void,
  ): Promise<QwenVisionOutput> {
    const cfg = this.cfg;
    const { width: D, numHeads: H } = cfg;
    const hd = D / H;
    const N = grid[0] * grid[1] * grid[2];
    const rowLen = cfg.inChannels * cfg.temporalPatchSize * cfg.patchSize * cfg.patchSize;
    if (pixels.length !== N * rowLen)
      throw new RangeError(
        `pixel_values hold ${pixels.length / rowLen} patches, image_grid_thw [${grid}] needs ${N}`,
      );
    const rot = this.rotaryIds(grid);
    // Attention blocks: full blocks attend within a frame (`cu_seqlens`), windowed ones within a window.
    const perFrame = grid[1] * grid[2];
    const frameOf = Int32Array.from({ length: N }, (_, i) => Math.floor(i / perFrame));
    const windowOf =
      cfg.windowSize > 0
        ? patchWindows(grid, cfg.mergeSize, cfg.windowSize / cfg.patchSize / cfg.mergeSize)
        : null;
    let h = await kernels.linear(pixels, N, this.patchEmbed);
    const hiddenStates = [h];
    const attentions: Float32Array[] = [];
    const scale = hd ** -0.5;
    for (let l = 0; l < this.blocks.length; l++) {
      const b = this.blocks[l];
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
      const group = windowOf !== null && this.isWindowed(l) ? windowOf : frameOf;
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
      attentions.push(scores);
      const ctxH = await kernels.bmm(scores, vh, H, N, N, hd, false);
      const ctx = rowsFirst(ctxH, N, H, hd);
      const attnOut = await kernels.linear(ctx, N, b.proj, b.projB);
      const h1 = new Float32Array(h);
      for (let i = 0; i < h1.length; i++) h1[i] += attnOut[i];
      const x2 = this.norm(h1, N, b.norm2);
      let mlp: Float32Array;
      if (b.fc1 && b.fc2) {
        const a = applyActivation(await kernels.linear(x2, N, b.fc1, b.fc1B), this.act);
        mlp = await kernels.linear(a, N, b.fc2, b.fc2B);
      } else {
        const g = await kernels.linear(x2, N, b.gate!, b.gateB);
        const u = await kernels.linear(x2, N, b.up!, b.upB);
        mlp = await kernels.linear(gatedActivation(g, u, this.act), N, b.down!, b.downB);
      }
      for (let i = 0; i < h1.length; i++) h1[i] += mlp[i];
      h = h1;
      hiddenStates.push(h);
      onLayer?.(l);
    }
    const mm = cfg.mergeSize * cfg.mergeSize;
    const count = N / mm;
    // m² consecutive rows are one merged cell: the normed rows viewed as [count, m²·D].
    const merged = this.norm(h, N, this.mergerNorm);
    const mid = applyActivation(await kernels.linear(merged, count, this.mlp0, this.mlp0B), this.gelu);
    const features = await kernels.linear(mid, count, this.mlp2, this.mlp2B);
    return { features, count, attentions, hiddenStates };
  }
}

/** [n, H, hd] → [H, n, hd]. */
function headsFirst(x: Float32Array, n: number, H: number, hd: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++)
    for (let h = 0; h < H; h++) out.set(x.subarray((i * H + h) * hd, (i * H + h + 1) * hd), (h * n + i) * hd);
  return out;
}

/** [H, n, hd] → [n, H·hd]. */
function rowsFirst(x: Float32Array, n: number, H: number, hd: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let h = 0; h < H; h++)
    for (let i = 0; i < n; i++) out.set(x.subarray((h * n + i) * hd, (h * n + i + 1) * hd), (i * H + h) * hd);
  return out;
}
