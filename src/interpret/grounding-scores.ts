/**
 * Scores of one explanation map against a known object mask (the grounding benchmark's metrics). A map and
 * a coverage have one value per image patch; coverage is the fraction of the patch's pixels that belong to
 * the object.
 */
import type { Rng } from "../tensor/rng.js";

/**
 * Pointing game for one map: the share of its maximal patches that overlap the mask. A tied maximum counts
 * as a uniform pick among the tied patches, so a flat map (e.g. an explanation without image patches) scores
 * what a random pick would, not whatever patch happens to come first. A map without a finite maximum scores 0.
 */
export function pointingHit(map: ArrayLike<number>, coverage: ArrayLike<number>): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < map.length; i++) max = Math.max(max, map[i]!);
  let tied = 0;
  let inside = 0;
  for (let i = 0; i < map.length; i++) {
    if (map[i] !== max) continue;
    tied++;
    if (coverage[i]! > 0) inside++;
  }
  return tied > 0 ? inside / tied : 0;
}

/** A map that singles out nothing: every patch has the same value. */
export function isFlat(map: ArrayLike<number>): boolean {
  for (let i = 1; i < map.length; i++) if (map[i] !== map[0]) return false;
  return true;
}

/** Σ max(0, map)·coverage / Σ max(0, map): the map's positive mass on the object (0 for a map with none). */
export function energyInMask(map: ArrayLike<number>, coverage: ArrayLike<number>): number {
  let inside = 0;
  let total = 0;
  for (let i = 0; i < map.length; i++) {
    const v = Math.max(0, map[i]!);
    inside += v * coverage[i]!;
    total += v;
  }
  return total > 0 ? inside / total : 0;
}

/** Patches by decreasing map value; ties broken by a seeded shuffle so flat maps carry no index bias. */
export function patchOrder(map: ArrayLike<number>, rng: Rng): number[] {
  const idx = rng.shuffle(Array.from({ length: map.length }, (_, i) => i));
  return idx.sort((a, b) => map[b]! - map[a]!);
}

/**
 * Area under a curve sampled at equally spaced fractions 0, 1/k, …, 1 (k + 1 values), by trapezoids:
 * the deletion AUC when the values are the answer's probability as ever more patches are blanked.
 */
export function curveArea(values: readonly number[]): number {
  if (values.length < 2) throw new RangeError(`a curve needs at least two points, got ${values.length}`);
  let area = 0;
  for (let k = 1; k < values.length; k++) area += (values[k - 1]! + values[k]!) / 2;
  return area / (values.length - 1);
}
