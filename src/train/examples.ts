/** Training examples from the synthetic shapes data set, as the model's own processor prepares them. */
import { preprocessImage } from "../hf/image-processor.js";
import type { LlavaModel } from "../models/llava.js";
import { sample } from "../shapes/dataset.js";
import { EOS_TOKEN_ID } from "../shapes/tokenizer.js";
import { imageProcessorFor } from "../trace.js";
import type { TrainingExample } from "./step.js";

export interface ExampleSource {
  seed: number;
}

export function makeExample(model: LlavaModel, source: ExampleSource, index: number): TrainingExample {
  const s = sample(source.seed, index);
  const px = preprocessImage(s.scene.image, imageProcessorFor(model), "default").pixelValues;
  const enc = model.text.encodePrompt(s.qa.question, model.imageTokenCount);
  const answer = model.text.tokenizer.encode(s.qa.answer, { add_special_tokens: false }).ids;
  return { promptIds: enc.inputIds, answerIds: [...answer, EOS_TOKEN_ID], pixelValues: px };
}
