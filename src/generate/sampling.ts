/**
 * Next-token choice: greedy argmax, or Hugging Face's sampling order (temperature, then top-p nucleus) with
 * a seeded generator so a run can be reproduced.
 */

import { Rng } from "../tensor/rng.js";

/** Uniform [0, 1) numbers from the project's seeded generator, for choosing tokens reproducibly. */
export function seededRandom(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

export interface SamplingOptions {
  /** 0 means greedy. */
  temperature: number;
  topP: number;
}

/** Choose the next token from one row of logits. */
export function chooseToken(logits: Float32Array, opts: SamplingOptions, random: () => number): number {
  if (opts.temperature <= 0) return argmax(logits);
  const n = logits.length;
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) if (logits[i] > m) m = logits[i];
  const p = new Float64Array(n);
  let s = 0;
  for (let i = 0; i < n; i++) {
    p[i] = Math.exp((logits[i] - m) / opts.temperature);
    s += p[i];
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[b] - p[a]);
  // Nucleus: the smallest prefix of the sorted distribution whose mass reaches top_p (at least one token).
  let keep = n;
  if (opts.topP < 1) {
    let cum = 0;
    for (let i = 0; i < n; i++) {
      cum += p[order[i]] / s;
      if (cum >= opts.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  let mass = 0;
  for (let i = 0; i < keep; i++) mass += p[order[i]];
  let u = random() * mass;
  for (let i = 0; i < keep; i++) {
    u -= p[order[i]];
    if (u <= 0) return order[i];
  }
  return order[keep - 1];
}
