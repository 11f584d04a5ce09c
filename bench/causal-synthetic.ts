/**
 * Synthetic attention for the CLEANN benchmark: one LLaVA-1.5-sized layer (576 image tokens) whose rows are
 * causal softmaxes of q·k logits with token "topics" (so rows of related tokens correlate, as in a trained
 * model), an attention sink at position 0, and a final row that spreads over ~60 image tokens so that CLEANN
 * keeps its 50-image-node cap.
 */

import { Rng } from "../src/tensor/rng.js";

/** Deterministic uniform [0, 1) numbers (the project's seeded generator). */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

function gauss(r: () => number): number {
  const u = Math.max(r(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

export interface SyntheticLayer {
  heads: number;
  size: number;
  imageStart: number;
  imageCount: number;
  /** [heads, size, size] row-major. */
  data: Float32Array;
}

export function syntheticLayer(
  opts: {
    heads?: number;
    size?: number;
    imageStart?: number;
    imageCount?: number;
    seed?: number;
    topics?: number;
    noise?: number;
  } = {},
): SyntheticLayer {
  const heads = opts.heads ?? 32;
  const size = opts.size ?? 700;
  const imageStart = opts.imageStart ?? 5;
  const imageCount = opts.imageCount ?? 576;
  const r = rng(opts.seed ?? 1);
  const d = 12;
  const noise = opts.noise ?? 0.7;
  const topics = opts.topics ?? 24;
  const data = new Float32Array(heads * size * size);
  const topicVec = Array.from({ length: topics }, () => Array.from({ length: d }, () => gauss(r)));
  for (let h = 0; h < heads; h++) {
    const temp = 0.6 + 0.8 * r();
    const keys: number[][] = [];
    const queries: number[][] = [];
    for (let i = 0; i < size; i++) {
      const t = topicVec[Math.floor(r() * topics)];
      keys.push(t.map((v) => v + noise * gauss(r)));
      queries.push(t.map((v) => v + noise * gauss(r)));
    }
    const boosted = new Set<number>();
    while (boosted.size < 56) boosted.add(imageStart + Math.floor(r() * imageCount));
    const base = h * size * size;
    const row = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += queries[i][c] * keys[j][c];
        s = (s / Math.sqrt(d)) * temp;
        if (j === 0) s += 3;
        row[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j <= i; j++) {
        row[j] = Math.exp(row[j] - max);
        sum += row[j];
      }
      for (let j = 0; j <= i; j++) row[j] /= sum;
      if (i === size - 1) {
        // The explained row: 80 % of its mass over the boosted image tokens, each well above 0.01.
        const jitter = new Map([...boosted].map((j) => [j, 0.8 + 0.4 * r()]));
        let js = 0;
        for (const v of jitter.values()) js += v;
        for (let j = 0; j <= i; j++)
          row[j] = 0.2 * row[j] + (jitter.has(j) ? (0.8 * jitter.get(j)!) / js : 0);
      }
      for (let j = 0; j <= i; j++) data[base + i * size + j] = row[j];
    }
  }
  return { heads, size, imageStart, imageCount, data };
}
