/** Colormaps from d3-scale-chromatic, sampled into 256-entry lookup tables for canvas drawing. */
import {
  interpolateCividis,
  interpolateInferno,
  interpolateMagma,
  interpolatePlasma,
  interpolateRdBu,
  interpolateTurbo,
  interpolateViridis,
} from "d3-scale-chromatic";

export const COLORMAPS: Record<string, (t: number) => string> = {
  turbo: interpolateTurbo,
  viridis: interpolateViridis,
  inferno: interpolateInferno,
  magma: interpolateMagma,
  plasma: interpolatePlasma,
  cividis: interpolateCividis,
  coolwarm: (t) => interpolateRdBu(1 - t),
};

export type ColormapName = keyof typeof COLORMAPS;

/** "#rrggbb" or "rgb(r, g, b)" → [r, g, b]. */
export function parseColor(c: string): [number, number, number] {
  if (c.startsWith("#")) {
    const n = Number.parseInt(c.slice(1, 7), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  const m = c.match(/\d+(\.\d+)?/g);
  if (!m || m.length < 3) return [0, 0, 0];
  return [Number(m[0]), Number(m[1]), Number(m[2])];
}

const luts = new Map<string, Uint8ClampedArray>();

/** 256 × RGB lookup table of a colormap. */
export function lut(name: string): Uint8ClampedArray {
  let t = luts.get(name);
  if (t) return t;
  const f = COLORMAPS[name] ?? COLORMAPS.turbo;
  t = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) t.set(parseColor(f(i / 255)), i * 3);
  luts.set(name, t);
  return t;
}

/** CSS colour of value v in [lo, hi]. */
export function cssColor(name: string, v: number, lo = 0, hi = 1): string {
  const t = lut(name);
  const i = Math.round(255 * Math.min(1, Math.max(0, hi > lo ? (v - lo) / (hi - lo) : 0.5))) * 3;
  return `rgb(${t[i]}, ${t[i + 1]}, ${t[i + 2]})`;
}

/** Black or white, whichever reads better on the colour of v. */
export function textOn(name: string, v: number, lo = 0, hi = 1): string {
  const t = lut(name);
  const i = Math.round(255 * Math.min(1, Math.max(0, hi > lo ? (v - lo) / (hi - lo) : 0.5))) * 3;
  return 0.299 * t[i] + 0.587 * t[i + 1] + 0.114 * t[i + 2] > 140 ? "#111" : "#fff";
}
