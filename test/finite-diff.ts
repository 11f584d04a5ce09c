/**
 * Finite-difference helpers of the gradient checks (test/grad-check.test.ts, test/qwen2-vl-grad.test.ts):
 * Richardson-extrapolated central differences at float32 coordinates and at attention probabilities (through
 * a probs hook), and the comparison with its tolerance (see grad-check.test.ts for the precision argument).
 */
import assert from "node:assert/strict";
import { normals } from "./tiny-model.js";

const f = Math.fround;

/** Richardson-extrapolated central difference of g at the float32 coordinate x[i]. */
export function fdAt(x: Float32Array, i: number, h: number, g: () => number): number {
  const x0 = x[i];
  const d = (step: number) => {
    x[i] = f(x0 + step);
    const up = x[i] - x0;
    const fp = g();
    x[i] = f(x0 - step);
    const dn = x[i] - x0;
    const fm = g();
    x[i] = x0;
    return (fp - fm) / (up - dn);
  };
  return (4 * d(h / 2) - d(h)) / 3;
}

export async function fdAtAsync(
  x: Float32Array,
  i: number,
  h: number,
  g: () => Promise<number>,
): Promise<number> {
  const x0 = x[i];
  const d = async (step: number) => {
    x[i] = f(x0 + step);
    const up = x[i] - x0;
    const fp = await g();
    x[i] = f(x0 - step);
    const dn = x[i] - x0;
    const fm = await g();
    x[i] = x0;
    return (fp - fm) / (up - dn);
  };
  return (4 * (await d(h / 2)) - (await d(h))) / 3;
}

export function rand(n: number, seed: number, scale = 1, offset = 0): Float32Array {
  const r = normals(seed);
  return Float32Array.from({ length: n }, () => offset + scale * r());
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Indices to check: the k largest |g| plus k spread over the array. */
export function pickIndices(g: ArrayLike<number>, k: number, mask?: (i: number) => boolean): number[] {
  const all = Array.from({ length: g.length }, (_, i) => i).filter((i) => !mask || mask(i));
  const top = [...all].sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, k);
  const spread = Array.from({ length: k }, (_, j) => all[Math.floor(((j + 0.5) * all.length) / k)]);
  return [...new Set([...top, ...spread])];
}

export interface Check {
  worst: number;
  scale: number;
}

export function compare(
  label: string,
  analytic: ArrayLike<number>,
  idx: number[],
  fd: number[],
  rtol = 2e-3,
  atol = 2e-4,
): Check {
  const scale = Math.max(...idx.map((i) => Math.abs(analytic[i])));
  assert.ok(scale > 1e-3, `${label}: analytic gradient is (nearly) zero at every checked entry (${scale})`);
  let worst = 0;
  idx.forEach((i, j) => {
    const err = Math.abs(fd[j] - analytic[i]);
    worst = Math.max(worst, err);
    assert.ok(
      err <= rtol * scale + atol,
      `${label}[${i}]: analytic ${analytic[i]} vs finite difference ${fd[j]} (scale ${scale})`,
    );
  });
  if (process.env.LVLM_GRAD_VERBOSE)
    console.log(
      `${label}: ${idx.length} entries, max |Δ| ${worst.toExponential(2)}, scale ${scale.toExponential(2)}`,
    );
  return { worst, scale };
}

/** Richardson-extrapolated central difference w.r.t. one attention probability, perturbed through a probs hook. */
export async function fdProbs(
  value: (hook: (p: Float32Array, g: number) => void) => Promise<number>,
  group: number,
  local: number,
  h: number,
): Promise<number> {
  const d = async (step: number) => {
    let applied = 0;
    const hook = (s: number) => (p: Float32Array, g: number) => {
      if (g !== group) return;
      const p0 = p[local];
      p[local] = f(p0 + s);
      applied = p[local] - p0;
    };
    const fp = await value(hook(step));
    const up = applied;
    const fm = await value(hook(-step));
    return (fp - fm) / (up - applied);
  };
  return (4 * (await d(h / 2)) - (await d(h))) / 3;
}
