/**
 * CLIP-blind-style pairs from the shapes generator: two images that differ only in what the question asks
 * (one object recoloured, one object reshaped, one object removed, or the picture mirrored left↔right), so
 * the same question has a different answer on each. Scenes have a plain background and no overlapping
 * objects, so an edit can restore the background exactly and touches nothing else.
 */
import { hashSeed, Rng } from "../tensor/rng.js";
import { COUNT_WORDS, fillTemplate, QUESTION_TEMPLATES, whereOf } from "./questions.js";
import {
  COLOR_NAMES,
  COLOR_RGB,
  type ColorName,
  generateScene,
  rasterizeShape,
  type Scene,
  type SceneImage,
  type SceneObject,
  SHAPE_NAMES,
} from "./scene.js";

export const PAIR_KINDS = ["color", "shape", "count", "position"] as const;
export type PairKind = (typeof PAIR_KINDS)[number];

export type Box = [number, number, number, number];

export interface PairSide {
  image: SceneImage;
  answer: string;
  /** The object the question is about (null for counting). */
  box: Box | null;
}

export interface ShapesPair {
  kind: PairKind;
  question: string;
  a: PairSide;
  b: PairSide;
}

const PAIR_STREAM = 0xc11b;

function cloneImage(img: SceneImage): SceneImage {
  return { width: img.width, height: img.height, data: img.data.slice() };
}

/** The plain background's colour: a pixel no object covers. */
function backgroundRgb(scene: Scene): [number, number, number] {
  const n = scene.size * scene.size;
  for (let k = 0; k < n; k++) {
    if (scene.objects.every((o) => !o.mask[k])) {
      const d = scene.image.data;
      return [d[3 * k], d[3 * k + 1], d[3 * k + 2]];
    }
  }
  throw new Error("scene has no background pixel");
}

function paint(img: SceneImage, mask: Uint8Array, rgb: readonly number[]): void {
  for (let k = 0; k < mask.length; k++) {
    if (!mask[k]) continue;
    img.data[3 * k] = rgb[0];
    img.data[3 * k + 1] = rgb[1];
    img.data[3 * k + 2] = rgb[2];
  }
}

function maskBox(mask: Uint8Array, size: number): Box {
  let x0 = size;
  let y0 = size;
  let x1 = 0;
  let y1 = 0;
  for (let k = 0; k < mask.length; k++) {
    if (!mask[k]) continue;
    const x = k % size;
    const y = Math.floor(k / size);
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y);
    x1 = Math.max(x1, x + 1);
    y1 = Math.max(y1, y + 1);
  }
  return [x0, y0, x1, y1];
}

const unique = <T>(scene: Scene, key: (o: SceneObject) => T, v: T) =>
  scene.objects.filter((o) => key(o) === v).length === 1;

function colorPair(scene: Scene, rng: Rng): ShapesPair | null {
  const targets = scene.objects.filter((o) => unique(scene, (x) => x.shape, o.shape));
  if (targets.length === 0) return null;
  const o = rng.pick(targets);
  const others = COLOR_NAMES.filter((c) => c !== o.color);
  const c: ColorName = rng.pick(others);
  // Keep the object's colour jitter, so only the hue changes.
  const rgb = COLOR_RGB[c].map((v, i) => Math.max(0, Math.min(255, v + o.rgb[i] - COLOR_RGB[o.color][i])));
  const b = cloneImage(scene.image);
  paint(b, o.mask, rgb);
  const question = fillTemplate(QUESTION_TEMPLATES.color[0], { shape: o.shape });
  return {
    kind: "color",
    question,
    a: { image: scene.image, answer: o.color, box: o.box },
    b: { image: b, answer: c, box: o.box },
  };
}

function shapePair(scene: Scene, rng: Rng): ShapesPair | null {
  const targets = scene.objects.filter((o) => unique(scene, (x) => x.color, o.color));
  if (targets.length === 0) return null;
  const o = rng.pick(targets);
  const size = scene.size;
  const occupied = new Uint8Array(size * size);
  for (const x of scene.objects)
    if (x !== o) for (let k = 0; k < occupied.length; k++) occupied[k] |= x.mask[k];
  for (const s of rng.shuffle(SHAPE_NAMES.filter((s) => s !== o.shape))) {
    const mask = rasterizeShape(s, o.cx, o.cy, o.size, s === "circle" ? 0 : o.rotation, size);
    // The new shape must stay clear of the others (one pixel of margin) so nothing else changes.
    let clear = true;
    for (let k = 0; k < mask.length && clear; k++) {
      if (!mask[k]) continue;
      const x = k % size;
      const y = Math.floor(k / size);
      for (let dy = -1; dy <= 1 && clear; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          const yy = y + dy;
          if (xx >= 0 && yy >= 0 && xx < size && yy < size && occupied[yy * size + xx]) clear = false;
        }
    }
    if (!clear) continue;
    const b = cloneImage(scene.image);
    paint(b, o.mask, backgroundRgb(scene));
    paint(b, mask, o.rgb);
    const question = fillTemplate(QUESTION_TEMPLATES.shape[0], { color: o.color });
    return {
      kind: "shape",
      question,
      a: { image: scene.image, answer: o.shape, box: o.box },
      b: { image: b, answer: s, box: maskBox(mask, size) },
    };
  }
  return null;
}

function countPair(scene: Scene, rng: Rng): ShapesPair | null {
  const n = scene.objects.length;
  if (n < 2) return null;
  const o = rng.pick(scene.objects);
  const b = cloneImage(scene.image);
  paint(b, o.mask, backgroundRgb(scene));
  return {
    kind: "count",
    question: QUESTION_TEMPLATES.count[0],
    a: { image: scene.image, answer: COUNT_WORDS[n - 1], box: null },
    b: { image: b, answer: COUNT_WORDS[n - 2], box: null },
  };
}

function positionPair(scene: Scene, rng: Rng): ShapesPair | null {
  const size = scene.size;
  const targets = scene.objects.filter((o) => {
    const w = whereOf(o, size);
    return (
      (w === "left" || w === "right") &&
      scene.objects.filter((x) => x.color === o.color && x.shape === o.shape).length === 1
    );
  });
  if (targets.length === 0) return null;
  const o = rng.pick(targets);
  const b = cloneImage(scene.image);
  for (let y = 0; y < size; y++)
    for (let x = 0; x < size; x++)
      for (let ch = 0; ch < 3; ch++)
        b.data[3 * (y * size + x) + ch] = scene.image.data[3 * (y * size + size - 1 - x) + ch];
  const side = whereOf(o, size)!;
  const question = fillTemplate(QUESTION_TEMPLATES.where[0], { color: o.color, shape: o.shape });
  const [x0, y0, x1, y1] = o.box;
  return {
    kind: "position",
    question,
    a: { image: scene.image, answer: side, box: o.box },
    b: { image: b, answer: side === "left" ? "right" : "left", box: [size - x1, y0, size - x0, y1] },
  };
}

const MAKERS: Record<PairKind, (scene: Scene, rng: Rng) => ShapesPair | null> = {
  color: colorPair,
  shape: shapePair,
  count: countPair,
  position: positionPair,
};

/**
 * The index-th pair of the set with this seed; kinds cycle colour, shape, count, position, so any n pairs
 * hold each kind about equally. A pure function of (seed, index).
 */
export function makePair(seed: number, index: number): ShapesPair {
  const kind = PAIR_KINDS[index % PAIR_KINDS.length];
  for (let attempt = 0; attempt < 1000; attempt++) {
    const rng = new Rng(hashSeed(seed, index, PAIR_STREAM + attempt));
    const scene = generateScene(rng, { overlapProbability: 0, texturedProbability: 0, maxObjects: 4 });
    const pair = MAKERS[kind](scene, rng);
    if (pair) return pair;
  }
  throw new Error(`no ${kind} pair found for seed ${seed}, index ${index}`);
}
