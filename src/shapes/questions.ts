/**
 * Template questions with short lowercase answers about a {@link Scene}, asked only when unambiguous:
 *
 * - color  — "What color is the circle?" → red; only when exactly one circle.
 * - shape  — "What shape is the red object?" → circle; only when exactly one red object.
 * - exists — "Is there a blue square?" → yes / no; "no" questions have target_object null.
 * - count  — "How many shapes are there?" → one … four; target_object null.
 * - where  — "Where is the green triangle?" → left / right / top / bottom, from the visible centroid's offset
 *            (dx, dy) to the image centre: asked only when the larger offset is ≥ {@link WHERE_MIN_OFFSET}·size
 *            and the smaller is ≤ {@link WHERE_NEAR_CENTRE}·size or ≤ larger / {@link WHERE_AXIS_RATIO}.
 * - bigger — "Which is bigger, the circle or the square?" → the one with more visible pixels; only when both
 *            shapes occur once and the visible areas differ by ≥ {@link BIGGER_RATIO}×.
 *
 * `target_object` is the index (into scene.objects) of the object the answer is about; `related_objects`
 * lists every object the question names (both objects for "bigger").
 */
import type { Rng } from "../tensor/rng.js";
import {
  COLOR_NAMES,
  type ColorName,
  type Scene,
  type SceneObject,
  SHAPE_NAMES,
  type ShapeName,
} from "./scene.js";

export const QUESTION_KINDS = ["color", "shape", "exists", "count", "where", "bigger"] as const;
export type QuestionKind = (typeof QUESTION_KINDS)[number];

export type WhereAnswer = "left" | "right" | "top" | "bottom";

export interface QA {
  question: string;
  answer: string;
  kind: QuestionKind;
  /** Object the answer is about, or null (counting, "is there" questions answered "no"). */
  target_object: number | null;
  /** Every object the question refers to (empty for counting and "no" answers). */
  related_objects: number[];
  /** Index of the paraphrase used in {@link QUESTION_TEMPLATES}[kind]. */
  template: number;
}

/**
 * Paraphrases per kind. Placeholders: {shape}, {color}, {a_color} ("a red" / "an orange"), {shape1}, {shape2}.
 */
export const QUESTION_TEMPLATES: Readonly<Record<QuestionKind, readonly string[]>> = {
  color: [
    "What color is the {shape}?",
    "What is the color of the {shape}?",
    "Which color is the {shape}?",
    "What colour is the {shape}?",
    "Tell me the color of the {shape}.",
  ],
  shape: [
    "What shape is the {color} object?",
    "What is the shape of the {color} object?",
    "Which shape is {color}?",
    "What shape is the {color} one?",
    "What kind of shape is {color}?",
  ],
  exists: [
    "Is there {a_color} {shape}?",
    "Is there {a_color} {shape} in the image?",
    "Does the image contain {a_color} {shape}?",
    "Can you see {a_color} {shape}?",
    "Is there any {color} {shape}?",
  ],
  count: [
    "How many shapes are there?",
    "How many objects are there?",
    "How many shapes are in the image?",
    "How many objects can you see?",
    "Count the shapes.",
  ],
  where: [
    "Where is the {color} {shape}?",
    "Where is the {color} {shape} located?",
    "On which side is the {color} {shape}?",
    "In which part of the image is the {color} {shape}?",
  ],
  bigger: [
    "Which is bigger, the {shape1} or the {shape2}?",
    "Which is larger, the {shape1} or the {shape2}?",
    "Which one is bigger: the {shape1} or the {shape2}?",
    "Which shape is bigger, the {shape1} or the {shape2}?",
  ],
};

export const COUNT_WORDS = ["one", "two", "three", "four"] as const;
export const WHERE_WORDS: readonly WhereAnswer[] = ["left", "right", "top", "bottom"];
export const YES_NO = ["yes", "no"] as const;

/** Every answer word any question can have. */
export const ANSWER_WORDS: readonly string[] = [
  ...COLOR_NAMES,
  ...SHAPE_NAMES,
  ...YES_NO,
  ...COUNT_WORDS,
  ...WHERE_WORDS,
];

/** "where": the dominant centroid offset from the image centre must be at least this fraction of the side. */
export const WHERE_MIN_OFFSET = 1 / 7; // 16 px at 112
/** "where": the other offset counts as near the centre up to this fraction of the side… */
export const WHERE_NEAR_CENTRE = 3 / 56; // 6 px at 112
/** …or when the dominant offset is at least this many times larger. */
export const WHERE_AXIS_RATIO = 3;
/** "bigger": the larger visible area must be at least this many times the smaller. */
export const BIGGER_RATIO = 1.5;

/** Side of the image centre the object lies on, or null when that is not clear-cut. */
export function whereOf(obj: Pick<SceneObject, "centroid">, size: number): WhereAnswer | null {
  const dx = obj.centroid[0] - size / 2;
  const dy = obj.centroid[1] - size / 2;
  const ax = Math.abs(dx);
  const ay = Math.abs(dy);
  const major = Math.max(ax, ay);
  const minor = Math.min(ax, ay);
  if (major < WHERE_MIN_OFFSET * size) return null;
  if (!(minor <= WHERE_NEAR_CENTRE * size || minor * WHERE_AXIS_RATIO <= major)) return null;
  if (ax > ay) return dx < 0 ? "left" : "right";
  return dy < 0 ? "top" : "bottom";
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? "an" : "a";
}

/** Fills a template's placeholders. */
export function fillTemplate(
  template: string,
  v: { shape?: string; color?: string; shape1?: string; shape2?: string },
): string {
  return template.replace(/\{(a_color|shape1|shape2|shape|color)\}/g, (_, key: string) => {
    const val =
      key === "a_color" ? (v.color ? `${article(v.color)} ${v.color}` : undefined) : v[key as keyof typeof v];
    if (val === undefined) throw new Error(`template "${template}" needs {${key}}`);
    return val;
  });
}

function ask(
  rng: Rng,
  kind: QuestionKind,
  vars: Parameters<typeof fillTemplate>[1],
  answer: string,
  target: number | null,
  related: number[],
): QA {
  const templates = QUESTION_TEMPLATES[kind];
  const template = rng.int(0, templates.length - 1);
  return {
    question: fillTemplate(templates[template]!, vars),
    answer,
    kind,
    target_object: target,
    related_objects: related,
    template,
  };
}

function indicesWhere(scene: Scene, pred: (o: SceneObject) => boolean): number[] {
  const out: number[] = [];
  scene.objects.forEach((o, i) => {
    if (pred(o)) out.push(i);
  });
  return out;
}

/**
 * Every unambiguous question about the scene (one random paraphrase each). "Is there" negatives are sampled:
 * as many as there are objects, half of them preferably "hard" (sharing a colour or shape with a present
 * object).
 */
export function questionsFor(scene: Scene, rng: Rng): QA[] {
  const objs = scene.objects;
  const out: QA[] = [];

  for (const shape of SHAPE_NAMES) {
    const idx = indicesWhere(scene, (o) => o.shape === shape);
    if (idx.length === 1) out.push(ask(rng, "color", { shape }, objs[idx[0]!]!.color, idx[0]!, idx));
  }
  for (const color of COLOR_NAMES) {
    const idx = indicesWhere(scene, (o) => o.color === color);
    if (idx.length === 1) out.push(ask(rng, "shape", { color }, objs[idx[0]!]!.shape, idx[0]!, idx));
  }

  objs.forEach((o, i) => {
    out.push(ask(rng, "exists", { color: o.color, shape: o.shape }, "yes", i, [i]));
  });
  const absent: [ShapeName, ColorName][] = [];
  for (const shape of SHAPE_NAMES) {
    for (const color of COLOR_NAMES) {
      if (!objs.some((o) => o.shape === shape && o.color === color)) absent.push([shape, color]);
    }
  }
  const isHard = ([s, c]: [ShapeName, ColorName]) => objs.some((o) => o.shape === s || o.color === c);
  for (let k = 0; k < objs.length && absent.length > 0; k++) {
    const hard = absent.filter(isHard);
    const pool = hard.length > 0 && rng.bool(0.5) ? hard : absent;
    const [shape, color] = rng.pick(pool);
    absent.splice(
      absent.findIndex(([s, c]) => s === shape && c === color),
      1,
    );
    out.push(ask(rng, "exists", { color, shape }, "no", null, []));
  }

  out.push(ask(rng, "count", {}, COUNT_WORDS[objs.length - 1] ?? String(objs.length), null, []));

  objs.forEach((o, i) => {
    const side = whereOf(o, scene.size);
    if (side) out.push(ask(rng, "where", { color: o.color, shape: o.shape }, side, i, [i]));
  });

  for (let a = 0; a < SHAPE_NAMES.length; a++) {
    for (let b = a + 1; b < SHAPE_NAMES.length; b++) {
      const ia = indicesWhere(scene, (o) => o.shape === SHAPE_NAMES[a]);
      const ib = indicesWhere(scene, (o) => o.shape === SHAPE_NAMES[b]);
      if (ia.length !== 1 || ib.length !== 1) continue;
      const oa = objs[ia[0]!]!;
      const ob = objs[ib[0]!]!;
      const big = Math.max(oa.area, ob.area);
      const small = Math.min(oa.area, ob.area);
      if (big < BIGGER_RATIO * small) continue;
      const winner = oa.area > ob.area ? ia[0]! : ib[0]!;
      const pair = rng.bool(0.5) ? [ia[0]!, ib[0]!] : [ib[0]!, ia[0]!];
      out.push(
        ask(
          rng,
          "bigger",
          { shape1: objs[pair[0]!]!.shape, shape2: objs[pair[1]!]!.shape },
          objs[winner]!.shape,
          winner,
          pair,
        ),
      );
    }
  }
  return out;
}

/**
 * Default relative weights of the kinds in {@link sampleQA}. "where" and "bigger" are possible in only about
 * half and a third of the scenes, so they weigh more; over many samples every kind gets 14–19%.
 */
export const DEFAULT_KIND_WEIGHTS: Readonly<Record<QuestionKind, number>> = {
  color: 1,
  shape: 1,
  exists: 1,
  count: 1,
  where: 2,
  bigger: 3,
};

export interface SampleQAOptions {
  /** Relative weight of each kind among those the scene allows (default {@link DEFAULT_KIND_WEIGHTS}). */
  kindWeights?: Partial<Record<QuestionKind, number>>;
}

/**
 * One question for the scene: a kind drawn among those available (weighted), then — for "exists" — yes or no
 * with equal odds, then a uniform choice.
 */
export function sampleQA(scene: Scene, rng: Rng, opts: SampleQAOptions = {}): QA {
  const all = questionsFor(scene, rng);
  const weight = (k: QuestionKind) => opts.kindWeights?.[k] ?? DEFAULT_KIND_WEIGHTS[k];
  const kinds = QUESTION_KINDS.filter((k) => all.some((q) => q.kind === k) && weight(k) > 0);
  if (kinds.length === 0) throw new Error("sampleQA: no question kind available with the given weights");
  const kind = rng.pickWeighted(kinds, kinds.map(weight));
  let pool = all.filter((q) => q.kind === kind);
  if (kind === "exists") {
    const answer = rng.pick(YES_NO);
    const sub = pool.filter((q) => q.answer === answer);
    if (sub.length > 0) pool = sub;
  }
  return rng.pick(pool);
}
