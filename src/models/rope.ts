/**
 * Rotary position embedding as Hugging Face applies it to llama-family models: frequencies in float32,
 * rotate_half on the first/second halves of each head (not interleaved pairs).
 */
import type { RopeScaling } from "../hf/config.js";

const f = Math.fround;

export function ropeInverseFrequencies(headDim: number, theta: number, scaling: RopeScaling): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(theta ** f((2 * i) / headDim)));
  if (scaling.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] = f(inv[i] / scaling.factor);
  } else if (scaling.type === "llama3") {
    // Llama 3.1 frequency-dependent scaling: long wavelengths divided by `factor`, short ones kept, a smooth
    // blend in between.
    const { factor } = scaling;
    const low = scaling.lowFreqFactor ?? 1;
    const high = scaling.highFreqFactor ?? 4;
    const oldCtx = scaling.originalMaxPositionEmbeddings ?? 8192;
    const lowWavelen = oldCtx / low;
    const highWavelen = oldCtx / high;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = f(inv[i] / factor);
      else if (wavelen >= highWavelen) {
        const smooth = (oldCtx / wavelen - low) / (high - low);
        inv[i] = f((1 - smooth) * (inv[i] / factor) + smooth * inv[i]);
      }
    }
  }
  return inv;
}

/** Rotate each head's halves by sign·angle(position) in place ([rows, heads, headDim] layout). */
function rotate(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  positions: ArrayLike<number>,
  invFreq: Float32Array,
  sign: 1 | -1,
): void {
  const half = headDim / 2;
  const cos = new Float32Array(half);
  const sin = new Float32Array(half);
  for (let r = 0; r < rows; r++) {
    const p = positions[r];
    for (let i = 0; i < half; i++) {
      const angle = f(p * invFreq[i]);
      cos[i] = f(Math.cos(angle));
      sin[i] = sign * f(Math.sin(angle));
    }
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const a = x[o + i];
        const b = x[o + half + i];
        x[o + i] = f(a * cos[i]) - f(b * sin[i]);
        x[o + half + i] = f(b * cos[i]) + f(a * sin[i]);
      }
    }
  }
}

/**
 * Rotate `rows` vectors laid out as [rows, heads, headDim]; row r sits at absolute position positions[r].
 */
export function applyRope(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  positions: ArrayLike<number>,
  invFreq: Float32Array,
): void {
  rotate(x, rows, heads, headDim, positions, invFreq, 1);
}

/**
 * Backward of `applyRope` (in place on the gradient dx, same layout): the rotation is orthogonal, so its
 * transpose is the rotation by −angle: da = dy₁·cos + dy₂·sin, db = dy₂·cos − dy₁·sin.
 */
export function applyRopeBackward(
  dx: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  positions: ArrayLike<number>,
  invFreq: Float32Array,
): void {
  rotate(dx, rows, heads, headDim, positions, invFreq, -1);
}
