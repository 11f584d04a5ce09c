/**
 * Reading "lvlm-trace/1" runs: the manifest is converted to format 2 on read, and the two image-layout
 * tensors format 1 lacks are derived. Format 1 knew one contiguous, square, row-major span of patches on the
 * processor's square; its geometry in the original picture follows from the processor kind, the image mode,
 * the original size and the square's side (CLIP: shortest edge resized to the crop size, centre crop; SigLIP:
 * resized to the square) — the processors of every llava-hf LLaVA-1.5 checkpoint. The patch side is
 * ⌊side / grid⌋ (the tower's stride-p convolution ignores a remainder).
 */
import { type ImageMode, processedToOriginal } from "../hf/image-processor.js";
import type { ImageLayout } from "../models/image-layout.js";
import { RUN_FORMAT, type RunManifest, type RunManifestV1 } from "./manifest.js";

/** The sizes a format-1 run's geometry needs: the original picture and the square the model saw. */
export interface V1Sizes {
  /** [width, height] of the original image (null: unknown; the square then stands for it). */
  original: [number, number] | null;
  /** Side of image_file, the processed square. */
  side: number;
}

export function layoutFromV1(m: RunManifestV1, sizes: V1Sizes): ImageLayout {
  const [rows, cols] = m.model.patch_grid;
  const S = sizes.side;
  const [W, H] = sizes.original ?? [S, S];
  const clip = m.model.vision_model_type === "clip_vision_model";
  const A = processedToOriginal(
    W,
    H,
    {
      doResize: true,
      shortestEdge: clip ? S : null,
      resizeTo: clip ? null : { height: S, width: S },
      doCenterCrop: clip,
      cropSize: { height: S, width: S },
      towerImageSize: S,
    },
    m.settings.image_mode as ImageMode,
  );
  const p = Math.floor(S / cols);
  const cls = m.model.has_cls ? 1 : 0;
  return {
    original_size: [W, H],
    token_count: m.image_token_count,
    segments: [
      {
        kind: "grid",
        name: "image",
        rows,
        cols,
        row_separator: false,
        frame: [A.ox, A.oy, cols * p * A.sx + A.ox, rows * p * A.sy + A.oy],
        tower: { pass: 0, first_token: cls },
      },
    ],
  };
}

export function manifestFromV1(m: RunManifestV1, sizes: V1Sizes): RunManifest {
  const { patch_grid: _grid, ...model } = m.model;
  const { image_token_start: _start, image_token_count: _count, format: _format, ...rest } = m;
  return {
    ...rest,
    format: RUN_FORMAT,
    model: { ...model, model_type: "llava", position_axes: 1 },
    image_layout: layoutFromV1(m, sizes),
  };
}

/** Format 1's image positions: the one contiguous span. */
export function positionsFromV1(m: RunManifestV1): number[] {
  return Array.from({ length: m.image_token_count }, (_, i) => m.image_token_start + i);
}
