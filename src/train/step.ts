/**
 * One training example through the ordinary model code: forward with a tape over prompt + answer (teacher
 * forcing), cross-entropy on the answer tokens (and the end-of-sequence token that stops generation), then
 * the hand-written backward into weight gradients of the whole model, vision tower included.
 */
import type { Kernels } from "../kernels/types.js";
import type { WeightGradients } from "../models/gradients.js";
import type { LlavaModel } from "../models/llava.js";

export interface TrainingExample {
  /** Expanded prompt ids (one image token per feature), as `TextProcessor.encodePrompt` gives them. */
  promptIds: number[];
  /** Answer ids followed by the stop token. */
  answerIds: number[];
  pixelValues: Float32Array;
}

export interface StepResult {
  /** Mean cross-entropy over the answer tokens. */
  loss: number;
  /** Whether greedy decoding's first answer token (argmax at the last prompt position) is right. */
  firstTokenCorrect: boolean;
}

/**
 * Loss and (when `grads` is given) its gradients for one example; gradients are scaled by `scale` (e.g.
 * 1/batch) and added to what `grads` already holds.
 */
export async function trainingStep(
  model: LlavaModel,
  kernels: Kernels,
  ex: TrainingExample,
  grads: WeightGradients | null,
  scale = 1,
): Promise<StepResult> {
  const dec = model.decoder;
  const seq = [...ex.promptIds, ...ex.answerIds];
  const n = seq.length - 1;
  const inputs = seq.slice(0, n);
  const T = ex.promptIds.length;
  const rows = ex.answerIds.map((_, j) => T - 1 + j);
  const enc = await model.encodeImage(kernels, ex.pixelValues, undefined, { tape: grads !== null });
  const embeds = model.buildInputsEmbeds(inputs, enc.features, enc.count);
  const out = await dec.forward(kernels, embeds, n, dec.newCache(n), {
    tape: grads !== null,
    logitRows: rows,
  });
  const V = dec.cfg.vocabSize;
  const dLogits = new Float32Array(rows.length * V);
  let loss = 0;
  let firstTokenCorrect = false;
  rows.forEach((_, j) => {
    const z = out.logits.subarray(j * V, (j + 1) * V);
    let m = Number.NEGATIVE_INFINITY;
    let arg = 0;
    for (let i = 0; i < V; i++) {
      if (z[i] > m) {
        m = z[i];
        arg = i;
      }
    }
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(z[i] - m);
    const target = ex.answerIds[j];
    loss += -(z[target] - m - Math.log(sum)) / rows.length;
    if (j === 0) firstTokenCorrect = arg === target;
    for (let i = 0; i < V; i++)
      dLogits[j * V + i] = ((Math.exp(z[i] - m) / sum - (i === target ? 1 : 0)) * scale) / rows.length;
  });
  if (grads) {
    const back = await dec.backwardFromLogits(kernels, out.tape!, rows, dLogits, { grads });
    const imageId = model.config.imageTokenIndex;
    dec.embedBackward(inputs, back.dInputsEmbeds, grads, (id) => id === imageId);
    const dFeatures = model.imageFeaturesGrad(inputs, back.dInputsEmbeds);
    await model.imageBackward(kernels, enc, dFeatures, { grads });
  }
  return { loss, firstTokenCorrect };
}
