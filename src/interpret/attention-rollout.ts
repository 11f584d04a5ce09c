/**
 * Attention rollout (Abnar & Zuidema 2020), the grounding benchmark's raw-attention baseline, as a library
 * function so the app and scripts read the same numbers the benchmark scores: the row of
 * Π_l (½·mean_h A_l + ½·I), the last layer first, for one query position.
 */

/**
 * Row `row` of the rollout over LLM layers `attn` (each [H, S, S], causal, row-major): how much of position
 * `row`'s output flows from each input position through attention and the residual stream.
 */
export function attentionRolloutRow(
  attn: readonly Float32Array[],
  H: number,
  S: number,
  row: number,
): Float64Array {
  let r = new Float64Array(S);
  r[row] = 1;
  for (let l = attn.length - 1; l >= 0; l--) {
    const next = new Float64Array(S);
    for (let i = 0; i < S; i++) {
      if (r[i] === 0) continue;
      next[i] += 0.5 * r[i];
      for (let h = 0; h < H; h++) {
        const o = (h * S + i) * S;
        for (let j = 0; j <= i; j++) next[j] += (0.5 * r[i] * attn[l][o + j]) / H;
      }
    }
    r = next;
  }
  return r;
}
