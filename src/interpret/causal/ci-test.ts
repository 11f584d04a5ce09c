/**
 * Conditional-independence tests for constraint-based structure learning.
 *
 * - {@link ParCorrTest}: partial correlation with Fisher's z, on a correlation matrix (for CLEANN: the
 *   correlation matrix of A·Aᵀ, A = one head's attention matrix). X ⟂ Y | Z is accepted when the two-sided
 *   p-value exceeds α. The sample size n (`num_samples`) sets the scale of the statistic:
 *   z = ½·ln((1+r)/(1−r)), p = 2·(1 − Φ(|z|·√(n − |Z| − 3))).
 * - {@link DSeparationOracle}: the perfect test for a known DAG (d-separation), used to check structure
 *   learning independently of any data.
 */
import { erfc } from "../../tensor/ops.js";

/** A conditional-independence test over integer node ids. */
export interface CITest {
  /** True when x and y are judged independent given z. */
  condIndep(x: number, y: number, z: readonly number[]): boolean;
}

// ---------------------------------------------------------------------------------------------------------
// Correlation matrices

/** A symmetric correlation matrix over a set of node ids (token positions). */
export class CorrelationMatrix {
  readonly index = new Map<number, number>();

  constructor(
    readonly nodes: readonly number[],
    /** Row-major nodes.length² values. */
    readonly values: Float64Array,
  ) {
    nodes.forEach((n, i) => {
      if (this.index.has(n)) throw new Error(`CorrelationMatrix: node ${n} listed twice`);
      this.index.set(n, i);
    });
    if (values.length !== nodes.length * nodes.length) throw new Error("CorrelationMatrix: size mismatch");
  }

  at(a: number, b: number): number {
    const n = this.nodes.length;
    return this.values[this.pos(a) * n + this.pos(b)];
  }

  pos(node: number): number {
    const i = this.index.get(node);
    if (i === undefined) throw new Error(`CorrelationMatrix: node ${node} is not in the matrix`);
    return i;
  }
}

/**
 * Correlation between rows of a square S×S matrix A (row-major), restricted to the given rows:
 * cov = A·Aᵀ, corr[i][j] = cov[i][j] / √(cov[i][i]·cov[j][j]). Accumulates in float64.
 */
export function rowCorrelation(
  a: ArrayLike<number>,
  cols: number,
  rows: readonly number[],
): CorrelationMatrix {
  const k = rows.length;
  const cov = new Float64Array(k * k);
  const row = (r: number) => {
    if (!Number.isInteger(r) || r < 0 || (r + 1) * cols > a.length)
      throw new RangeError(`rowCorrelation: row ${r} out of range`);
    const out = new Float64Array(cols);
    for (let c = 0; c < cols; c++) out[c] = a[r * cols + c];
    return out;
  };
  const data = rows.map(row);
  for (let i = 0; i < k; i++) {
    const ri = data[i];
    for (let j = i; j < k; j++) {
      const rj = data[j];
      let s = 0;
      for (let c = 0; c < cols; c++) s += ri[c] * rj[c];
      cov[i * k + j] = s;
      cov[j * k + i] = s;
    }
  }
  const inv = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    const d = Math.sqrt(cov[i * k + i]);
    if (!(d > 1e-8)) throw new Error(`rowCorrelation: row ${rows[i]} has (near) zero norm`);
    inv[i] = 1 / d;
  }
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) cov[i * k + j] *= inv[i] * inv[j];
  return new CorrelationMatrix(rows, cov);
}

// ---------------------------------------------------------------------------------------------------------
// Numerics

/** Eigen-decomposition of a symmetric matrix (cyclic Jacobi). Returns eigenvalues and column eigenvectors. */
export function symmetricEigen(m: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(m);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] * a[i * n + i];
      for (let j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const app = a[p * n + p];
        const aqq = a[q * n + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i];
  return { values, vectors: v };
}

/**
 * Partial correlation of x and y given z from a correlation matrix. |z| ≥ 2 uses the Moore–Penrose inverse
 * P of the (x, y, z) sub-matrix (singular values below 1e-15 of the largest dropped, as numpy's pinv):
 * r = −P₀₁ / √|P₀₀·P₁₁|.
 */
export function partialCorrelation(c: CorrelationMatrix, x: number, y: number, z: readonly number[]): number {
  if (z.length === 0) return c.at(x, y);
  if (z.length === 1) {
    const rxy = c.at(x, y);
    const rxz = c.at(x, z[0]);
    const ryz = c.at(y, z[0]);
    return (rxy - rxz * ryz) / Math.sqrt((1 - rxz * rxz) * (1 - ryz * ryz));
  }
  const vars = [x, y, ...z].map((v) => c.pos(v));
  const k = vars.length;
  const n = c.nodes.length;
  const sub = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) sub[i * k + j] = c.values[vars[i] * n + vars[j]];
  const { values, vectors } = symmetricEigen(sub, k);
  let maxAbs = 0;
  for (const e of values) maxAbs = Math.max(maxAbs, Math.abs(e));
  const cutoff = 1e-15 * maxAbs;
  // Only P₀₀, P₁₁, P₀₁ are needed: P_ab = Σ_e v_a,e v_b,e / λ_e.
  let p00 = 0;
  let p11 = 0;
  let p01 = 0;
  for (let e = 0; e < k; e++) {
    if (!(Math.abs(values[e]) > cutoff)) continue;
    const inv = 1 / values[e];
    const v0 = vectors[0 * k + e];
    const v1 = vectors[1 * k + e];
    p00 += v0 * v0 * inv;
    p11 += v1 * v1 * inv;
    p01 += v0 * v1 * inv;
  }
  return -p01 / Math.sqrt(Math.abs(p00 * p11));
}

/**
 * Two-sided p-value of Fisher's z test for a (partial) correlation r estimated from n samples with a
 * conditioning set of size k: erfc(|atanh(r)|·√(n−k−3) / √2). `NaN` when n − k − 3 ≤ 0 or r is NaN.
 */
export function fisherZPValue(r: number, n: number, k: number): number {
  const dof = n - k - 3;
  if (!(dof > 0) || Number.isNaN(r)) return Number.NaN;
  const z = Math.log1p((2 * r) / (1 - r)); // ln((1+r)/(1−r)) = 2·atanh(r)
  const v = Math.abs(Math.sqrt(dof) * 0.5 * z);
  if (v === Number.POSITIVE_INFINITY) return 0;
  return erfc(v / Math.SQRT2);
}

// ---------------------------------------------------------------------------------------------------------
// Tests

export interface CITestStats {
  /** Distinct tests computed (cache misses). */
  nTests: number;
  /** Distinct tests that came out independent. */
  nIndependent: number;
  /** Distinct tests per conditioning-set size. */
  perSize: number[];
  /** The computed test whose p-value lies closest to α (log10 distance), as [x, y, z, p]. */
  closest: [number, number, number[], number] | null;
  /** |log10 p − log10 α| of that test. */
  minLog10Margin: number;
}

/** Partial-correlation CI test with Fisher's z (see the module comment), cached per (pair, set). */
export class ParCorrTest implements CITest {
  private readonly cache = new Map<string, number>();
  readonly stats: CITestStats = {
    nTests: 0,
    nIndependent: 0,
    perSize: [],
    closest: null,
    minLog10Margin: Infinity,
  };

  constructor(
    readonly corr: CorrelationMatrix,
    /** Sample size n of Fisher's z (CLEANN: `num_samples`). */
    readonly numSamples: number,
    /** p-value threshold α: independent when p > α. */
    readonly alpha: number,
  ) {}

  /** p-value of x ⟂ y | z (not cached, not counted). */
  pValue(x: number, y: number, z: readonly number[], numSamples = this.numSamples): number {
    return fisherZPValue(partialCorrelation(this.corr, x, y, z), numSamples, z.length);
  }

  condIndep(x: number, y: number, z: readonly number[]): boolean {
    const sorted = [...z].sort((a, b) => a - b);
    const key = `${Math.min(x, y)},${Math.max(x, y)}|${sorted.join(",")}`;
    let p = this.cache.get(key);
    if (p === undefined) {
      p = this.pValue(x, y, z);
      this.cache.set(key, p);
      const s = this.stats;
      s.nTests++;
      s.perSize[z.length] = (s.perSize[z.length] ?? 0) + 1;
      if (p > this.alpha) s.nIndependent++;
      const margin = Math.abs(Math.log10(p) - Math.log10(this.alpha));
      if (margin < s.minLog10Margin) {
        s.minLog10Margin = margin;
        s.closest = [Math.min(x, y), Math.max(x, y), sorted, p];
      }
    }
    return p > this.alpha;
  }
}

/** The perfect CI test of a known DAG: x ⟂ y | z iff x and y are d-separated by z. */
export class DSeparationOracle implements CITest {
  private readonly parents = new Map<number, number[]>();
  private readonly children = new Map<number, number[]>();
  /** Every query, in order (for tests that check what a learner asked). */
  readonly queries: { x: number; y: number; z: number[]; independent: boolean }[] = [];

  constructor(nodes: readonly number[], edges: readonly (readonly [parent: number, child: number])[]) {
    for (const n of nodes) {
      this.parents.set(n, []);
      this.children.set(n, []);
    }
    for (const [p, c] of edges) {
      if (!this.parents.has(p) || !this.parents.has(c))
        throw new Error(`DSeparationOracle: edge ${p}->${c} has an unknown node`);
      this.parents.get(c)!.push(p);
      this.children.get(p)!.push(c);
    }
  }

  condIndep(x: number, y: number, z: readonly number[]): boolean {
    const independent = this.dSeparated(x, y, z);
    this.queries.push({ x, y, z: [...z], independent });
    return independent;
  }

  /**
   * d-separation by reachability over (node, direction) states ("Bayes ball"): a trail may pass a
   * non-collider that is not in z, and a collider that is in z or has a descendant in z.
   */
  dSeparated(x: number, y: number, z: readonly number[]): boolean {
    const zs = new Set(z);
    // Nodes that are in z or have a descendant in z (the only colliders a trail may pass).
    const ancOfZ = new Set<number>();
    const stack = [...zs];
    while (stack.length) {
      const v = stack.pop()!;
      if (ancOfZ.has(v)) continue;
      ancOfZ.add(v);
      for (const p of this.parents.get(v) ?? []) stack.push(p);
    }
    // State: arrived at v from a child ("up") or from a parent ("down").
    const seen = new Set<string>();
    const queue: [number, "up" | "down"][] = [[x, "up"]];
    while (queue.length) {
      const [v, dir] = queue.shift()!;
      const key = `${v}:${dir}`;
      if (seen.has(key)) continue;
      seen.add(key);
      if (v === y) return false;
      if (dir === "up" && !zs.has(v)) {
        for (const p of this.parents.get(v)!) queue.push([p, "up"]);
        for (const c of this.children.get(v)!) queue.push([c, "down"]);
      } else if (dir === "down") {
        if (!zs.has(v)) for (const c of this.children.get(v)!) queue.push([c, "down"]);
        if (ancOfZ.has(v)) for (const p of this.parents.get(v)!) queue.push([p, "up"]);
      }
    }
    return true;
  }
}
