/** The format-2 image description of a hand-made run: one contiguous square grid, its layout and tensors. */
import type { TensorToWrite } from "../src/hf/safetensors.js";
import { type ImageLayout, layoutBoxes } from "../src/models/image-layout.js";
import { IMAGE_BOXES_TENSOR, IMAGE_POSITIONS_TENSOR } from "../src/run/run-dir.js";

/** A rows × cols grid covering a side × side original, its tokens at start … start+rows·cols−1. */
export function gridImage(
  start: number,
  grid: [number, number],
  side = 14 * grid[1],
): { layout: ImageLayout; tensors: TensorToWrite[] } {
  const [rows, cols] = grid;
  const P = rows * cols;
  const layout: ImageLayout = {
    original_size: [side, side],
    token_count: P,
    segments: [
      {
        kind: "grid",
        name: "image",
        rows,
        cols,
        row_separator: false,
        frame: [0, 0, side, side],
        tower: { pass: 0, first_token: 1 },
      },
    ],
  };
  const positions = BigInt64Array.from({ length: P }, (_, i) => BigInt(start + i));
  return {
    layout,
    tensors: [
      { name: IMAGE_POSITIONS_TENSOR, dtype: "I64", shape: [P], data: positions },
      { name: IMAGE_BOXES_TENSOR, dtype: "F32", shape: [P, 4], data: layoutBoxes(layout) },
    ],
  };
}
