/**
 * Stage 1 of the shapes training: the vision tower learns what is where before the language model asks it
 * anything. A throw-away linear head on the tower's selected features (what the projector reads) classifies
 * every patch as the shape and the colour of the object covering it (or background), from the generator's
 * exact masks. This plays the part of the pretrained CLIP tower of a real LLaVA: trained from scratch with
 * answer tokens only, the tower did not learn shapes at all in 67k examples (single big upright shapes
 * stayed at chance), while the dense per-patch labels give 64 targets per image. The head is not part of
 * the exported model.
 */
import type { Kernels } from "../kernels/types.js";
import type { WeightGradients } from "../models/gradients.js";
import type { PixelValues, VisionLanguageModel } from "../models/types.js";
import { objectPatchCoverage, type SampleOptions, SHAPES_PATCH_SIZE, sample } from "../shapes/dataset.js";
import { COLOR_NAMES, type Scene, SHAPE_NAMES } from "../shapes/scene.js";
import { crossEntropy } from "../tensor/ops.js";
import { Rng } from "../tensor/rng.js";
import type { ExampleSource } from "./examples.js";

/** Class 0 is background in both heads. */
export const PATCH_SHAPE_CLASSES = ["background", ...SHAPE_NAMES] as const;
export const PATCH_COLOR_CLASSES = ["background", ...COLOR_NAMES] as const;

/**
 * The easy scenes stage 1 can start with: one upright object of 40–50 px on a plain background. Trained on
 * these first, the tower left its plateau (object-patch shape accuracy 35 % → 74 % between 9,600 and 24,000
 * images) where on the default scenes it had not moved after 24,000 images; see docs/training.md.
 */
export const EASY_SCENES: SampleOptions = {
  scene: { maxObjects: 1, rotation: 0, texturedProbability: 0, minObjectSize: 40, maxObjectSize: 50 },
};

/** A patch belongs to the object covering most of it when that object covers at least this fraction. */
export const PATCH_LABEL_MIN_COVERAGE = 0.2;

export interface PatchHead {
  tensors: { name: string; shape: number[]; data: Float32Array }[];
}

/** Fresh head weights for features of width `width` (N(0, 1/width) weights, zero biases). */
export function createPatchHead(width: number, seed: number): PatchHead {
  const rng = new Rng(seed ^ 0x4ead);
  const normal = () =>
    Math.sqrt(-2 * Math.log(Math.max(rng.next(), 1e-12))) * Math.cos(2 * Math.PI * rng.next());
  const matrix = (rows: number) =>
    Float32Array.from({ length: rows * width }, () => normal() / Math.sqrt(width));
  const S = PATCH_SHAPE_CLASSES.length;
  const C = PATCH_COLOR_CLASSES.length;
  return {
    tensors: [
      { name: "patch_head.shape.weight", shape: [S, width], data: matrix(S) },
      { name: "patch_head.shape.bias", shape: [S], data: new Float32Array(S) },
      { name: "patch_head.color.weight", shape: [C, width], data: matrix(C) },
      { name: "patch_head.color.bias", shape: [C], data: new Float32Array(C) },
    ],
  };
}

export interface PatchExample {
  pixels: PixelValues;
  /** Per patch (row-major grid), index into PATCH_SHAPE_CLASSES / PATCH_COLOR_CLASSES. */
  shapeLabels: Uint8Array;
  colorLabels: Uint8Array;
}

/** Per-patch labels of a scene: the object covering most of the patch, if it covers enough of it. */
export function patchLabels(
  scene: Scene,
  patch = SHAPES_PATCH_SIZE,
): { shape: Uint8Array; color: Uint8Array } {
  const cover = scene.objects.map((_, i) => objectPatchCoverage(scene, i, patch));
  const n = cover[0]?.length ?? Math.ceil(scene.size / patch) ** 2;
  const shape = new Uint8Array(n);
  const color = new Uint8Array(n);
  for (let g = 0; g < n; g++) {
    let best = -1;
    let most = PATCH_LABEL_MIN_COVERAGE;
    cover.forEach((c, i) => {
      if (c[g]! >= most) {
        most = c[g]!;
        best = i;
      }
    });
    if (best < 0) continue;
    const o = scene.objects[best]!;
    shape[g] = 1 + SHAPE_NAMES.indexOf(o.shape);
    color[g] = 1 + COLOR_NAMES.indexOf(o.color);
  }
  return { shape, color };
}

export function makePatchExample(
  model: VisionLanguageModel,
  source: ExampleSource,
  index: number,
  easy = false,
): PatchExample {
  const { scene } = sample(source.seed, index, easy ? EASY_SCENES : source.options);
  const { pixels } = model.preprocess(scene.image, "default");
  const labels = patchLabels(scene);
  return { pixels, shapeLabels: labels.shape, colorLabels: labels.color };
}

export interface PatchStepResult {
  /** Mean over patches of the shape and colour cross-entropies (summed). */
  loss: number;
  /** Patches whose shape and colour are both the argmax. */
  correct: number;
  patches: number;
}

/**
 * One image through the tower and the head; with `grads`, the gradients of the tower and the head (scaled
 * by `scale`) are added to it.
 */
export async function patchPretrainStep(
  model: VisionLanguageModel,
  kernels: Kernels,
  head: PatchHead,
  ex: PatchExample,
  grads: WeightGradients | null,
  scale = 1,
): Promise<PatchStepResult> {
  // The projector is not in this loss: only the tower runs.
  const enc = await model.encodeTowerFeatures(kernels, ex.pixels, { tape: grads !== null });
  const X = enc.features;
  const n = enc.count;
  if (n !== ex.shapeLabels.length)
    throw new Error(`the tower gives ${n} patches but the labels cover ${ex.shapeLabels.length}`);
  const width = X.length / n;
  const dX = new Float32Array(X.length);
  const [sw, sb, cw, cb] = head.tensors.map((t) => t.data) as [
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  let loss = 0;
  const right = new Uint8Array(n).fill(1);
  const classify = (w: Float32Array, b: Float32Array, labels: Uint8Array) => {
    const K = b.length;
    const gw = grads?.of(w);
    const gb = grads?.of(b);
    const z = new Float64Array(K);
    for (let t = 0; t < n; t++) {
      const x = X.subarray(t * width, (t + 1) * width);
      for (let k = 0; k < K; k++) {
        let s = b[k]!;
        for (let c = 0; c < width; c++) s += w[k * width + c]! * x[c]!;
        z[k] = s;
      }
      const y = labels[t]!;
      const ce = crossEntropy(z, y);
      loss += ce.loss / n;
      if (ce.argmax !== y) right[t] = 0;
      if (!gw || !gb) continue;
      for (let k = 0; k < K; k++) {
        const g = (ce.grad(k) * scale) / n;
        gb[k]! += g;
        for (let c = 0; c < width; c++) {
          dX[t * width + c]! += g * w[k * width + c]!;
          gw[k * width + c]! += g * x[c]!;
        }
      }
    }
  };
  classify(sw, sb, ex.shapeLabels);
  classify(cw, cb, ex.colorLabels);
  if (grads) await model.towerFeaturesBackward(kernels, enc, dX, { grads });
  let correct = 0;
  for (const r of right) correct += r;
  return { loss, correct, patches: n };
}
