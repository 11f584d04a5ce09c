/**
 * Packing of one image's per-tile features into the rows that replace its image tokens (Hugging Face's
 * `pack_image_features`): the base tile's g² rows, then the tile grid as one feature map, unpadded back to the
 * picture's aspect ratio, (OneVision) bilinearly downsampled past `anyres_max_N`, each row closed by
 * `image_newline`.
 */
import type { TowerSource } from "../types.js";
import type { AnyresGrid, HW } from "./anyres.js";

/**
 * One axis of torch's bilinear resize (align_corners=False) to an output size: output index i reads input
 * i0 with weight 1 − l and i1 with weight l.
 */
export function bilinearAxis(nIn: number, nOut: number, i: number): { i0: number; i1: number; l: number } {
  const s = Math.max((i + 0.5) * (nIn / nOut) - 0.5, 0);
  const i0 = Math.floor(s);
  return { i0, i1: Math.min(i0 + 1, nIn - 1), l: s - i0 };
}

/**
 * Bilinear resize of a [h, w, D] map to [out.height, out.width, D] as torch's `F.interpolate(mode="bilinear",
 * align_corners=False)` with an output size: source = (i + 0.5)·in/out − 0.5, clamped at 0.
 */
export function bilinearResize(map: Float32Array, h: number, w: number, D: number, out: HW): Float32Array {
  const res = new Float32Array(out.height * out.width * D);
  const axis = bilinearAxis;
  for (let y = 0; y < out.height; y++) {
    const ay = axis(h, out.height, y);
    for (let x = 0; x < out.width; x++) {
      const ax = axis(w, out.width, x);
      const a00 = (ay.i0 * w + ax.i0) * D;
      const a01 = (ay.i0 * w + ax.i1) * D;
      const a10 = (ay.i1 * w + ax.i0) * D;
      const a11 = (ay.i1 * w + ax.i1) * D;
      const o = (y * out.width + x) * D;
      for (let d = 0; d < D; d++) {
        const top = (1 - ax.l) * map[a00 + d] + ax.l * map[a01 + d];
        const bot = (1 - ax.l) * map[a10 + d] + ax.l * map[a11 + d];
        res[o + d] = (1 - ay.l) * top + ay.l * bot;
      }
    }
  }
  return res;
}

/**
 * perTile: [1 + rows·cols, g², D] (base first, then the tiles row-major). Returns [g² + Hf·(Wf + 1), D].
 */
export function packFeatures(
  perTile: Float32Array,
  grid: AnyresGrid,
  g: number,
  D: number,
  newline: Float32Array,
): Float32Array {
  const gg = g * g;
  const { tileRows, tileCols, unpad } = grid;
  if (perTile.length !== (1 + tileRows * tileCols) * gg * D)
    throw new Error(
      `image features: ${perTile.length / (gg * D)} tiles of ${gg} rows, the layout needs ${1 + tileRows * tileCols}`,
    );
  // The kept window of the full map: M[R, C] = tile (R//g, C//g), patch (R%g, C%g).
  const hu = unpad.rows[1] - unpad.rows[0];
  const wu = unpad.cols[1] - unpad.cols[0];
  let map: Float32Array = new Float32Array(hu * wu * D);
  for (let r = 0; r < hu; r++) {
    const R = unpad.rows[0] + r;
    for (let c = 0; c < wu; c++) {
      const C = unpad.cols[0] + c;
      const t = 1 + Math.floor(R / g) * tileCols + Math.floor(C / g);
      const src = (t * gg + (R % g) * g + (C % g)) * D;
      map.set(perTile.subarray(src, src + D), (r * wu + c) * D);
    }
  }
  const { height: hf, width: wf } = grid.final;
  if (grid.downsampled) map = bilinearResize(map, hu, wu, D, grid.final);
  else if (hf !== hu || wf !== wu) throw new Error("image features: grid size mismatch");
  const out = new Float32Array((gg + hf * (wf + 1)) * D);
  out.set(perTile.subarray(0, gg * D), 0);
  let o = gg * D;
  for (let r = 0; r < hf; r++) {
    out.set(map.subarray(r * wf * D, (r + 1) * wf * D), o);
    o += wf * D;
    out.set(newline, o);
    o += D;
  }
  return out;
}

/** Adjoint of {@link bilinearResize}: spreads each output row's gradient onto its four sources. */
export function bilinearResizeBackward(
  dOut: Float32Array,
  h: number,
  w: number,
  D: number,
  out: HW,
): Float32Array {
  const dMap = new Float32Array(h * w * D);
  const axis = bilinearAxis;
  for (let y = 0; y < out.height; y++) {
    const ay = axis(h, out.height, y);
    for (let x = 0; x < out.width; x++) {
      const ax = axis(w, out.width, x);
      const o = (y * out.width + x) * D;
      const corners: [number, number][] = [
        [(ay.i0 * w + ax.i0) * D, (1 - ay.l) * (1 - ax.l)],
        [(ay.i0 * w + ax.i1) * D, (1 - ay.l) * ax.l],
        [(ay.i1 * w + ax.i0) * D, ay.l * (1 - ax.l)],
        [(ay.i1 * w + ax.i1) * D, ay.l * ax.l],
      ];
      for (const [a, k] of corners) for (let d = 0; d < D; d++) dMap[a + d] += k * dOut[o + d];
    }
  }
  return dMap;
}

/**
 * Backward of {@link packFeatures}: the gradient at the packed rows → the gradient at the per-tile rows (cells
 * the unpadding dropped get zero) and, summed over the rows, at `image_newline`.
 */
export function packFeaturesBackward(
  dPacked: Float32Array,
  grid: AnyresGrid,
  g: number,
  D: number,
): { dPerTile: Float32Array; dNewline: Float32Array } {
  const gg = g * g;
  const { tileRows, tileCols, unpad } = grid;
  const { height: hf, width: wf } = grid.final;
  const dPerTile = new Float32Array((1 + tileRows * tileCols) * gg * D);
  const dNewline = new Float32Array(D);
  dPerTile.set(dPacked.subarray(0, gg * D), 0);
  let dMap: Float32Array = new Float32Array(hf * wf * D);
  let o = gg * D;
  for (let r = 0; r < hf; r++) {
    dMap.set(dPacked.subarray(o, o + wf * D), r * wf * D);
    o += wf * D;
    for (let d = 0; d < D; d++) dNewline[d] += dPacked[o + d];
    o += D;
  }
  const hu = unpad.rows[1] - unpad.rows[0];
  const wu = unpad.cols[1] - unpad.cols[0];
  if (grid.downsampled) dMap = bilinearResizeBackward(dMap, hu, wu, D, grid.final);
  for (let r = 0; r < hu; r++) {
    const R = unpad.rows[0] + r;
    for (let c = 0; c < wu; c++) {
      const C = unpad.cols[0] + c;
      const t = 1 + Math.floor(R / g) * tileCols + Math.floor(C / g);
      const dst = (t * gg + (R % g) * g + (C % g)) * D;
      const src = (r * wu + c) * D;
      for (let d = 0; d < D; d++) dPerTile[dst + d] += dMap[src + d];
    }
  }
  return { dPerTile, dNewline };
}

/**
 * The tower tokens behind every packed row (the relevancy maps' `sourcesOf`): base row j is token
 * `firstToken + j` of pass 0; a grid row is the unpadded map's cell (R, C), i.e. token firstToken +
 * (R mod g)·g + (C mod g) of tile pass 1 + ⌊R/g⌋·cols + ⌊C/g⌋, or, downsampled, the bilinear blend of up to
 * four such cells with the resize's weights; a newline row has none. The same arithmetic as
 * {@link packFeatures}, so a map pushed through these weights is the packing's own linear map.
 */
export function packedTowerSources(grid: AnyresGrid, g: number, firstToken: number): TowerSource[][] {
  const gg = g * g;
  const { tileCols, unpad } = grid;
  const hu = unpad.rows[1] - unpad.rows[0];
  const wu = unpad.cols[1] - unpad.cols[0];
  const cell = (r: number, c: number, weight: number): TowerSource => {
    const R = unpad.rows[0] + r;
    const C = unpad.cols[0] + c;
    return {
      pass: 1 + Math.floor(R / g) * tileCols + Math.floor(C / g),
      token: firstToken + (R % g) * g + (C % g),
      weight,
    };
  };
  const out: TowerSource[][] = [];
  for (let j = 0; j < gg; j++) out.push([{ pass: 0, token: firstToken + j, weight: 1 }]);
  const { height: hf, width: wf } = grid.final;
  for (let y = 0; y < hf; y++) {
    for (let x = 0; x < wf; x++) {
      if (!grid.downsampled) {
        out.push([cell(y, x, 1)]);
        continue;
      }
      const ay = bilinearAxis(hu, hf, y);
      const ax = bilinearAxis(wu, wf, x);
      // Corners that coincide (at the map's edge) add up; corners of weight 0 are no source.
      const acc = new Map<string, TowerSource>();
      for (const [r, wr] of [
        [ay.i0, 1 - ay.l],
        [ay.i1, ay.l],
      ])
        for (const [c, wc] of [
          [ax.i0, 1 - ax.l],
          [ax.i1, ax.l],
        ]) {
          if (wr * wc === 0) continue;
          const key = `${r},${c}`;
          const prev = acc.get(key);
          if (prev) prev.weight += wr * wc;
          else acc.set(key, cell(r, c, wr * wc));
        }
      out.push([...acc.values()]);
    }
    out.push([]);
  }
  return out;
}
