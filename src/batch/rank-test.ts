/**
 * Mann–Whitney U (Wilcoxon rank-sum) test of two independent samples: do values of `a` tend to be larger
 * than those of `b`? Two-sided p from the normal approximation with tie correction and continuity
 * correction (scipy.stats.mannwhitneyu(method="asymptotic"), its default for samples with ties).
 */
import { erfc } from "../tensor/ops.js";

export interface MannWhitney {
  /** U of sample a: the number of pairs (x from a, y from b) with x > y, ties counting ½. */
  u: number;
  z: number;
  /** Two-sided p value. */
  p: number;
  /** u / (n_a · n_b): probability that a value of a beats one of b (ties ½); 0.5 = no separation. */
  auc: number;
}

/** Ranks 1…n of the pooled values, ties given their average rank. */
export function averageRanks(values: readonly number[]): number[] {
  const order = values.map((v, i) => ({ v, i })).sort((x, y) => x.v - y.v);
  const ranks = new Array<number>(values.length);
  for (let s = 0; s < order.length; ) {
    let e = s;
    while (e + 1 < order.length && order[e + 1].v === order[s].v) e++;
    const r = (s + e) / 2 + 1;
    for (let k = s; k <= e; k++) ranks[order[k].i] = r;
    s = e + 1;
  }
  return ranks;
}

export function mannWhitneyU(a: readonly number[], b: readonly number[]): MannWhitney | null {
  const n1 = a.length;
  const n2 = b.length;
  if (n1 === 0 || n2 === 0) return null;
  if ([...a, ...b].some((v) => !Number.isFinite(v)))
    throw new RangeError("Mann–Whitney U needs finite values");
  const ranks = averageRanks([...a, ...b]);
  let r1 = 0;
  for (let i = 0; i < n1; i++) r1 += ranks[i];
  const u = r1 - (n1 * (n1 + 1)) / 2;
  const n = n1 + n2;
  // Tie correction: Σ(t³ − t) over groups of tied values.
  const counts = new Map<number, number>();
  for (const v of [...a, ...b]) counts.set(v, (counts.get(v) ?? 0) + 1);
  let tie = 0;
  for (const t of counts.values()) tie += t * t * t - t;
  const mu = (n1 * n2) / 2;
  const sigma = Math.sqrt(((n1 * n2) / 12) * (n + 1 - tie / (n * (n - 1))));
  let z = 0;
  let p = 1;
  if (sigma > 0) {
    const d = Math.abs(u - mu);
    z = (Math.sign(u - mu) * Math.max(0, d - 0.5)) / sigma;
    p = Math.min(1, erfc(Math.abs(z) / Math.SQRT2));
  }
  return { u, z, p, auc: u / (n1 * n2) };
}
