/**
 * One training example through the ordinary model code: forward with a tape over the whole conversation
 * (teacher forcing), cross-entropy on the answer tokens (each followed by the end-of-sequence token that stops
 * generation), then the hand-written backward into weight gradients of the whole model, vision tower included.
 */
import type { Kernels } from "../kernels/types.js";
import type { WeightGradients } from "../models/gradients.js";
import type { ImageLayout } from "../models/image-layout.js";
import type { PixelValues, VisionLanguageModel } from "../models/types.js";
import { crossEntropy } from "../tensor/ops.js";

export interface TrainingExample {
  /**
   * The whole token sequence: the expanded prompt (one image token per feature, as `TextProcessor.encodePrompt`
   * gives it), then each answer followed by the stop token, with any further question turns in between.
   */
  inputIds: number[];
  /** [start, end) positions in `inputIds` of each answer (stop token included); the loss is on these only. */
  answerSpans: [number, number][];
  pixels: PixelValues;
  /** The image's token layout (position ids may depend on it). */
  layout: ImageLayout;
}

/** A one-question example: prompt ids then answer ids (the stop token included). */
export function singleTurnExample(
  promptIds: number[],
  answerIds: number[],
  image: { pixels: PixelValues; layout: ImageLayout },
): TrainingExample {
  const inputIds = [...promptIds, ...answerIds];
  return { inputIds, answerSpans: [[promptIds.length, inputIds.length]], ...image };
}

export interface StepResult {
  /** Mean cross-entropy over the answer tokens. */
  loss: number;
  /** Whether the first answer's first token is the argmax at the last prompt position (greedy decoding's choice). */
  firstTokenCorrect: boolean;
  /** Over every answer: how many first tokens are the argmax, and how many answers there are. */
  answersCorrect: number;
  answers: number;
}

/**
 * Loss and (when `grads` is given) its gradients for one example; gradients are scaled by `scale` (e.g.
 * 1/batch) and added to what `grads` already holds. `trainVision: false` leaves the vision tower out of the
 * backward (no tower gradients; the projector and language model still get theirs).
 */
export async function trainingStep(
  model: VisionLanguageModel,
  kernels: Kernels,
  ex: TrainingExample,
  grads: WeightGradients | null,
  scale = 1,
  opts: { trainVision?: boolean } = {},
): Promise<StepResult> {
  // A frozen tower needs no tape: the gradient stops at the projector's input.
  const trainVision = opts.trainVision ?? true;
  const dec = model.decoder;
  const seq = ex.inputIds;
  const n = seq.length - 1;
  const inputs = seq.slice(0, n);
  // Logit row p predicts token p + 1.
  const rows: number[] = [];
  const targets: number[] = [];
  const firstRows = new Set<number>();
  for (const [start, end] of ex.answerSpans) {
    if (!(start >= 1 && end > start && end <= seq.length))
      throw new RangeError(`answer span [${start}, ${end}) is outside the ${seq.length}-token sequence`);
    firstRows.add(start - 1);
    for (let p = start; p < end; p++) {
      rows.push(p - 1);
      targets.push(seq[p]!);
    }
  }
  const enc = await model.encodeImage(kernels, ex.pixels, { tape: grads !== null && trainVision });
  const embeds = model.buildInputsEmbeds(inputs, enc);
  const positions = model.positionIds(inputs, ex.layout);
  const out = await dec.forward(kernels, embeds, positions, dec.newCache(n), {
    tape: grads !== null,
    logitRows: rows,
  });
  const V = model.info.vocabSize;
  const dLogits = new Float32Array(rows.length * V);
  let loss = 0;
  let firstTokenCorrect = false;
  let answersCorrect = 0;
  rows.forEach((row, j) => {
    const target = targets[j]!;
    const ce = crossEntropy(out.logits.subarray(j * V, (j + 1) * V), target);
    loss += ce.loss / rows.length;
    if (firstRows.has(row) && ce.argmax === target) {
      answersCorrect++;
      if (j === 0) firstTokenCorrect = true;
    }
    for (let i = 0; i < V; i++) dLogits[j * V + i] = (ce.grad(i) * scale) / rows.length;
  });
  if (grads) {
    const back = await dec.backwardFromLogits(kernels, out.tape!, rows, dLogits, { grads });
    const imageId = model.info.imageTokenId;
    dec.embedBackward(inputs, back.dInputsEmbeds, grads, (id) => id === imageId);
    const dFeatures = model.imageFeaturesGrad(inputs, back.dInputsEmbeds);
    await model.imageBackward(kernels, enc, dFeatures, { grads, frozenTower: !trainVision });
  }
  return { loss, firstTokenCorrect, answersCorrect, answers: ex.answerSpans.length };
}
