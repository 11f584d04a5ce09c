/**
 * Element-wise and row-wise float32 ops in plain TypeScript (norms, activations, softmax, RoPE). Matmul-class
 * work lives in kernels/. Rows are contiguous: x is [rows, dim] flattened.
 */

/** Rounds through float32, as each PyTorch f32 op does. */
const f = Math.fround;

/** LayerNorm over the last dim (PyTorch semantics: biased variance, eps inside the sqrt). */
export function layerNorm(
  x: Float32Array,
  rows: number,
  dim: number,
  w: Float32Array,
  b: Float32Array,
  eps: number,
): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[o + i];
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) {
      const d = x[o + i] - mean;
      v += d * d;
    }
    const inv = 1 / Math.sqrt(v / dim + eps);
    for (let i = 0; i < dim; i++) out[o + i] = (x[o + i] - mean) * inv * w[i] + b[i];
  }
  return out;
}

/**
 * RMSNorm. Llama/Mistral/Qwen2: w · x/rms(x); Gemma: (1 + w) · x/rms(x) (`unitOffset`).
 */
export function rmsNorm(
  x: Float32Array,
  rows: number,
  dim: number,
  w: Float32Array,
  eps: number,
  unitOffset: boolean,
): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = f(1 / Math.sqrt(f(f(ss / dim) + eps)));
    for (let i = 0; i < dim; i++) {
      const n = f(x[o + i] * inv);
      out[o + i] = unitOffset ? n * f(1 + w[i]) : w[i] * n;
    }
  }
  return out;
}

/** erf to double precision: Maclaurin series near 0, 1 − erfc in the tails (the one erf of the project). */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
    let term = ax;
    let sum = ax;
    const x2 = ax * ax;
    for (let n = 1; n < 100; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  const c = erfc(ax);
  return x < 0 ? c - 1 : 1 - c;
}

/** Complementary error function, relative accuracy ~1e-14 over the whole real line. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  if (x < 0) return 2 - erfc(-x);
  if (x < 2.5) {
    // erf by its Maclaurin series: 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1)).
    const x2 = x * x;
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  if (x > 27) return 0;
  // Continued fraction erfc(x) = e^{−x²}/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …)))), modified Lentz.
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let n = 1; n < 500; n++) {
    const an = n / 2;
    d = x + an * d;
    d = Math.abs(d) < tiny ? tiny : d;
    c = x + an / c;
    c = Math.abs(c) < tiny ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / Math.sqrt(Math.PI) / f;
}

/**
 * Softmax cross-entropy of one row of logits against `target` (the one loss helper of training): the loss
 * −log softmax(z)[target], the argmax (the first of ties), and the gradient w.r.t. z, softmax(z) − one-hot,
 * as `grad(i)`.
 */
export function crossEntropy(
  z: ArrayLike<number>,
  target: number,
): { loss: number; argmax: number; grad: (i: number) => number } {
  let m = Number.NEGATIVE_INFINITY;
  let argmax = 0;
  for (let i = 0; i < z.length; i++) {
    if (z[i] > m) {
      m = z[i];
      argmax = i;
    }
  }
  let sum = 0;
  for (let i = 0; i < z.length; i++) sum += Math.exp(z[i] - m);
  return {
    loss: -(z[target] - m - Math.log(sum)),
    argmax,
    grad: (i) => Math.exp(z[i] - m) / sum - (i === target ? 1 : 0),
  };
}

export type Activation =
  | "gelu"
  | "gelu_pytorch_tanh"
  | "gelu_new"
  | "quick_gelu"
  | "silu"
  | "relu"
  | "gelu_fast";

export const SUPPORTED_ACTIVATIONS: readonly string[] = [
  "gelu",
  "gelu_pytorch_tanh",
  "gelu_new",
  "gelu_fast",
  "quick_gelu",
  "silu",
  "swish",
  "relu",
];

export function activationFn(name: string): (x: number) => number {
  switch (name) {
    case "gelu":
      return (x) => 0.5 * x * (1 + erf(x / Math.SQRT2));
    case "gelu_pytorch_tanh":
    case "gelu_new":
    case "gelu_fast":
      return (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case "quick_gelu":
      return quickGelu;
    case "silu":
    case "swish":
      return silu;
    case "relu":
      return (x) => Math.max(x, 0);
    default:
      throw new Error(`unsupported activation "${name}" (supported: ${SUPPORTED_ACTIVATIONS.join(", ")})`);
  }
}

/**
 * Shared instances of the hot activations (silu: the llama family's gated MLP; quick_gelu: CLIP's MLP), so the
 * loops below recognise them and run them inline: a call through the closure costs more than the exp.
 */
const silu = (x: number) => x / (1 + Math.exp(-x));
const quickGelu = (x: number) => x / (1 + Math.exp(-1.702 * x));
const quickGeluGrad = (x: number) => {
  const s = 1 / (1 + Math.exp(-1.702 * x));
  return s + 1.702 * x * s * (1 - s);
};

export function applyActivation(x: Float32Array, act: (x: number) => number): Float32Array {
  const out = new Float32Array(x.length);
  if (act === quickGelu) {
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      out[i] = v / (1 + Math.exp(-1.702 * v));
    }
    return out;
  }
  for (let i = 0; i < x.length; i++) out[i] = act(x[i]);
  return out;
}

/** Gated MLP's inner product act(gate) ⊙ up. */
export function gatedActivation(
  gate: Float32Array,
  up: Float32Array,
  act: (x: number) => number,
): Float32Array {
  const out = new Float32Array(gate.length);
  if (act === silu) {
    // Inline: a call through the closure costs more than the exp itself here.
    for (let i = 0; i < gate.length; i++) {
      const g = gate[i];
      out[i] = f(g / (1 + Math.exp(-g))) * up[i];
    }
    return out;
  }
  for (let i = 0; i < gate.length; i++) out[i] = f(act(gate[i])) * up[i];
  return out;
}

export function addInPlace(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

export function scaleInPlace(a: Float32Array, s: number): void {
  for (let i = 0; i < a.length; i++) a[i] *= s;
}

/**
 * In-place softmax of each row of [rows, n] over its first `valid(r)` entries; the rest are set to exactly 0
 * (masked positions of a causal mask).
 */
export function softmaxRows(
  x: Float32Array,
  rows: number,
  n: number,
  validFrom: (r: number) => number,
  validTo: (r: number) => number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    const a = validFrom(r);
    const b = validTo(r);
    let m = Number.NEGATIVE_INFINITY;
    for (let j = a; j < b; j++) if (x[o + j] > m) m = x[o + j];
    let s = 0;
    for (let j = a; j < b; j++) {
      const e = Math.exp(x[o + j] - m);
      x[o + j] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let j = 0; j < a; j++) x[o + j] = 0;
    for (let j = a; j < b; j++) x[o + j] *= inv;
    for (let j = b; j < n; j++) x[o + j] = 0;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Backward passes (gradient of a scalar with respect to the op's input, given the gradient at its output).
// Accumulation is in float64 (JS numbers); results are stored as float32 like every activation.
// ---------------------------------------------------------------------------------------------------------

/**
 * LayerNorm backward w.r.t. the input: with x̂ = (x − μ)·inv and g = dy ⊙ w,
 * dx = inv · (g − mean(g) − x̂ · mean(g ⊙ x̂)).
 */
export function layerNormBackward(
  x: Float32Array,
  dy: Float32Array,
  rows: number,
  dim: number,
  w: Float32Array,
  eps: number,
): Float32Array {
  const dx = new Float32Array(x.length);
  const xhat = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[o + i];
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) {
      const d = x[o + i] - mean;
      v += d * d;
    }
    const inv = 1 / Math.sqrt(v / dim + eps);
    let sg = 0;
    let sgx = 0;
    for (let i = 0; i < dim; i++) {
      xhat[i] = (x[o + i] - mean) * inv;
      const g = dy[o + i] * w[i];
      sg += g;
      sgx += g * xhat[i];
    }
    sg /= dim;
    sgx /= dim;
    for (let i = 0; i < dim; i++) dx[o + i] = inv * (dy[o + i] * w[i] - sg - xhat[i] * sgx);
  }
  return dx;
}

/**
 * RMSNorm backward w.r.t. the input: with inv = (mean(x²) + eps)^−½ and g = dy ⊙ w' (w' = w, or 1 + w for
 * Gemma), dx = inv · g − inv³ · x · mean(g ⊙ x).
 */
export function rmsNormBackward(
  x: Float32Array,
  dy: Float32Array,
  rows: number,
  dim: number,
  w: Float32Array,
  eps: number,
  unitOffset: boolean,
): Float32Array {
  const dx = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    let sgx = 0;
    for (let i = 0; i < dim; i++) sgx += dy[o + i] * (unitOffset ? 1 + w[i] : w[i]) * x[o + i];
    const c = (inv * inv * inv * sgx) / dim;
    for (let i = 0; i < dim; i++) dx[o + i] = inv * dy[o + i] * (unitOffset ? 1 + w[i] : w[i]) - c * x[o + i];
  }
  return dx;
}

/** LayerNorm parameter gradients (training): dW += Σ_rows dy ⊙ x̂, dB += Σ_rows dy. */
export function layerNormParamGrad(
  x: Float32Array,
  dy: Float32Array,
  rows: number,
  dim: number,
  eps: number,
  dW: Float32Array,
  dB: Float32Array,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[o + i];
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[o + i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / dim + eps);
    for (let i = 0; i < dim; i++) {
      dW[i] += dy[o + i] * (x[o + i] - mean) * inv;
      dB[i] += dy[o + i];
    }
  }
}

/** RMSNorm weight gradient (training): dW += Σ_rows dy ⊙ x/rms(x) (the same for w and Gemma's 1 + w). */
export function rmsNormWeightGrad(
  x: Float32Array,
  dy: Float32Array,
  rows: number,
  dim: number,
  eps: number,
  dW: Float32Array,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) dW[i] += dy[o + i] * x[o + i] * inv;
  }
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** Derivative of `activationFn(name)`. */
export function activationGradFn(name: string): (x: number) => number {
  switch (name) {
    case "gelu":
      // d/dx ½x(1 + erf(x/√2)) = Φ(x) + x·φ(x)
      return (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + x * INV_SQRT_2PI * Math.exp(-0.5 * x * x);
    case "gelu_pytorch_tanh":
    case "gelu_new":
    case "gelu_fast":
      return (x) => {
        const th = Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
      };
    case "quick_gelu":
      return quickGeluGrad;
    case "silu":
    case "swish":
      return (x) => {
        const s = 1 / (1 + Math.exp(-x));
        return s + x * s * (1 - s);
      };
    case "relu":
      return (x) => (x > 0 ? 1 : 0);
    default:
      throw new Error(`unsupported activation "${name}" (supported: ${SUPPORTED_ACTIVATIONS.join(", ")})`);
  }
}

/** Backward of `applyActivation`: dx = dy ⊙ act'(x) (x = the pre-activation input). */
export function activationBackward(
  x: Float32Array,
  dy: Float32Array,
  grad: (x: number) => number,
): Float32Array {
  const dx = new Float32Array(x.length);
  if (grad === quickGeluGrad) {
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      const s = 1 / (1 + Math.exp(-1.702 * v));
      dx[i] = dy[i] * (s + 1.702 * v * s * (1 - s));
    }
    return dx;
  }
  for (let i = 0; i < x.length; i++) dx[i] = dy[i] * grad(x[i]);
  return dx;
}

/**
 * Backward of `gatedActivation` (m = act(gate) ⊙ up): dgate = dm ⊙ up ⊙ act'(gate), dup = dm ⊙ act(gate). Also
 * returns the forward product m itself (bit-identical to `gatedActivation`), which the down projection's weight
 * gradient needs, since act(gate) is at hand here.
 */
export function gatedActivationBackward(
  gate: Float32Array,
  up: Float32Array,
  dm: Float32Array,
  act: (x: number) => number,
  grad: (x: number) => number,
): { dGate: Float32Array; dUp: Float32Array; product: Float32Array } {
  const dGate = new Float32Array(gate.length);
  const dUp = new Float32Array(gate.length);
  const product = new Float32Array(gate.length);
  if (act === silu) {
    // One exp for both: silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))); same arithmetic as the closures.
    for (let i = 0; i < gate.length; i++) {
      const g = gate[i];
      const d = 1 + Math.exp(-g);
      const s = 1 / d;
      const a = g / d;
      dGate[i] = dm[i] * up[i] * (s + g * s * (1 - s));
      dUp[i] = dm[i] * a;
      product[i] = f(a) * up[i];
    }
    return { dGate, dUp, product };
  }
  for (let i = 0; i < gate.length; i++) {
    const a = act(gate[i]);
    dGate[i] = dm[i] * up[i] * grad(gate[i]);
    dUp[i] = dm[i] * a;
    product[i] = f(a) * up[i];
  }
  return { dGate, dUp, product };
}

/**
 * Backward of a row softmax, given its output p and the gradient dp at the output:
 * ds = p ⊙ (dp − Σⱼ pⱼ dpⱼ). Masked entries (p = 0) get 0. Rows are [rows, n].
 */
export function softmaxRowsBackward(
  p: Float32Array,
  dp: Float32Array,
  rows: number,
  n: number,
): Float32Array {
  const ds = new Float32Array(p.length);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let dot = 0;
    for (let j = 0; j < n; j++) dot += p[o + j] * dp[o + j];
    for (let j = 0; j < n; j++) ds[o + j] = p[o + j] * (dp[o + j] - dot);
  }
  return ds;
}
