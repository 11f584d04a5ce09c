/**
 * The image tokens' place in the text sequence, shared by every family that swaps image-token embeddings for
 * image features one row each (LLaVA, LLaVA-NeXT/OneVision, Qwen2-VL): where they stand, the forward scatter
 * and its backward gather.
 */

/** Indices of `imageTokenId` in the prompt, in order. */
export function imageTokenPositions(inputIds: readonly number[], imageTokenId: number): number[] {
  const out: number[] = [];
  inputIds.forEach((id, i) => {
    if (id === imageTokenId) out.push(i);
  });
  return out;
}

/**
 * Writes feature row j ([count, D] in `features`) over the embedding of the j-th image token, in place.
 * The prompt must hold exactly `count` image tokens: a mismatch means prompt and image were built apart.
 */
export function scatterImageFeatures(
  embeds: Float32Array,
  positions: readonly number[],
  features: Float32Array,
  count: number,
  D: number,
): Float32Array {
  if (positions.length !== count)
    throw new Error(`prompt has ${positions.length} image tokens but the image gives ${count} features`);
  positions.forEach((p, j) => {
    embeds.set(features.subarray(j * D, (j + 1) * D), p * D);
  });
  return embeds;
}

/**
 * Backward of `scatterImageFeatures`: the gradient rows at the image positions, [positions, D]. dEmbeds holds
 * rows from … from+rows−1 (a cached prefix is not recomputed); positions outside that window get zero.
 */
export function gatherImageFeaturesGrad(
  positions: readonly number[],
  dEmbeds: Float32Array,
  D: number,
  from = 0,
): Float32Array {
  const rows = dEmbeds.length / D;
  const out = new Float32Array(positions.length * D);
  positions.forEach((p, j) => {
    if (p >= from && p < from + rows) out.set(dEmbeds.subarray((p - from) * D, (p - from + 1) * D), j * D);
  });
  return out;
}
