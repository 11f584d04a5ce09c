/**
 * The synthetic shapes VQA data set: sample(seed, index) is a pure function of its arguments, so any index
 * can be regenerated on its own (no sequential state). The scene and the question draw from separate
 * streams, so changing the question logic leaves the images unchanged.
 */

import { hashSeed, Rng } from "../tensor/rng.js";
import { type QA, type SampleQAOptions, sampleQA } from "./questions.js";
import { generateScene, type Scene, type SceneOptions } from "./scene.js";

/** Vision patch size of the shapes model: 112 px / 14 → 8×8 grid. */
export const SHAPES_PATCH_SIZE = 14;

export interface ShapesSample {
  seed: number;
  index: number;
  scene: Scene;
  qa: QA;
}

export interface SampleOptions {
  scene?: SceneOptions;
  qa?: SampleQAOptions;
}

const SCENE_STREAM = 0x5ce9e;
const QA_STREAM = 0x9a;
const FOLLOW_UP_STREAM = 0xf0110;

/** The index-th sample of the data set with this seed (seed and index: non-negative integers). */
export function sample(seed: number, index: number, opts: SampleOptions = {}): ShapesSample {
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new RangeError(`seed ${seed} must be a non-negative integer`);
  if (!Number.isSafeInteger(index) || index < 0)
    throw new RangeError(`index ${index} must be a non-negative integer`);
  const scene = generateScene(new Rng(hashSeed(seed, index, SCENE_STREAM)), opts.scene);
  const qa = sampleQA(scene, new Rng(hashSeed(seed, index, QA_STREAM)), opts.qa);
  return { seed, index, scene, qa };
}

/** Several questions about one scene: the first is {@link sample}'s, the rest are distinct follow-ups. */
export interface ShapesConversation {
  seed: number;
  index: number;
  scene: Scene;
  qas: QA[];
}

/**
 * The index-th scene with up to `turns` different questions (fewer when the scene allows fewer distinct ones):
 * the first is exactly `sample(seed, index).qa`, so a one-turn conversation is the ordinary sample. Training
 * asks several questions per image (LLaVA's multi-turn format) to get more answers per vision forward pass.
 */
export function sampleConversation(
  seed: number,
  index: number,
  turns: number,
  opts: SampleOptions = {},
): ShapesConversation {
  if (!Number.isInteger(turns) || turns < 1)
    throw new RangeError(`turns ${turns} must be a positive integer`);
  const first = sample(seed, index, opts);
  const qas = [first.qa];
  // A bounded number of draws: small scenes have few distinct questions.
  for (let t = 1; qas.length < turns && t < 4 * turns; t++) {
    const qa = sampleQA(first.scene, new Rng(hashSeed(seed, index, FOLLOW_UP_STREAM + t)), opts.qa);
    if (!qas.some((q) => q.question === qa.question)) qas.push(qa);
  }
  return { seed, index, scene: first.scene, qas };
}

/**
 * Fraction of each patch×patch cell covered by `mask` (size×size, nonzero = covered), row-major over a
 * ceil(size/patch)² grid; partial edge cells are divided by their real pixel count.
 */
export function patchCoverage(mask: Uint8Array, size: number, patch = SHAPES_PATCH_SIZE): Float32Array {
  if (mask.length !== size * size)
    throw new RangeError(`mask has ${mask.length} pixels, expected ${size}×${size}`);
  const grid = Math.ceil(size / patch);
  const hits = new Float32Array(grid * grid);
  const counts = new Float32Array(grid * grid);
  for (let y = 0; y < size; y++) {
    const gy = Math.floor(y / patch);
    for (let x = 0; x < size; x++) {
      const g = gy * grid + Math.floor(x / patch);
      counts[g]!++;
      if (mask[y * size + x]) hits[g]!++;
    }
  }
  for (let g = 0; g < hits.length; g++) hits[g] = hits[g]! / counts[g]!;
  return hits;
}

/** Patch-grid coverage of one object's visible mask. */
export function objectPatchCoverage(
  scene: Scene,
  objectIndex: number,
  patch = SHAPES_PATCH_SIZE,
): Float32Array {
  const obj = scene.objects[objectIndex];
  if (!obj) throw new RangeError(`object ${objectIndex} out of range (scene has ${scene.objects.length})`);
  return patchCoverage(obj.mask, scene.size, patch);
}

/** Patch-grid coverage of the question's target object, or null when the question has none. */
export function targetPatchCoverage(s: ShapesSample, patch = SHAPES_PATCH_SIZE): Float32Array | null {
  return s.qa.target_object === null ? null : objectPatchCoverage(s.scene, s.qa.target_object, patch);
}

/** Union of the masks of all objects the question refers to (target included), or null when none. */
export function relatedMask(s: ShapesSample): Uint8Array | null {
  if (s.qa.related_objects.length === 0) return null;
  const out = new Uint8Array(s.scene.size * s.scene.size);
  for (const i of s.qa.related_objects) {
    const m = s.scene.objects[i]!.mask;
    for (let k = 0; k < m.length; k++) if (m[k]) out[k] = 1;
  }
  return out;
}
