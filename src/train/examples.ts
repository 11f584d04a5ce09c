/** Training examples from the synthetic shapes data set, as the model's own processor prepares them. */
import type { VisionLanguageModel } from "../models/types.js";
import { type SampleOptions, sampleConversation } from "../shapes/dataset.js";
import { EOS_TOKEN_ID } from "../shapes/tokenizer.js";
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
export function makeExample(
  model: VisionLanguageModel,
  source: ExampleSource,
  index: number,
): TrainingExample {
  const conv = sampleConversation(source.seed, index, source.turns ?? 1, source.options);
  const { pixels, layout } = model.preprocess(conv.scene.image, "default");
  const tok = model.text.tokenizer;
  const words = (text: string) => tok.encode(text, { add_special_tokens: false }).ids;
  const inputIds: number[] = [];
  const answerSpans: [number, number][] = [];
  conv.qas.forEach((qa, t) => {
    if (t === 0) inputIds.push(...model.text.encodePrompt(qa.question, layout.token_count).inputIds);
    else inputIds.push(...words(`USER: ${qa.question} ASSISTANT:`));
    const start = inputIds.length;
    inputIds.push(...words(qa.answer), EOS_TOKEN_ID);
    answerSpans.push([start, inputIds.length]);
  });
  return { inputIds, answerSpans, pixels, layout };
}
