/** Training examples from the synthetic shapes data set, as the model's own processor prepares them. */
import { preprocessImage } from "../hf/image-processor.js";
import type { LlavaModel } from "../models/llava.js";
import { type SampleOptions, sampleConversation } from "../shapes/dataset.js";
import { EOS_TOKEN_ID } from "../shapes/tokenizer.js";
import { imageProcessorFor } from "../trace.js";
import type { TrainingExample } from "./step.js";

export interface ExampleSource {
  seed: number;
  /** Questions per image (default 1: exactly the inference prompt). */
  turns?: number;
  /** Scene and question options (default: the data set's defaults). */
  options?: SampleOptions;
}

/**
 * The index-th training conversation: the first turn is the chat template's prompt for one question (what
 * inference sees), each answer ends with the stop token, and later turns follow LLaVA-1.5's multi-turn layout
 * `… ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>`.
 */
export function makeExample(model: LlavaModel, source: ExampleSource, index: number): TrainingExample {
  const conv = sampleConversation(source.seed, index, source.turns ?? 1, source.options);
  const px = preprocessImage(conv.scene.image, imageProcessorFor(model), "default").pixelValues;
  const tok = model.text.tokenizer;
  const words = (text: string) => tok.encode(text, { add_special_tokens: false }).ids;
  const inputIds: number[] = [];
  const answerSpans: [number, number][] = [];
  conv.qas.forEach((qa, t) => {
    if (t === 0) inputIds.push(...model.text.encodePrompt(qa.question, model.imageTokenCount).inputIds);
    else inputIds.push(...words(`USER: ${qa.question} ASSISTANT:`));
    const start = inputIds.length;
    inputIds.push(...words(qa.answer), EOS_TOKEN_ID);
    answerSpans.push([start, inputIds.length]);
  });
  return { inputIds, answerSpans, pixelValues: px };
}
