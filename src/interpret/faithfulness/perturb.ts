/**
 * "Deleting" an image patch, defined once for every family and every caller (the faithfulness check and
 * `bench:grounding`): the pixels of the original picture under the image token's box (image_token_boxes, in
 * original-picture pixels) are painted with the processor's background colour (`model.padColor`,
 * `int(mean · 255)`, which normalises to ≈ 0, the dataset mean), and the picture goes through the model's own
 * processor again. A pixel belongs to a box when its centre lies inside it. Image tokens without a box
 * (LLaVA-NeXT's row separators) have no pixels and cannot be deleted.
 */
import type { RgbImage } from "../../hf/image-decode.js";

/** Image tokens with a place in the picture (a finite box): the ones a curve deletes. */
export function locatedTokens(boxes: Float32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < boxes.length / 4; i++) if (Number.isFinite(boxes[4 * i])) out.push(i);
  return out;
}

/** A copy of `picture` with the boxes of `tokens` painted `color`. */
export function paintImageTokens(
  picture: RgbImage,
  boxes: Float32Array,
  tokens: Iterable<number>,
  color: readonly [number, number, number],
): RgbImage {
  const { width: W, height: H } = picture;
  const data = picture.data.slice();
  for (const i of tokens) {
    const [x0, y0, x1, y1] = boxes.subarray(4 * i, 4 * i + 4);
    if (!Number.isFinite(x0)) continue;
    // Pixel x covers [x, x + 1): inside when x + ½ ∈ [x0, x1).
    const cx0 = Math.max(0, Math.ceil(x0 - 0.5));
    const cx1 = Math.min(W, Math.ceil(x1 - 0.5));
    const cy0 = Math.max(0, Math.ceil(y0 - 0.5));
    const cy1 = Math.min(H, Math.ceil(y1 - 0.5));
    for (let y = cy0; y < cy1; y++)
      for (let x = cx0; x < cx1; x++) {
        const o = (y * W + x) * 3;
        data[o] = color[0];
        data[o + 1] = color[1];
        data[o + 2] = color[2];
      }
  }
  return { width: W, height: H, data };
}
