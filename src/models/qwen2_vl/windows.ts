/**
 * Qwen2.5-VL's attention windows (`get_window_index`): the merged grid (h/m × w/m cells per frame) is cut into
 * vw × vw-cell windows, enumerated row-major (the grid padded at the bottom/right up to whole windows; empty
 * windows vanish), cells row-major inside a window. Hugging Face permutes the patches into that order; here
 * each patch instead carries its window's number, an attention mask with the same result.
 */
import type { GridThw } from "./processor.js";

export interface WindowIndex {
  /** Merged-cell ids (row-major over the merged grid, frames in turn) in window order. */
  windowIndex: number[];
  /** Cumulative patch counts at window boundaries (in window order), empty windows dropped. */
  cuWindowSeqlens: number[];
  /** Window number of each merged cell (row-major). */
  windowOfCell: number[];
}

export function windowIndex(grid: GridThw, merge: number, cellsPerWindow: number): WindowIndex {
  const [t, gh, gw] = grid;
  const lh = gh / merge;
  const lw = gw / merge;
  const vw = Math.floor(cellsPerWindow);
  if (vw < 1) throw new RangeError(`attention window of ${cellsPerWindow} merged cells`);
  // Hugging Face pads by vw − lh % vw (a whole empty window row when divisible); empty windows are skipped.
  const nwh = Math.floor((lh + vw - (lh % vw)) / vw);
  const nww = Math.floor((lw + vw - (lw % vw)) / vw);
  const windowIndexOut: number[] = [];
  const cu = [0];
  const windowOfCell = new Array<number>(t * lh * lw).fill(-1);
  let win = 0;
  for (let f = 0; f < t; f++) {
    for (let wr = 0; wr < nwh; wr++) {
      for (let wc = 0; wc < nww; wc++) {
        let size = 0;
        for (let r = wr * vw; r < Math.min(lh, (wr + 1) * vw); r++) {
          for (let c = wc * vw; c < Math.min(lw, (wc + 1) * vw); c++) {
            const cell = f * lh * lw + r * lw + c;
            windowIndexOut.push(cell);
            windowOfCell[cell] = win;
            size++;
          }
        }
        if (size > 0) {
          cu.push(cu[cu.length - 1] + size * merge * merge);
          win++;
        }
      }
    }
  }
  return { windowIndex: windowIndexOut, cuWindowSeqlens: cu, windowOfCell };
}

/** argsort of a permutation: position of each value. */
export function inversePermutation(p: readonly number[]): number[] {
  const inv = new Array<number>(p.length);
  p.forEach((v, i) => {
    inv[v] = i;
  });
  return inv;
}

/** Window number of each pixel_values row (m² consecutive rows per merged cell). */
export function patchWindows(grid: GridThw, merge: number, cellsPerWindow: number): Int32Array {
  const { windowOfCell } = windowIndex(grid, merge, cellsPerWindow);
  const mm = merge * merge;
  const out = new Int32Array(windowOfCell.length * mm);
  for (let r = 0; r < out.length; r++) out[r] = windowOfCell[Math.floor(r / mm)];
  return out;
}
