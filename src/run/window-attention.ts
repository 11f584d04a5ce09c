/**
 * The packed store of attention that stays inside windows (Qwen2.5-VL's windowed tower blocks): row i keeps
 * only the keys of its own window, in patch order, padded to the largest window — [H, N, w] instead of
 * [H, N, N]. The forward's probabilities are exact zeros outside the window, so unpacking with the window of
 * every patch (`vit_attn_window.{l}`) rebuilds the dense [H, N, N] exactly.
 */

/** Patches of each window, in patch order (window ids are 0 … max). */
function windowMembers(windowOf: ArrayLike<number>): number[][] {
  const members: number[][] = [];
  for (let j = 0; j < windowOf.length; j++) {
    const w = windowOf[j];
    if (!Number.isInteger(w) || w < 0) throw new RangeError(`patch ${j} has window ${w}`);
    if (!members[w]) members[w] = [];
    members[w].push(j);
  }
  return members;
}

/** Width of the packed rows: the largest window's patch count. */
export function packedWidth(windowOf: ArrayLike<number>): number {
  let w = 0;
  for (const m of windowMembers(windowOf)) w = Math.max(w, m?.length ?? 0);
  return w;
}

/** [H, N, N] → [H, N, w]: row i's entries at its window's patches, in patch order, zero-padded. */
export function packWindowed(dense: Float32Array, heads: number, windowOf: ArrayLike<number>): Float32Array {
  const N = windowOf.length;
  if (dense.length !== heads * N * N)
    throw new RangeError(`attention of ${dense.length} values is not [${heads}, ${N}, ${N}]`);
  const members = windowMembers(windowOf);
  const w = packedWidth(windowOf);
  const out = new Float32Array(heads * N * w);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < N; i++) {
      const src = (h * N + i) * N;
      const dst = (h * N + i) * w;
      members[windowOf[i]].forEach((j, k) => {
        out[dst + k] = dense[src + j];
      });
    }
  }
  return out;
}

/** [H, N, w] → [H, N, N], zeros outside each row's window. */
export function unpackWindowed(
  packed: Float32Array,
  heads: number,
  windowOf: ArrayLike<number>,
): Float32Array {
  const N = windowOf.length;
  const members = windowMembers(windowOf);
  const w = packedWidth(windowOf);
  if (packed.length !== heads * N * w)
    throw new RangeError(
      `packed window attention of ${packed.length} values is not [${heads}, ${N}, ${w}] for its windows`,
    );
  const out = new Float32Array(heads * N * N);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < N; i++) {
      const src = (h * N + i) * w;
      const dst = (h * N + i) * N;
      members[windowOf[i]].forEach((j, k) => {
        out[dst + j] = packed[src + k];
      });
    }
  }
  return out;
}
