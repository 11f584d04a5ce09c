/**
 * The one interface every vision-language model family implements and everything above src/models uses
 * (trace, generate, relevancy, causal, server, bench, train). A family turns an image into model inputs plus
 * the image's layout, encodes it (optionally keeping a tape for the backward), builds the input embeddings,
 * gives position ids ([axes, n]) for any sequence, runs the decoder with those explicit positions, and
 * back-propagates from the image features into the vision tower. Nothing above models/ sees a family's
 * config or classes: what the layers above need is here.
 */
import type { RgbImage } from "../hf/image-decode.js";
import type { ImageMode } from "../hf/image-processor.js";
import type { TextProcessor } from "../hf/tokenizer.js";
import type { WeightFormat } from "../kernels/quantize.js";
import type { Kernels, WeightMatrix } from "../kernels/types.js";
import type {
  DecoderBackwardOptions,
  DecoderBackwardResult,
  DecoderStepOptions,
  DecoderStepResult,
  DecoderTape,
  KvCache,
  LogitTarget,
} from "./decoder.js";
import type { WeightGradients } from "./gradients.js";
import type { ImageLayout } from "./image-layout.js";
import type { PositionIds } from "./positions.js";
import type { LayerTapes } from "./tape-store.js";
import type { VisionLayerTape } from "./vision.js";
import type { ModelWeights } from "./weights.js";

/** What the layers above need to know about a model's shape (the run manifest's `model` section). */
export interface ModelInfo {
  /** config.json `model_type`: the family ("llava", …). */
  modelType: string;
  textModelType: string;
  visionModelType: string;
  llmLayers: number;
  llmHeads: number;
  llmKvHeads: number;
  hiddenSize: number;
  vocabSize: number;
  /** Longest sequence the decoder's position embedding is configured for. */
  maxPositions: number;
  vitLayers: number;
  vitHeads: number;
  /** The vision sequence starts with a class token. */
  hasCls: boolean;
  /** First configured vision feature layer (as config.json writes it). */
  visionFeatureLayer: number;
  /** Rows of the position ids: 1 (RoPE) or 3 (M-RoPE). */
  positionAxes: number;
  /** Token id of the image placeholder, repeated once per image token in the prompt. */
  imageTokenId: number;
  /** Width of one tower feature row before the projector (the tower's own pretraining reads these). */
  towerFeatureWidth: number;
  /** How the weights were loaded: as stored, or the language model's matrices quantised to int8. */
  weights: WeightFormat;
}

/** How a checkpoint is loaded. */
export interface LoadOptions {
  /** "int8": quantise the language model's matrices at load (opt-in; changes the numbers). Default "stored". */
  weights?: WeightFormat;
}

/** pixel_values as the processor returns them: [3, H, W], [n, 3, S, S] (tiles) or [N, C·T·P·P] (patches). */
export interface PixelValues {
  data: Float32Array;
  shape: number[];
  /** Patch-sequence families (Qwen2-VL): the patch grid [t, h, w] (`image_grid_thw`), which N alone lacks. */
  grid?: number[];
}

/** An image prepared for the model. */
export interface PreparedImage {
  pixels: PixelValues;
  /** What the model saw, as 8-bit RGB (the run's image.png). */
  seen: RgbImage;
  /** Where each image token comes from in the original picture. */
  layout: ImageLayout;
}

export interface ImageEncodeOptions {
  /**
   * The image's layout (from `preprocess` or the run): families whose packing depends on the picture's
   * geometry (LLaVA-NeXT's unpadding) need it; others ignore it.
   */
  layout?: ImageLayout;
  /** Keep every activation the image-side backward needs (opt-in). */
  tape?: boolean;
  /**
   * A store per tower pass for the tape's layers (default: all in memory; see `LayerTapes`). Towers whose
   * tape is not kept per encoder layer (Qwen2-VL's) keep theirs in memory.
   */
  tapeLayers?: () => LayerTapes<VisionLayerTape>;
  /**
   * Return the tower's attention probabilities (default true). Relevancy reads them from the tape and says
   * false, so that a spilled tape's probabilities do not all stay in memory; `towerAttentions` is then empty
   * for the towers that honour it (Qwen2-VL's returns them anyway).
   */
  returnAttentions?: boolean;
  /**
   * Hands each tower layer's probabilities over, pass by pass ([H, S, S] each), as soon as they are computed,
   * instead of returning them: `towerAttentions` is then empty and `towerAttentionShape` says how a layer's
   * passes stack into its `vit_attn` tensor. A caller can put them out of memory layer by layer.
   */
  onAttention?: (layer: number, pass: number, probs: Float32Array) => void;
  /** Called after each tower layer (progress). */
  onLayer?: (layer: number) => void;
  /** Hook on each tower layer's attention probabilities (finite-difference checks). */
  probsHook?: (layer: number, groupProbs: Float32Array, group: number) => void;
}

/** An encoded image: the rows that replace the image tokens' embeddings, and what the tower attended to. */
export interface ImageEncoding {
  /** [count, hidden]: one row per image token, separators included, in sequence order. */
  features: Float32Array;
  count: number;
  /** Per tower layer: attention probabilities in the run's `vit_attn.{l}` shape (none with `onAttention`). */
  towerAttentions: PixelValues[];
  /** A tower layer's `vit_attn.{l}` shape: its passes' [H, S, S] blocks stacked pass-major. */
  towerAttentionShape: number[];
  /**
   * Per tower layer: the window of every tower token where the layer attends inside windows only (Qwen2.5-VL's
   * windowed blocks; the run stores those probabilities packed), else null.
   */
  towerWindows?: (Int32Array | null)[];
}

export interface ImageBackwardOptions {
  /**
   * Per tower layer, from the top down: dProbs and the forward probabilities, [passes·H·Sv·Sv] (pass-major,
   * the passes numbered as `towerGeometry` numbers them).
   */
  onLayer?: (layer: number, dProbs: Float32Array, probs: Float32Array) => void;
  /** Also return the gradient w.r.t. pixel_values. */
  pixels?: boolean;
  /** Accumulate weight gradients here (training). */
  grads?: WeightGradients;
  /** Stop at the tower's output: only the projector/merger gets gradients (a frozen tower). */
  frozenTower?: boolean;
}

export interface ImageBackwardResult {
  /** Gradient at pixel_values (with `pixels: true`), same layout. */
  dPixels?: Float32Array;
}

/** Tower features before the projector, one row per image token (the tower's own training). */
export interface TowerFeatures {
  features: Float32Array;
  count: number;
}

/** One tower token behind an image token: its pass, its index in that pass, and its share. */
export interface TowerSource {
  pass: number;
  token: number;
  weight: number;
}

/**
 * The vision tower's geometry for maps propagated through it (relevancy's vit / all / all_v2 / chain) for
 * one image: `passes` passes of `seqLen` tokens each (LLaVA: one; LLaVA-NeXT: the base view, then the tiles
 * row-major), and the tower tokens behind every image token.
 */
export interface TowerGeometry {
  /** Tower passes (1 for llava and qwen; base + tiles for NeXT). */
  passes: number;
  /** Tokens per pass, class token included. */
  seqLen: number;
  /** Index of the class token in each pass, or −1. */
  cls: number;
  layers: number;
  heads: number;
  /** Tower layers whose attention reaches the image features (fresh gradients flow through exactly these). */
  featureLayers: number[];
  /** Tower tokens behind image token i, weights summing to 1; [] for separators. */
  sourcesOf(imageToken: number): TowerSource[];
}

/** The text decoder, driven by explicit position ids. */
export interface LanguageDecoder {
  newCache(capacity: number): KvCache;
  /** embed_tokens lookup [ids.length, hidden]. */
  embed(ids: number[]): Float32Array;
  /** Rows after the cache's current length, at the given position ids (n = positions.n). */
  forward(
    kernels: Kernels,
    inputsEmbeds: Float32Array,
    positions: PositionIds,
    cache: KvCache,
    opts?: DecoderStepOptions,
  ): Promise<DecoderStepResult>;
  /** Gradient of Σ target logits back to the input embeddings, reporting each layer's dProbs. */
  backward(
    kernels: Kernels,
    tape: DecoderTape,
    targets: LogitTarget[],
    opts?: DecoderBackwardOptions,
  ): Promise<DecoderBackwardResult>;
  /** Backward of a loss given by its gradient at the logits of some rows (training). */
  backwardFromLogits(
    kernels: Kernels,
    tape: DecoderTape,
    rows: number[],
    dLogits: Float32Array,
    opts?: DecoderBackwardOptions,
  ): Promise<DecoderBackwardResult>;
  /**
   * Readies the kernels' block graphs that hold weights of their own (int8 layers) before the first question;
   * returns the matrices they hold, and tells `onHeld` of each layer's as soon as they are held. Absent where no
   * such graphs exist.
   */
  prepareLayers?(
    kernels: Kernels,
    opts?: { onLayer?: (done: number, total: number) => void; onHeld?: (matrices: WeightMatrix[]) => void },
  ): Promise<WeightMatrix[]>;
  /** embed_tokens gradient (training). */
  embedBackward(
    ids: number[],
    dEmbeds: Float32Array,
    grads: WeightGradients,
    skip?: (id: number) => boolean,
  ): void;
}

export interface VisionLanguageModel {
  /** The checkpoint folder. */
  readonly dir: string;
  readonly info: ModelInfo;
  /** Tokenizer and chat template (the prompt's `<image>` is expanded to the layout's token count). */
  readonly text: TextProcessor;
  readonly decoder: LanguageDecoder;
  /** The checkpoint's tensors as loaded (int8 matrices among them with `--weights int8`). */
  readonly weights: ModelWeights;
  /** Ids that end generation. */
  readonly stopTokenIds: readonly number[];
  /**
   * The tower's geometry for an image of this layout (the tile grid, and so the passes and the tokens behind
   * each image token, depend on the picture); null when maps cannot be propagated through the tower.
   */
  towerGeometry(layout: ImageLayout): TowerGeometry | null;
  /**
   * The processor's background colour, `int(mean · 255)` per channel: what the "pad" mode fills with and what
   * a deleted image patch is painted with (src/interpret/faithfulness/perturb.ts), so "no picture here" reads
   * as ≈ 0 after normalisation for every family.
   */
  readonly padColor: readonly [number, number, number];

  /** The processor: pixel values, the image the model saw, and the token layout (boxes in original pixels). */
  preprocess(image: RgbImage, mode: ImageMode): PreparedImage;
  /** Vision tower → feature selection → projector/merger. */
  encodeImage(kernels: Kernels, pixels: PixelValues, opts?: ImageEncodeOptions): Promise<ImageEncoding>;
  /** Text embeddings with the image features written over the image-token positions, in order. */
  buildInputsEmbeds(inputIds: number[], image: ImageEncoding): Float32Array;
  /** Sequence positions of the image tokens, in order. */
  imagePositions(inputIds: number[]): number[];
  /**
   * Position ids [axes, ids.length − from] of rows from … ids.length−1 of a sequence (prompt, then any
   * generated tokens) whose image has `layout`.
   */
  positionIds(ids: number[], layout: ImageLayout, from?: number): PositionIds;
  /** Backward of `buildInputsEmbeds`: the gradient rows at the image positions (dEmbeds holds rows from …). */
  imageFeaturesGrad(inputIds: number[], dEmbeds: Float32Array, from?: number): Float32Array;
  /** From the gradient at the image features back through the projector and the tower (needs a tape). */
  imageBackward(
    kernels: Kernels,
    image: ImageEncoding,
    dFeatures: Float32Array,
    opts?: ImageBackwardOptions,
  ): Promise<ImageBackwardResult>;

  /** Training: the tower's features before the projector, and their backward (needs `tape`). */
  encodeTowerFeatures(
    kernels: Kernels,
    pixels: PixelValues,
    opts?: ImageEncodeOptions,
  ): Promise<TowerFeatures>;
  towerFeaturesBackward(
    kernels: Kernels,
    features: TowerFeatures,
    dFeatures: Float32Array,
    opts?: ImageBackwardOptions,
  ): Promise<ImageBackwardResult>;
  /** Training: every weight loaded so far, by canonical name (F32 checkpoints only). */
  parameters(): { name: string; shape: number[]; data: Float32Array }[];
  /** Training: the on-disk tensor name of a canonical parameter name. */
  diskName(canonical: string): string;

  close(): void;
}
