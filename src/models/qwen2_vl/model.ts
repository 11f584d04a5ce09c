/**
 * Qwen2VLForConditionalGeneration / Qwen2_5_VLForConditionalGeneration (model_type "qwen2_vl" / "qwen2_5_vl"):
 * smart-resized image → flattened patches → vision tower with 2-D rotary attention → 2×2 merger → features
 * written over the `<|image_pad|>` tokens → Qwen2 decoder with M-RoPE (3-axis positions).
 */
import type { RgbImage } from "../../hf/image-decode.js";
import { expandToSquare, type ImageMode } from "../../hf/image-processor.js";
import { TextProcessor } from "../../hf/tokenizer.js";
import type { Kernels } from "../../kernels/types.js";
import { TextDecoder } from "../decoder.js";
import { gatherImageFeaturesGrad, imageTokenPositions, scatterImageFeatures } from "../image-embeddings.js";
import type { Box, ImageLayout } from "../image-layout.js";
import { type PositionIds, positionColumns } from "../positions.js";
import { collectStopTokenIds } from "../stop-tokens.js";
import type {
  ImageBackwardOptions,
  ImageBackwardResult,
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
import { ModelWeights, type WeightNaming } from "../weights.js";
import { type QwenVlConfig, readQwenVlConfig } from "./config.js";
import { mergedGrid, mropePositions } from "./positions.js";
import {
  type GridThw,
  padColorOf,
  preprocessQwenImage,
  type QwenProcessorConfig,
  qwenImageLayout,
  readQwenProcessorConfig,
} from "./processor.js";
import { type QwenVisionTape, QwenVisionTower } from "./vision.js";

/** Hub checkpoints' naming, and transformers ≥ 4.52's (`_checkpoint_conversion_mapping`). */
export const QWEN_VL_WEIGHT_NAMINGS: readonly WeightNaming[] = [
  { scopes: { text: "model.", vision: "visual." }, lmHead: "lm_head.weight" },
  { scopes: { text: "model.language_model.", vision: "model.visual." }, lmHead: "lm_head.weight" },
];

export interface QwenImageEncoding extends ImageEncoding {
  /** The tower's hidden states [patch embeddings, after each block] in pixel_values order. */
  hiddenStates: Float32Array[];
  /** With `tape: true`: the tower's activations for `imageBackward`. */
  tape?: QwenVisionTape;
}

function isQwenEncoding(e: ImageEncoding): e is QwenImageEncoding {
  return "hiddenStates" in e;
}

export class QwenVlModel implements VisionLanguageModel {
  readonly info: ModelInfo;
  readonly stopTokenIds: number[];

  private constructor(
    readonly dir: string,
    readonly config: QwenVlConfig,
    readonly processor: QwenProcessorConfig,
    readonly weights: ModelWeights,
    readonly text: TextProcessor,
    readonly vision: QwenVisionTower,
    readonly decoder: TextDecoder,
  ) {
    const c = config;
    this.info = {
      modelType: c.modelType,
      textModelType: c.text.modelType,
      visionModelType: c.modelType,
      llmLayers: c.text.numLayers,
      llmHeads: c.text.numHeads,
      llmKvHeads: c.text.numKvHeads,
      hiddenSize: c.text.hiddenSize,
      vocabSize: c.text.vocabSize,
      maxPositions: c.text.maxPositionEmbeddings,
      vitLayers: c.vision.depth,
      vitHeads: c.vision.numHeads,
      hasCls: false,
      visionFeatureLayer: -1,
      positionAxes: 3,
      imageTokenId: c.imageTokenId,
      towerFeatureWidth: c.vision.width * c.vision.mergeSize * c.vision.mergeSize,
      weights: weights.format,
    };
    this.stopTokenIds = collectStopTokenIds(dir, c.text.eosTokenIds, text, c.text.modelType);
  }

  static load(dir: string, opts: LoadOptions = {}): QwenVlModel {
    const config = readQwenVlConfig(dir);
    const processor = readQwenProcessorConfig(dir, config.vision);
    const text = TextProcessor.load(dir, config.imageTokenId);
    const weights = ModelWeights.open(dir, QWEN_VL_WEIGHT_NAMINGS, undefined, opts.weights);
    try {
      return new QwenVlModel(
        dir,
        config,
        processor,
        weights,
        text,
        new QwenVisionTower(config.vision, weights),
        new TextDecoder(config.text, weights),
      );
    } catch (e) {
      weights.close();
      throw e;
    }
  }

  /**
   * One pass over the image's N patches in pixel_values order (no class token); image token i is the merged
   * cell of patches m²·i … m²·i + m² − 1 (merge-window order), each with weight 1/m². Every block feeds the
   * merger.
   */
  towerGeometry(layout: ImageLayout): TowerGeometry {
    const v = this.config.vision;
    const mm = v.mergeSize * v.mergeSize;
    const [frames, rows, cols] = mergedGrid(layout);
    const P = frames * rows * cols;
    return {
      passes: 1,
      seqLen: P * mm,
      cls: -1,
      layers: v.depth,
      heads: v.numHeads,
      featureLayers: Array.from({ length: v.depth }, (_, l) => l),
      sourcesOf: (i) =>
        i >= 0 && i < P
          ? Array.from({ length: mm }, (_, k) => ({ pass: 0, token: i * mm + k, weight: 1 / mm }))
          : [],
    };
  }

  /**
   * "default": the picture as the processor takes it; "pad": first centred on a square of the mean colour
   * (LVLM-Interpret's expand2square), the grid then framed by that square. "resize" (a square of the tower's
   * fixed input) has no meaning for a tower without a fixed input size.
   */
  get padColor(): [number, number, number] {
    return padColorOf(this.processor);
  }

  preprocess(image: RgbImage, mode: ImageMode): PreparedImage {
    if (mode !== "default" && mode !== "pad")
      throw new RangeError(
        `image mode "${mode}" is not available for ${this.config.modelType} (its processor sizes every image itself); use "default" or "pad"`,
      );
    const input = mode === "pad" ? expandToSquare(image, padColorOf(this.processor)) : image;
    // expandToSquare puts the picture at floor((side − W)/2), floor((side − H)/2) of the square (0 − x: no −0).
    const side = input.width;
    const ox = Math.floor((side - image.width) / 2);
    const oy = Math.floor((side - image.height) / 2);
    const frame: Box =
      mode === "pad" ? [0 - ox, 0 - oy, side - ox, side - oy] : [0, 0, image.width, image.height];
    const p = preprocessQwenImage(input, this.processor);
    const n = p.grid[0] * p.grid[1] * p.grid[2];
    return {
      pixels: { data: p.data, shape: [n, p.data.length / n], grid: p.grid },
      seen: p.resized,
      layout: qwenImageLayout(image.width, image.height, p.grid, this.config.vision.mergeSize, frame),
    };
  }

  private gridOf(pixels: PixelValues): GridThw {
    const g = pixels.grid;
    if (g?.length !== 3 || !g.every((x) => Number.isInteger(x) && x > 0))
      throw new Error(
        `pixel_values [${pixels.shape.join(", ")}] come without their patch grid (image_grid_thw)`,
      );
    return [g[0], g[1], g[2]];
  }

  async encodeImage(
    kernels: Kernels,
    pixels: PixelValues,
    opts: ImageEncodeOptions = {},
  ): Promise<QwenImageEncoding> {
    const grid = this.gridOf(pixels);
    const onAttention = opts.onAttention;
    const out = await this.vision.forward(kernels, pixels.data, grid, opts.onLayer, {
      tape: opts.tape,
      probsHook: opts.probsHook,
      onAttention: onAttention ? (l, p) => onAttention(l, 0, p) : undefined,
    });
    const H = this.config.vision.numHeads;
    const N = grid[0] * grid[1] * grid[2];
    const groups = this.vision.attentionGroups(grid);
    return {
      features: out.features,
      count: out.count,
      towerAttentions: out.attentions.map((data) => ({ data, shape: [H, N, N] })),
      towerAttentionShape: [H, N, N],
      towerWindows: Array.from({ length: this.config.vision.depth }, (_, l) =>
        this.vision.isWindowed(l) ? groups(l) : null,
      ),
      hiddenStates: out.hiddenStates,
      tape: out.tape,
    };
  }

  buildInputsEmbeds(inputIds: number[], image: ImageEncoding): Float32Array {
    const embeds = this.decoder.embed(inputIds);
    const pos = this.imagePositions(inputIds);
    return scatterImageFeatures(embeds, pos, image.features, image.count, this.config.text.hiddenSize);
  }

  imagePositions(inputIds: number[]): number[] {
    return imageTokenPositions(inputIds, this.config.imageTokenId);
  }

  positionIds(ids: number[], layout: ImageLayout, from = 0): PositionIds {
    const all = mropePositions(ids, this.config.imageTokenId, mergedGrid(layout));
    return from === 0 ? all : positionColumns(all, from, ids.length - from);
  }

  imageFeaturesGrad(inputIds: number[], dEmbeds: Float32Array, from = 0): Float32Array {
    return gatherImageFeaturesGrad(this.imagePositions(inputIds), dEmbeds, this.config.text.hiddenSize, from);
  }

  private notYet(what: string): Error {
    return new Error(`${this.config.modelType}: ${what} is not implemented yet`);
  }

  /**
   * From the gradient at the merged image features back through the merger and every tower block (window
   * and full attention alike), reporting each block's dProbs and probabilities [H, N, N] in patch order.
   * Needs an encoding made with `{ tape: true }`. Weight gradients (training) are not implemented.
   */
  async imageBackward(
    kernels: Kernels,
    image: ImageEncoding,
    dFeatures: Float32Array,
    opts: ImageBackwardOptions = {},
  ): Promise<ImageBackwardResult> {
    if (!isQwenEncoding(image)) throw new Error("image backward: not an encoding of this model");
    if (opts.grads || opts.frozenTower) throw this.notYet("vision-tower training");
    if (!image.tape) throw new Error("image backward: the image was encoded without { tape: true }");
    const D = this.config.vision.outHiddenSize;
    if (dFeatures.length !== image.count * D)
      throw new RangeError(
        `image backward: gradient of ${dFeatures.length} values for ${image.count} features of width ${D}`,
      );
    const r = await this.vision.backward(kernels, image.tape, dFeatures, {
      onLayer: opts.onLayer,
      pixels: opts.pixels,
    });
    return { dPixels: r.dPixels };
  }

  async encodeTowerFeatures(): Promise<TowerFeatures> {
    throw this.notYet("vision-tower training");
  }

  async towerFeaturesBackward(): Promise<ImageBackwardResult> {
    throw this.notYet("vision-tower training");
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
