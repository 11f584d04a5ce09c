/**
 * The LLaVA-1.5 processor's geometry computed from its definition, independently of src/: where patch
 * (row, col) of the crop the vision tower saw lies in the ORIGINAL picture. CLIPImageProcessor: resize so the
 * shortest edge is `shortest_edge` (long edge int(size · long / short)), centre crop `crop` × `crop`
 * (top = (H' − crop) // 2, left = (W' − crop) // 2), patches of `patch` pixels; pixels scale back by W/W', H/H'.
 */

export interface CropGeometry {
  resized: [number, number];
  left: number;
  top: number;
}

export function clipCropGeometry(W: number, H: number, shortest: number, crop: number): CropGeometry {
  const resized: [number, number] =
    W <= H ? [shortest, Math.trunc((shortest * H) / W)] : [Math.trunc((shortest * W) / H), shortest];
  return {
    resized,
    left: Math.floor((resized[0] - crop) / 2),
    top: Math.floor((resized[1] - crop) / 2),
  };
}

/** Boxes [x0, y0, x1, y1] of a grid × grid patch grid in original pixels, clipped to the picture. */
export function clipPatchBoxes(
  W: number,
  H: number,
  shortest: number,
  crop: number,
  patch: number,
  grid: number,
): number[][] {
  const { resized, left, top } = clipCropGeometry(W, H, shortest, crop);
  const sx = W / resized[0];
  const sy = H / resized[1];
  const clip = (v: number, hi: number) => Math.min(hi, Math.max(0, v));
  const out: number[][] = [];
  for (let r = 0; r < grid; r++)
    for (let c = 0; c < grid; c++)
      out.push([
        clip((left + c * patch) * sx, W),
        clip((top + r * patch) * sy, H),
        clip((left + (c + 1) * patch) * sx, W),
        clip((top + (r + 1) * patch) * sy, H),
      ]);
  return out;
}
