/**
 * Rotary position embedding as Hugging Face applies it to llama-family models: frequencies in float32,
 * rotate_half on the first/second halves of each head (not interleaved pairs). Positions come as explicit ids
 * [axes, n]; multi-axis RoPE (Qwen2-VL's M-RoPE) is the same rotation with each frequency reading its axis.
 */
import type { RopeScaling } from "../hf/config.js";
import type { PositionIds } from "./positions.js";

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

/**
 * Which position-id axis drives each rotary frequency: all axis 0 for plain RoPE; for M-RoPE (Qwen2-VL) the
 * frequencies are split into consecutive sections (`mrope_section`, summing to headDim/2) taken from axes
 * 0, 1, 2, … in turn.
 */
export function ropeFrequencyAxes(headDim: number, section: readonly number[] | null = null): Uint8Array {
  const half = headDim / 2;
  const axes = new Uint8Array(half);
  if (!section) return axes;
  const total = section.reduce((a, b) => a + b, 0);
  if (total !== half)
    throw new RangeError(`mrope_section [${section.join(", ")}] sums to ${total}, not headDim/2 = ${half}`);
  let i = 0;
  section.forEach((len, a) => {
    axes.fill(a, i, i + len);
    i += len;
  });
  return axes;
}

/**
 * cos and sin of every row's rotary angles, [rows, headDim/2] each: the angle of frequency i in row r is
 * positions[axis(i), r] · invFreq[i], rounded to float32 as HF computes it (and so are cos and sin).
 */
export function ropeTables(
  positions: PositionIds,
  headDim: number,
  invFreq: Float32Array,
  freqAxes: Uint8Array | null,
): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const axisOf = freqAxes ?? new Uint8Array(half);
  for (let i = 0; i < half; i++)
    if (axisOf[i] >= positions.axes)
      throw new RangeError(`rotary frequency ${i} reads position axis ${axisOf[i]} of ${positions.axes}`);
  const { data, n } = positions;
  const cos = new Float32Array(n * half);
  const sin = new Float32Array(n * half);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < half; i++) {
      const angle = f(data[axisOf[i] * n + r] * invFreq[i]);
      cos[r * half + i] = f(Math.cos(angle));
      sin[r * half + i] = f(Math.sin(angle));
    }
  }
  return { cos, sin };
}

/** Rotate each head's halves by sign·angle in place ([rows, heads, headDim] layout). */
function rotate(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  positions: PositionIds,
  invFreq: Float32Array,
  freqAxes: Uint8Array | null,
  sign: 1 | -1,
): void {
  const half = headDim / 2;
  if (positions.n !== rows) throw new RangeError(`${positions.n} position ids for ${rows} rows`);
  const { cos, sin } = ropeTables(positions, headDim, invFreq, freqAxes);
  for (let r = 0; r < rows; r++) {
    const t = r * half;
    for (let h = 0; h < heads; h++) {
      const o = (r * heads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const a = x[o + i];
        const b = x[o + half + i];
        const c = cos[t + i];
        const s = sign * sin[t + i];
        x[o + i] = f(a * c) - f(b * s);
        x[o + half + i] = f(b * c) + f(a * s);
      }
    }
  }
}

/**
 * Rotate `rows` vectors laid out as [rows, heads, headDim]; row r sits at position ids column r. `freqAxes`
 * (from `ropeFrequencyAxes`) selects the axis per frequency; null = axis 0 (plain RoPE).
 */
export function applyRope(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  positions: PositionIds,
  invFreq: Float32Array,
  freqAxes: Uint8Array | null = null,
): void {
  rotate(x, rows, heads, headDim, positions, invFreq, freqAxes, 1);
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
  positions: PositionIds,
  invFreq: Float32Array,
  freqAxes: Uint8Array | null = null,
): void {
  rotate(dx, rows, heads, headDim, positions, invFreq, freqAxes, -1);
}
