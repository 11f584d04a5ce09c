/**
 * LlavaForConditionalGeneration (model_type "llava"): vision tower → feature layer selection → projector →
 * image features scattered into the text embeddings at the image-token positions → text decoder. One image is
 * one tower pass over the processor's square crop, its tokens one grid (plus the class token under "full"),
 * positions 1-D.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { RgbImage } from "../../hf/image-decode.js";
import {
  type ImageMode,
  type ImageProcessorConfig,
  parseImageProcessorConfig,
  preprocessImage,
} from "../../hf/image-processor.js";
import { TextProcessor } from "../../hf/tokenizer.js";
import type { Kernels } from "../../kernels/types.js";
import { TextDecoder } from "../decoder.js";
import { gatherImageFeaturesGrad, imageTokenPositions, scatterImageFeatures } from "../image-embeddings.js";
import type { Box, ImageLayout, LayoutSegment } from "../image-layout.js";
import { type PositionIds, sequentialPositions } from "../positions.js";
import { collectStopTokenIds } from "../stop-tokens.js";
import type {
  ImageBackwardOptions,
  ImageEncodeOptions,
  ImageEncoding,
  LoadOptions,
  ModelInfo,
  PixelValues,
  PreparedImage,
  TowerFeatures,
  TowerGeometry,
  VisionLanguageModel,
} from "../types.js";
import { type VisionBackwardResult, type VisionOutput, VisionTower } from "../vision.js";
import { ModelWeights, type WeightNaming } from "../weights.js";
import { type LlavaConfig, readLlavaConfig } from "./config.js";
import { Projector } from "./projector.js";

/** llava-hf's two checkpoint namings: the classic one, and newer transformers' (`model.*`). */
export const LLAVA_WEIGHT_NAMINGS: readonly WeightNaming[] = [
  {
    scopes: {
      text: "language_model.model.",
      vision: "vision_tower.vision_model.",
      projector: "multi_modal_projector.",
    },
    lmHead: "language_model.lm_head.weight",
  },
  {
    scopes: {
      text: "model.language_model.",
      vision: "model.vision_tower.vision_model.",
      projector: "model.multi_modal_projector.",
    },
    lmHead: "lm_head.weight",
  },
];

/** The tower's output and the features the projector reads. */
export interface LlavaTowerFeatures extends TowerFeatures {
  vision: VisionOutput;
}

export interface LlavaImageEncoding extends ImageEncoding, LlavaTowerFeatures {
  /** Selected vision features before the projector, [count, Dv·layers]. */
  preProjector: Float32Array;
}

function isLlavaEncoding(e: TowerFeatures | ImageEncoding): e is LlavaImageEncoding {
  return "vision" in e && "preProjector" in e;
}

export class LlavaModel implements VisionLanguageModel {
  readonly info: ModelInfo;
  /** One pass over the square crop: the same for every image. */
  private readonly tower: TowerGeometry;
  readonly stopTokenIds: number[];
  private processorConfig: ImageProcessorConfig | null = null;

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
  ) {
    const c = config;
    this.info = {
      modelType: "llava",
      textModelType: c.text.modelType,
      visionModelType: c.vision.modelType,
      llmLayers: c.text.numLayers,
      llmHeads: c.text.numHeads,
      llmKvHeads: c.text.numKvHeads,
      hiddenSize: c.text.hiddenSize,
      vocabSize: c.text.vocabSize,
      maxPositions: c.text.maxPositionEmbeddings,
      vitLayers: c.vision.numLayers,
      vitHeads: c.vision.numHeads,
      hasCls: c.vision.hasCls,
      visionFeatureLayer: c.visionFeatureLayers[0],
      positionAxes: 1,
      imageTokenId: c.imageTokenIndex,
      towerFeatureWidth: c.vision.hiddenSize * c.visionFeatureLayers.length,
      weights: weights.format,
    };
    const drop = this.dropped;
    const top = Math.max(...this.visionFeatureHiddenIndices);
    this.tower = {
      passes: 1,
      seqLen: vision.seqLen,
      cls: c.vision.hasCls ? 0 : -1,
      layers: c.vision.numLayers,
      heads: c.vision.numHeads,
      featureLayers: Array.from({ length: top }, (_, l) => l),
      sourcesOf: (i) => [{ pass: 0, token: i + drop, weight: 1 }],
    };
    this.stopTokenIds = collectStopTokenIds(dir, c.text.eosTokenIds, text, c.text.modelType);
  }

  static load(dir: string, opts: LoadOptions = {}): LlavaModel {
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
    const weights = ModelWeights.open(dir, LLAVA_WEIGHT_NAMINGS, undefined, opts.weights);
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

  /** Tower tokens dropped before the projector: the class token under "default". */
  private get dropped(): number {
    return this.config.visionFeatureSelectStrategy === "default" ? 1 : 0;
  }

  /** Number of image tokens one image becomes. */
  get imageTokenCount(): number {
    return this.vision.seqLen - this.dropped;
  }

  /** [rows, cols] of the patch grid. */
  get patchGrid(): [number, number] {
    return [this.vision.grid, this.vision.grid];
  }

  /** hidden_states indices the projector reads (vision_feature_layer resolved). */
  get visionFeatureHiddenIndices(): number[] {
    const n = this.config.vision.numLayers + 1;
    return this.config.visionFeatureLayers.map((l) => (l < 0 ? n + l : l));
  }

  /** preprocessor_config.json with the CLIP/SigLIP processor defaults (parsed on first use). */
  get imageProcessor(): ImageProcessorConfig {
    this.processorConfig ??= parseImageProcessorConfig(
      this.preprocessorJson,
      path.join(this.dir, "preprocessor_config.json"),
      this.config.vision.modelType,
      this.config.vision.imageSize,
    );
    return this.processorConfig;
  }

  towerGeometry(_layout: ImageLayout): TowerGeometry {
    return this.tower;
  }

  get padColor(): [number, number, number] {
    return this.imageProcessor.padColor;
  }

  preprocess(image: RgbImage, mode: ImageMode): PreparedImage {
    const ipc = this.imageProcessor;
    const pre = preprocessImage(image, ipc, mode);
    const S = this.config.vision.imageSize;
    if (pre.height !== S || pre.width !== S) {
      throw new Error(
        `${ipc.file}: the processor outputs ${pre.width}×${pre.height} pixels but the vision tower expects ${S}×${S}`,
      );
    }
    return {
      pixels: { data: pre.pixelValues, shape: [3, S, S] },
      seen: pre.processed,
      layout: this.layoutOf(image.width, image.height, pre.toOriginal),
    };
  }

  /**
   * The patch grid covers the first grid·patch pixels of the processed square (a stride-p convolution
   * ignores a remainder), mapped back to the original picture; "full" keeps the class token in front.
   */
  private layoutOf(
    width: number,
    height: number,
    A: { sx: number; ox: number; sy: number; oy: number },
  ): ImageLayout {
    const g = this.vision.grid;
    const side = g * this.config.vision.patchSize;
    const frame: Box = [A.ox, A.oy, side * A.sx + A.ox, side * A.sy + A.oy];
    const cls = this.config.vision.hasCls ? 1 : 0;
    const segments: LayoutSegment[] = [];
    if (cls && this.dropped === 0) segments.push({ kind: "token", name: "cls" });
    segments.push({
      kind: "grid",
      name: "image",
      rows: g,
      cols: g,
      row_separator: false,
      frame,
      tower: { pass: 0, first_token: cls },
    });
    return { original_size: [width, height], token_count: this.imageTokenCount, segments };
  }

  async encodeImage(
    kernels: Kernels,
    pixels: PixelValues,
    opts: ImageEncodeOptions = {},
  ): Promise<LlavaImageEncoding> {
    const tower = await this.encodeTowerFeatures(kernels, pixels, opts);
    const features = await this.projector.forward(kernels, tower.features, tower.count);
    const Hv = this.config.vision.numHeads;
    const Sv = tower.vision.seqLen;
    return {
      ...tower,
      preProjector: tower.features,
      features,
      towerAttentions: tower.vision.attentions.map((data) => ({ data, shape: [Hv, Sv, Sv] })),
      towerAttentionShape: [Hv, Sv, Sv],
    };
  }

  /** The tower and the feature selection only (what the projector would read; the tower's own training). */
  async encodeTowerFeatures(
    kernels: Kernels,
    pixels: PixelValues,
    opts: ImageEncodeOptions = {},
  ): Promise<LlavaTowerFeatures> {
    const S = this.config.vision.imageSize;
    const C = this.config.vision.numChannels;
    const shapeOk =
      pixels.shape.length === 3 && pixels.shape[0] === C && pixels.shape[1] === S && pixels.shape[2] === S;
    if (!shapeOk)
      throw new Error(
        `pixel_values has shape [${pixels.shape.join(", ")}], the vision tower expects [${C}, ${S}, ${S}]`,
      );
    const onAttention = opts.onAttention;
    const vision = await this.vision.forward(kernels, pixels.data, opts.onLayer, {
      tape: opts.tape,
      tapeLayers: opts.tape ? opts.tapeLayers?.() : undefined,
      returnAttentions: opts.returnAttentions,
      onAttention: onAttention ? (l, p) => onAttention(l, 0, p) : undefined,
      probsHook: opts.probsHook,
    });
    const Dv = this.config.vision.hiddenSize;
    const layers = this.config.visionFeatureLayers.map((l) => (l < 0 ? vision.hiddenStates.length + l : l));
    const drop = this.dropped;
    const count = vision.seqLen - drop;
    const width = Dv * layers.length;
    // Concatenate the chosen layers along the hidden dim, then drop the first token for "default".
    const pre = new Float32Array(count * width);
    for (let t = 0; t < count; t++) {
      layers.forEach((l, j) => {
        const src = vision.hiddenStates[l].subarray((t + drop) * Dv, (t + drop + 1) * Dv);
        pre.set(src, t * width + j * Dv);
      });
    }
    return { vision, features: pre, count };
  }

  buildInputsEmbeds(inputIds: number[], image: ImageEncoding): Float32Array {
    const embeds = this.decoder.embed(inputIds);
    const pos = this.imagePositions(inputIds);
    return scatterImageFeatures(embeds, pos, image.features, image.count, this.config.text.hiddenSize);
  }

  /** 1-D positions: the sequence index (LLaVA's RoPE does not see the image's geometry). */
  positionIds(ids: number[], _layout: ImageLayout, from = 0): PositionIds {
    return sequentialPositions(from, ids.length - from);
  }

  imagePositions(inputIds: number[]): number[] {
    return imageTokenPositions(inputIds, this.config.imageTokenIndex);
  }

  /**
   * Backward of `buildInputsEmbeds` for the image features: the gradient rows at the image positions.
   * dEmbeds holds rows from … from+rows−1; image positions outside that window get zero.
   */
  imageFeaturesGrad(inputIds: number[], dEmbeds: Float32Array, from = 0): Float32Array {
    return gatherImageFeaturesGrad(this.imagePositions(inputIds), dEmbeds, this.config.text.hiddenSize, from);
  }

  /**
   * Backward from the gradient at the projector output (one row per image token) through the projector,
   * the feature-layer selection (CLS dropped for "default") and the vision tower. Needs an encoding made
   * with `{ tape: true }` unless `frozenTower` stops at the projector.
   */
  async imageBackward(
    kernels: Kernels,
    image: ImageEncoding,
    dFeatures: Float32Array,
    opts: ImageBackwardOptions = {},
  ): Promise<VisionBackwardResult> {
    if (!isLlavaEncoding(image)) throw new Error("image backward: not an encoding of this model");
    const dPre = await this.projector.backward(
      kernels,
      image.preProjector,
      image.count,
      dFeatures,
      opts.grads,
    );
    if (opts.frozenTower) return { dHidden0: new Float32Array(0) };
    return this.towerFeaturesBackward(kernels, image, dPre, opts);
  }

  /**
   * Backward from the gradient at the selected vision features ([count, Dv·layers]) through the feature-layer
   * selection (CLS dropped for "default") and the vision tower.
   */
  async towerFeaturesBackward(
    kernels: Kernels,
    features: TowerFeatures,
    dFeatures: Float32Array,
    opts: ImageBackwardOptions = {},
  ): Promise<VisionBackwardResult> {
    if (!("vision" in features)) throw new Error("tower backward: not tower features of this model");
    const enc = features as LlavaTowerFeatures;
    const tape = enc.vision.tape;
    if (!tape) throw new Error("image backward: the image was encoded without { tape: true }");
    const Dv = this.config.vision.hiddenSize;
    const layers = this.visionFeatureHiddenIndices;
    const seq = enc.vision.seqLen;
    const drop = this.dropped;
    const width = Dv * layers.length;
    const dHidden: (Float32Array | null)[] = new Array(this.config.vision.numLayers + 1).fill(null);
    layers.forEach((l, j) => {
      const d = dHidden[l] ?? new Float32Array(seq * Dv);
      for (let t = 0; t < enc.count; t++) {
        const src = t * width + j * Dv;
        const dst = (t + drop) * Dv;
        for (let c = 0; c < Dv; c++) d[dst + c] += dFeatures[src + c];
      }
      dHidden[l] = d;
    });
    return this.vision.backward(kernels, tape, dHidden, opts);
  }

  parameters(): { name: string; shape: number[]; data: Float32Array }[] {
    return this.weights.loadedTensors();
  }

  diskName(canonical: string): string {
    return this.weights.diskName(canonical);
  }

  close(): void {
    this.weights.close();
  }
}
