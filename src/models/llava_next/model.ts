/**
 * LlavaNextForConditionalGeneration (model_type "llava_next") and LlavaOnevisionForConditionalGeneration
 * ("llava_onevision", single image): every tile (the base view first) through the CLIP/SigLIP tower one pass
 * each, the feature layer selected, LLaVA's projector per tile, then the packing (unpadding, OneVision's
 * downsampling, `image_newline` after each grid row) into the rows that replace the image tokens. Positions
 * are 1-D; the decoder is the shared one.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { RgbImage } from "../../hf/image-decode.js";
import type { ImageMode } from "../../hf/image-processor.js";
import { TextProcessor } from "../../hf/tokenizer.js";
import type { Kernels } from "../../kernels/types.js";
import { addInPlace } from "../../tensor/ops.js";
import { TextDecoder } from "../decoder.js";
import { gatherImageFeaturesGrad, imageTokenPositions, scatterImageFeatures } from "../image-embeddings.js";
import type { ImageLayout } from "../image-layout.js";
import { Projector } from "../llava/projector.js";
import { type PositionIds, sequentialPositions } from "../positions.js";
import { collectStopTokenIds } from "../stop-tokens.js";
import type {
  ImageBackwardOptions,
  ImageBackwardResult,
  ImageEncodeOptions,
  ImageEncoding,
  LoadOptions,
  ModelInfo,
  PixelValues,
  TowerFeatures,
  TowerGeometry,
  VisionLanguageModel,
} from "../types.js";
import { type VisionTape, VisionTower } from "../vision.js";
import { ModelWeights, type WeightNaming } from "../weights.js";
import type { AnyresGrid } from "./anyres.js";
import { type AnyresConfig, readAnyresConfig } from "./config.js";
import { packedTowerSources, packFeatures, packFeaturesBackward } from "./pack.js";
import {
  type AnyresGeometry,
  type AnyresProcessed,
  type AnyresProcessorConfig,
  anyresPadColor,
  gridOfLayout,
  parseAnyresProcessorConfig,
  preprocessAnyres,
} from "./processor.js";

/** Classic llava-hf names and newer transformers' (`model.*`); `top.` holds `image_newline`. */
export const ANYRES_WEIGHT_NAMINGS: readonly WeightNaming[] = [
  {
    scopes: {
      text: "language_model.model.",
      vision: "vision_tower.vision_model.",
      projector: "multi_modal_projector.",
      top: "",
    },
    lmHead: "language_model.lm_head.weight",
  },
  {
    scopes: {
      text: "model.language_model.",
      vision: "model.vision_tower.vision_model.",
      projector: "model.multi_modal_projector.",
      top: "model.",
    },
    lmHead: "lm_head.weight",
  },
];

/** Every tile's selected tower rows [n·g², Dv], each layer's attention, and (with a tape) each pass's tape. */
export interface AnyresTowerFeatures extends TowerFeatures {
  towerAttentions: PixelValues[];
  towerAttentionShape: number[];
  tapes?: VisionTape[];
}

/** The tower's selected features of every tile, [n·g², Dv], and the projector's output before packing. */
export interface AnyresImageEncoding extends ImageEncoding {
  tiles: number;
  preProjector: Float32Array;
  perTile: Float32Array;
  grid: AnyresGrid;
  tapes?: VisionTape[];
}

function isAnyresEncoding(e: TowerFeatures | ImageEncoding): e is AnyresImageEncoding {
  return "grid" in e && "preProjector" in e;
}

function readJsonOr(file: string, dflt: unknown): unknown {
  if (!fs.existsSync(file)) return dflt;
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${path.basename(file)}: invalid JSON (${(e as Error).message})`);
  }
}

export class AnyresLlavaModel implements VisionLanguageModel {
  readonly info: ModelInfo;
  readonly stopTokenIds: number[];
  readonly newline: Float32Array;
  readonly processor: AnyresProcessorConfig;
  readonly geometry: AnyresGeometry;

  private constructor(
    readonly dir: string,
    readonly config: AnyresConfig,
    readonly weights: ModelWeights,
    readonly text: TextProcessor,
    readonly vision: VisionTower,
    readonly projector: Projector,
    readonly decoder: TextDecoder,
    preprocessorJson: unknown,
  ) {
    const c = config;
    this.info = {
      modelType: c.modelType,
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
      towerFeatureWidth: c.vision.hiddenSize,
      weights: weights.format,
    };
    this.newline = weights.vector("top.image_newline", [c.text.hiddenSize]);
    this.processor = parseAnyresProcessorConfig(
      preprocessorJson,
      path.join(dir, "preprocessor_config.json"),
      c.modelType,
      c.gridPinpoints,
    );
    this.geometry = {
      g: vision.grid,
      firstPatchToken: this.dropped,
      maxNumPatches: c.maxNumPatches,
      towerSize: c.vision.imageSize,
    };
    if (this.processor.tile !== c.vision.imageSize)
      throw new Error(
        `${this.processor.file}: tiles of ${this.processor.tile} px, but vision_config.image_size is ${c.vision.imageSize}`,
      );
    this.stopTokenIds = collectStopTokenIds(dir, c.text.eosTokenIds, text, c.text.modelType);
  }

  static load(dir: string, opts: LoadOptions = {}): AnyresLlavaModel {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
      throw new Error(`${dir}: model folder not found`);
    const config = readAnyresConfig(dir);
    const text = TextProcessor.load(dir, config.imageTokenIndex);
    const pp = readJsonOr(path.join(dir, "preprocessor_config.json"), {});
    const weights = ModelWeights.open(dir, ANYRES_WEIGHT_NAMINGS, undefined, opts.weights);
    try {
      return new AnyresLlavaModel(
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
    return this.config.visionFeatureSelectStrategy === "default" && this.config.vision.hasCls ? 1 : 0;
  }

  /**
   * Passes: the base view (0), then the tiles row-major. A base token's source is its own tower token, a
   * grid token's the tile cell the unpadding kept (OneVision's downsampled cells: the bilinear corners with
   * their weights), a newline none.
   */
  towerGeometry(layout: ImageLayout): TowerGeometry {
    const grid = gridOfLayout(layout, this.processor, this.geometry);
    const sources = packedTowerSources(grid, this.geometry.g, this.dropped);
    const Lv = this.config.vision.numLayers;
    const l0 = this.config.visionFeatureLayers[0];
    const hidden = l0 < 0 ? Lv + 1 + l0 : l0;
    return {
      passes: 1 + grid.tileRows * grid.tileCols,
      seqLen: this.vision.seqLen,
      cls: this.config.vision.hasCls ? 0 : -1,
      layers: Lv,
      heads: this.config.vision.numHeads,
      featureLayers: Array.from({ length: hidden }, (_, l) => l),
      sourcesOf: (i) => sources[i] ?? [],
    };
  }

  get padColor(): [number, number, number] {
    return anyresPadColor(this.processor);
  }

  preprocess(image: RgbImage, mode: ImageMode): AnyresProcessed {
    return preprocessAnyres(image, mode, this.processor, this.geometry);
  }

  async encodeImage(
    kernels: Kernels,
    pixels: PixelValues,
    opts: ImageEncodeOptions = {},
  ): Promise<AnyresImageEncoding> {
    if (!opts.layout) throw new Error(`${this.config.modelType}: encoding an image needs its layout`);
    const grid = gridOfLayout(opts.layout, this.processor, this.geometry);
    const tower = await this.encodeTowerFeatures(kernels, pixels, opts);
    const n = pixels.shape[0];
    if (n !== 1 + grid.tileRows * grid.tileCols)
      throw new Error(
        `pixel_values has ${n} tiles, the image layout needs ${1 + grid.tileRows * grid.tileCols}`,
      );
    const perTile = await this.projector.forward(kernels, tower.features, tower.count);
    const D = this.config.text.hiddenSize;
    const g = this.geometry.g;
    const features = packFeatures(perTile, grid, g, D, this.newline);
    return {
      features,
      count: features.length / D,
      towerAttentions: tower.towerAttentions,
      towerAttentionShape: tower.towerAttentionShape,
      tiles: n,
      preProjector: tower.features,
      perTile,
      grid,
      tapes: tower.tapes,
    };
  }

  /** Every tile through the tower; the selected layer's patch rows, [n·g², Dv]. */
  async encodeTowerFeatures(
    kernels: Kernels,
    pixels: PixelValues,
    opts: ImageEncodeOptions = {},
  ): Promise<AnyresTowerFeatures> {
    const S = this.config.vision.imageSize;
    const C = this.config.vision.numChannels;
    const sh = pixels.shape;
    if (!(sh.length === 4 && sh[0] >= 1 && sh[1] === C && sh[2] === S && sh[3] === S))
      throw new Error(
        `pixel_values has shape [${sh.join(", ")}], the vision tower expects [n, ${C}, ${S}, ${S}]`,
      );
    const n = sh[0];
    const plane = C * S * S;
    const Dv = this.config.vision.hiddenSize;
    const Lv = this.config.vision.numLayers;
    const Hv = this.config.vision.numHeads;
    const Sv = this.vision.seqLen;
    const gg = this.geometry.g * this.geometry.g;
    const drop = this.dropped;
    const l0 = this.config.visionFeatureLayers[0];
    const hidden = l0 < 0 ? Lv + 1 + l0 : l0;
    const features = new Float32Array(n * gg * Dv);
    const onAttention = opts.onAttention;
    const keepAttentions = opts.returnAttentions !== false && !onAttention;
    const attn = keepAttentions ? Array.from({ length: Lv }, () => new Float32Array(n * Hv * Sv * Sv)) : [];
    const tapes: VisionTape[] = [];
    for (let t = 0; t < n; t++) {
      const out = await this.vision.forward(
        kernels,
        pixels.data.subarray(t * plane, (t + 1) * plane),
        // Progress per layer over all tiles: report each layer once, on the last tile.
        t === n - 1 ? opts.onLayer : undefined,
        {
          probsHook: opts.probsHook,
          tape: opts.tape,
          tapeLayers: opts.tape ? opts.tapeLayers?.() : undefined,
          returnAttentions: keepAttentions,
          onAttention: onAttention ? (l, p) => onAttention(l, t, p) : undefined,
        },
      );
      if (out.tape) tapes.push(out.tape);
      features.set(out.hiddenStates[hidden].subarray(drop * Dv, (drop + gg) * Dv), t * gg * Dv);
      out.attentions.forEach((a, l) => {
        attn[l].set(a, t * Hv * Sv * Sv);
      });
    }
    return {
      features,
      count: n * gg,
      towerAttentions: attn.map((data) => ({ data, shape: [n, Hv, Sv, Sv] })),
      towerAttentionShape: [n, Hv, Sv, Sv],
      tapes: opts.tape ? tapes : undefined,
    };
  }

  buildInputsEmbeds(inputIds: number[], image: ImageEncoding): Float32Array {
    const embeds = this.decoder.embed(inputIds);
    const pos = this.imagePositions(inputIds);
    return scatterImageFeatures(embeds, pos, image.features, image.count, this.config.text.hiddenSize);
  }

  imagePositions(inputIds: number[]): number[] {
    return imageTokenPositions(inputIds, this.config.imageTokenIndex);
  }

  /** 1-D positions: the sequence index. */
  positionIds(ids: number[], _layout: ImageLayout, from = 0): PositionIds {
    return sequentialPositions(from, ids.length - from);
  }

  imageFeaturesGrad(inputIds: number[], dEmbeds: Float32Array, from = 0): Float32Array {
    return gatherImageFeaturesGrad(this.imagePositions(inputIds), dEmbeds, this.config.text.hiddenSize, from);
  }

  /**
   * From the gradient at the packed rows back through the packing (newline, downsampling, unpadding), the
   * projector and, unless `frozenTower`, every tile's tower pass (needs `{ tape: true }`); `onLayer` is called
   * once per layer with every pass's dProbs and probs ([n, H, Sv, Sv], pass-major, as `towerGeometry` numbers
   * the passes), dPixels comes back as [n, 3, S, S].
   */
  async imageBackward(
    kernels: Kernels,
    image: ImageEncoding,
    dFeatures: Float32Array,
    opts: ImageBackwardOptions = {},
  ): Promise<ImageBackwardResult> {
    if (!isAnyresEncoding(image)) throw new Error("image backward: not an encoding of this model");
    const D = this.config.text.hiddenSize;
    const { dPerTile, dNewline } = packFeaturesBackward(dFeatures, image.grid, this.geometry.g, D);
    if (opts.grads) addInPlace(opts.grads.of(this.newline), dNewline);
    const count = image.perTile.length / D;
    const dPre = await this.projector.backward(kernels, image.preProjector, count, dPerTile, opts.grads);
    if (opts.frozenTower) return {};
    const tower: AnyresTowerFeatures = {
      features: image.preProjector,
      count,
      towerAttentions: image.towerAttentions,
      towerAttentionShape: image.towerAttentionShape,
      tapes: image.tapes,
    };
    return this.towerFeaturesBackward(kernels, tower, dPre, opts);
  }

  /** Backward from the selected tower rows of every tile ([n·g², Dv]) through each tile's pass. */
  async towerFeaturesBackward(
    kernels: Kernels,
    features: TowerFeatures,
    dFeatures: Float32Array,
    opts: ImageBackwardOptions = {},
  ): Promise<ImageBackwardResult> {
    const tapes = (features as AnyresTowerFeatures).tapes;
    if (!tapes) throw new Error("image backward: the image was encoded without { tape: true }");
    const Dv = this.config.vision.hiddenSize;
    const Lv = this.config.vision.numLayers;
    const Sv = this.vision.seqLen;
    const gg = this.geometry.g * this.geometry.g;
    const drop = this.dropped;
    const l0 = this.config.visionFeatureLayers[0];
    const hidden = l0 < 0 ? Lv + 1 + l0 : l0;
    const S = this.config.vision.imageSize;
    const plane = this.config.vision.numChannels * S * S;
    const dHidden = tapes.map((_, t) => {
      const dh: (Float32Array | null)[] = new Array(Lv + 1).fill(null);
      const d = new Float32Array(Sv * Dv);
      d.set(dFeatures.subarray(t * gg * Dv, (t + 1) * gg * Dv), drop * Dv);
      dh[hidden] = d;
      return dh;
    });
    const res = await this.vision.backwardPasses(kernels, tapes, dHidden, {
      onLayer: opts.onLayer,
      pixels: opts.pixels,
      grads: opts.grads,
    });
    let dPixels: Float32Array | undefined;
    if (opts.pixels) {
      dPixels = new Float32Array(tapes.length * plane);
      res.forEach((r, t) => {
        dPixels!.set(r.dPixels!, t * plane);
      });
    }
    return { dPixels };
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
