/** The relevancy request and result types, the modes and kinds (contracts/lists.ts), and the request error. */
import {
  RELEVANCY_MODES,
  type RelevancyMode,
  VISION_RELEVANCY_KINDS,
  type VisionRelevancyKind,
} from "../../contracts/lists.js";
import type { ImageLayout } from "../../models/image-layout.js";
import type { PixelValues, TowerSource } from "../../models/types.js";

// The relevancy modes and vision-side kinds are listed once, in contracts/lists.ts.
export { RELEVANCY_MODES, type RelevancyMode, VISION_RELEVANCY_KINDS, type VisionRelevancyKind };
export type VitGradients = "fresh" | "accumulated";

export class RelevancyError extends Error {}

/**
 * 64 MiB per tape (the LLM's, each tower pass's): small models keep theirs in memory; a 7B-sized one (~4 GB
 * of LLM tape and 1.1 GB of tower tape at full depth, next to 13 GiB of bf16 weights) writes nearly all of it
 * out, which measured no slower than keeping it (docs/performance.md).
 */
export const TAPE_MEMORY_BYTES = 2 ** 26;

export interface RelevancyInputs {
  /** Expanded prompt ids (length T). */
  inputIds: number[];
  /** Generated ids (length G). Token t is predicted by position T + t − 1. */
  generatedIds: number[];
  /** pixel_values as the processor returned them. */
  pixels: PixelValues;
  /** The image's token layout (the run's `image_layout`): position ids may depend on it. */
  layout: ImageLayout;
}

export interface RelevancyOptions {
  mode: RelevancyMode;
  vision?: VisionRelevancyKind[];
  /** Generated-token indices to compute (default: all). */
  tokens?: number[];
  /** ViT gradients for vit/all/all_v2 (default: fresh for exact, accumulated for incremental — the tool's). */
  vitGradients?: VitGradients;
  /** Also return full matrices (R, CAMs, ViT maps): for tests and debugging, costs O(n³). */
  keepMatrices?: boolean;
  /**
   * Bytes of each backward tape (the LLM's, each tower pass's) kept in memory; later layers wait in an
   * unlinked temporary file under TMPDIR (default `TAPE_MEMORY_BYTES`; Infinity keeps them in memory).
   */
  tapeMemoryBytes?: number;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface TokenRelevancy {
  /** Generated-token index t. */
  token: number;
  /** Position p = T + t − 1 whose logits chose it. */
  position: number;
  /** Row p of the raw LLM map R (length p + 1). */
  llm: Float32Array;
  /** CLS rows of the raw ViT-propagated maps, one per tower pass (length passes · S_vit, pass-major). */
  vit?: Float32Array;
  all?: Float32Array;
  allV2?: Float32Array;
  /** Patch relevancy per pass (length passes · patches per pass, pass-major). */
  chain?: Float32Array;
  matrices?: {
    /** Raw LLM rollout (p+1)×(p+1) and its per-layer CAMs. */
    R: Float32Array;
    cams: Float32Array[];
    /**
     * ViT CAMs of the layers used (with the gradients of the vit kinds), and the S×S maps: each one S×S block
     * per tower pass, pass-major.
     */
    vitCams?: Float32Array[];
    vitR?: Float32Array;
    allR?: Float32Array;
    /** ViT rollout with fresh gradients (what `chain` uses). */
    chainVitR?: Float32Array;
  };
}

export interface RelevancyResult {
  mode: RelevancyMode;
  vitGradients: VitGradients;
  tokens: TokenRelevancy[];
  /** Sequence positions of the image tokens. */
  imagePositions: number[];
  /** ViT sequence length (with CLS when present; 0 without vision maps on a tower-less geometry). */
  vitSeqLen: number;
  /** Tower passes the vision rows hold (each `vitSeqLen` long; 0 without a tower). */
  vitPasses: number;
  /** The tower tokens behind each image token ([] for separators; all [] without a tower). */
  towerSources: TowerSource[][];
  hasCls: boolean;
  /** ViT layers whose CAMs enter the vit/all/all_v2 rollouts (and, fresh, the chain). */
  vitLayers: number[];
}
