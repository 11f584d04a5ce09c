/**
 * LlavaForConditionalGeneration: vision tower → feature layer selection → projector → image features
 * scattered into the text embeddings at the image-token positions → text decoder.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type LlavaConfig, readLlavaConfig } from "../hf/config.js";
import { TextProcessor } from "../hf/tokenizer.js";
import type { Kernels, WeightMatrix } from "../kernels/types.js";
import { activationBackward, activationFn, activationGradFn, applyActivation } from "../tensor/ops.js";
import { TextDecoder } from "./decoder.js";
import type { WeightGradients } from "./gradients.js";
import { linearBackwardInput, linearBackwardWeight } from "./linear-grad.js";
import {
  type VisionBackwardOptions,
  type VisionBackwardResult,
  type VisionForwardOptions,
  type VisionOutput,
  VisionTower,
} from "./vision.js";
import { ModelWeights } from "./weights.js";

export class Projector {
  readonly w1: WeightMatrix;
  readonly b1: Float32Array | null;
  readonly w2: WeightMatrix;
  readonly b2: Float32Array | null;
  readonly act: (x: number) => number;
  readonly actGrad: (x: number) => number;

  constructor(cfg: LlavaConfig, w: ModelWeights) {
    const Dv = cfg.vision.hiddenSize * cfg.visionFeatureLayers.length;
    const D = cfg.text.hiddenSize;
    this.w1 = w.matrix("projector.linear_1.weight", [D, Dv]);
    this.b1 = cfg.projectorBias ? w.vector("projector.linear_1.bias", [D]) : null;
    this.w2 = w.matrix("projector.linear_2.weight", [D, D]);
    this.b2 = cfg.projectorBias ? w.vector("projector.linear_2.bias", [D]) : null;
    this.act = activationFn(cfg.projectorHiddenAct);
    this.actGrad = activationGradFn(cfg.projectorHiddenAct);
  }

  async forward(kernels: Kernels, x: Float32Array, n: number): Promise<Float32Array> {
    const a = applyActivation(await kernels.linear(x, n, this.w1, this.b1), this.act);
    return kernels.linear(a, n, this.w2, this.b2);
  }

  /** Backward w.r.t. the input x [n, Dv] given dY [n, D] (linear_1's output is recomputed from x). */
  async backward(
    kernels: Kernels,
    x: Float32Array,
    n: number,
    dY: Float32Array,
    grads?: WeightGradients,
  ): Promise<Float32Array> {
    const u = await kernels.linear(x, n, this.w1, this.b1);
    const da = await linearBackwardInput(kernels, dY, n, this.w2);
    const du = activationBackward(u, da, this.actGrad);
    if (grads) {
      await linearBackwardWeight(kernels, dY, applyActivation(u, this.act), n, this.w2, this.b2, grads);
      await linearBackwardWeight(kernels, du, x, n, this.w1, this.b1, grads);
    }
    return linearBackwardInput(kernels, du, n, this.w1);
  }
}

/** The vision tower's output and the features the projector reads. */
export interface TowerFeatures {
  vision: VisionOutput;
  /** Selected vision features before the projector, [count, Dv·layers]. */
  preProjector: Float32Array;
  count: number;
}

export interface ImageEncoding extends TowerFeatures {
  /** Projector output, [count, text hidden]: one row per image token. */
  features: Float32Array;
}

export class LlavaModel {
  private constructor(
    readonly dir: string,
    readonly config: LlavaConfig,
    readonly weights: ModelWeights,
    readonly text: TextProcessor,
    readonly vision: VisionTower,
    readonly projector: Projector,
    readonly decoder: TextDecoder,
    /** Raw preprocessor_config.json ({} when absent). */
    readonly preprocessorJson: unknown,
  ) {}

  static load(dir: string): LlavaModel {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
      throw new Error(`${dir}: model folder not found`);
    const config = readLlavaConfig(dir);
    const text = TextProcessor.load(dir, config.imageTokenIndex);
    const ppFile = path.join(dir, "preprocessor_config.json");
    let pp: unknown = {};
    if (fs.existsSync(ppFile)) {
      try {
        pp = JSON.parse(fs.readFileSync(ppFile, "utf8"));
      } catch (e) {
        throw new Error(`${ppFile}: invalid JSON (${(e as Error).message})`);
      }
    }
    const weights = ModelWeights.open(dir);
    try {
      return new LlavaModel(
        dir,
        config,
        weights,
        text,
        new VisionTower(config.vision, weights),
        new Projector(config, weights),
        new TextDecoder(config.text, weights),
        pp,
      );
    } catch (e) {
      weights.close();
      throw e;
    }
  }

  /** Number of image tokens one image becomes. */
  get imageTokenCount(): number {
    const seq = this.vision.seqLen;
    return this.config.visionFeatureSelectStrategy === "default" ? seq - 1 : seq;
  }

  /** [rows, cols] of the image-token grid, or null when the tokens do not form one (e.g. "full" with CLS). */
  get patchGrid(): [number, number] {
    return [this.vision.grid, this.vision.grid];
  }

  async encodeImage(
    kernels: Kernels,
    pixelValues: Float32Array,
    onLayer?: (i: number) => void,
    opts: VisionForwardOptions = {},
  ): Promise<ImageEncoding> {
    const tower = await this.encodeTower(kernels, pixelValues, onLayer, opts);
    const features = await this.projector.forward(kernels, tower.preProjector, tower.count);
    return { ...tower, features };
  }

  /** The tower and the feature selection only (what the projector would read; the tower's own training). */
  async encodeTower(
    kernels: Kernels,
    pixelValues: Float32Array,
    onLayer?: (i: number) => void,
    opts: VisionForwardOptions = {},
  ): Promise<TowerFeatures> {
    const vision = await this.vision.forward(kernels, pixelValues, onLayer, opts);
    const Dv = this.config.vision.hiddenSize;
    const layers = this.config.visionFeatureLayers.map((l) => (l < 0 ? vision.hiddenStates.length + l : l));
    const seq = vision.seqLen;
    const drop = this.config.visionFeatureSelectStrategy === "default" ? 1 : 0;
    const count = seq - drop;
    const width = Dv * layers.length;
    // Concatenate the chosen layers along the hidden dim, then drop the first token for "default".
    const pre = new Float32Array(count * width);
    for (let t = 0; t < count; t++) {
      layers.forEach((l, j) => {
        const src = vision.hiddenStates[l].subarray((t + drop) * Dv, (t + drop + 1) * Dv);
        pre.set(src, t * width + j * Dv);
      });
    }
    return { vision, preProjector: pre, count };
  }

  /** Text embeddings with the image features written over the image-token positions, in order. */
  buildInputsEmbeds(inputIds: number[], features: Float32Array, count: number): Float32Array {
    const D = this.config.text.hiddenSize;
    const embeds = this.decoder.embed(inputIds);
    let j = 0;
    inputIds.forEach((id, i) => {
      if (id !== this.config.imageTokenIndex) return;
      if (j >= count) throw new Error(`prompt has more image tokens than image features (${count})`);
      embeds.set(features.subarray(j * D, (j + 1) * D), i * D);
      j++;
    });
    if (j !== count) throw new Error(`prompt has ${j} image tokens but the image gives ${count} features`);
    return embeds;
  }

  /** hidden_states indices the projector reads (vision_feature_layer resolved). */
  get visionFeatureHiddenIndices(): number[] {
    const n = this.config.vision.numLayers + 1;
    return this.config.visionFeatureLayers.map((l) => (l < 0 ? n + l : l));
  }

  /** Sequence positions of the image tokens, in order. */
  imagePositions(inputIds: number[]): number[] {
    const out: number[] = [];
    inputIds.forEach((id, i) => {
      if (id === this.config.imageTokenIndex) out.push(i);
    });
    return out;
  }

  /**
   * Backward of `buildInputsEmbeds` for the image features: the gradient rows at the image positions.
   * dEmbeds holds rows from … from+rows−1; image positions outside that window get zero.
   */
  imageFeaturesGrad(inputIds: number[], dEmbeds: Float32Array, from = 0): Float32Array {
    const D = this.config.text.hiddenSize;
    const pos = this.imagePositions(inputIds);
    const rows = dEmbeds.length / D;
    const out = new Float32Array(pos.length * D);
    pos.forEach((p, j) => {
      if (p >= from && p < from + rows) out.set(dEmbeds.subarray((p - from) * D, (p - from + 1) * D), j * D);
    });
    return out;
  }

  /**
   * Backward from the gradient at the projector output (one row per image token) through the projector,
   * the feature-layer selection (CLS dropped for "default") and the vision tower. Needs an encoding made
   * with `{ tape: true }`.
   */
  async imageBackward(
    kernels: Kernels,
    enc: ImageEncoding,
    dFeatures: Float32Array,
    opts: VisionBackwardOptions = {},
  ): Promise<VisionBackwardResult> {
    const dPre = await this.projector.backward(kernels, enc.preProjector, enc.count, dFeatures, opts.grads);
    return this.preProjectorBackward(kernels, enc, dPre, opts);
  }

  /**
   * Backward from the gradient at the selected vision features (`enc.preProjector`, [count, Dv·layers])
   * through the feature-layer selection (CLS dropped for "default") and the vision tower.
   */
  async preProjectorBackward(
    kernels: Kernels,
    enc: TowerFeatures,
    dPre: Float32Array,
    opts: VisionBackwardOptions = {},
  ): Promise<VisionBackwardResult> {
    const tape = enc.vision.tape;
    if (!tape) throw new Error("image backward: the image was encoded without { tape: true }");
    const Dv = this.config.vision.hiddenSize;
    const layers = this.visionFeatureHiddenIndices;
    const seq = enc.vision.seqLen;
    const drop = this.config.visionFeatureSelectStrategy === "default" ? 1 : 0;
    const width = Dv * layers.length;
    const dHidden: (Float32Array | null)[] = new Array(this.config.vision.numLayers + 1).fill(null);
    layers.forEach((l, j) => {
      const d = dHidden[l] ?? new Float32Array(seq * Dv);
      for (let t = 0; t < enc.count; t++) {
        const src = t * width + j * Dv;
        const dst = (t + drop) * Dv;
        for (let c = 0; c < Dv; c++) d[dst + c] += dPre[src + c];
      }
      dHidden[l] = d;
    });
    return this.vision.backward(kernels, tape, dHidden, opts);
  }

  close(): void {
    this.weights.close();
  }
}
