/** The one forward pass every backward of a relevancy request runs on. */
import type { Kernels } from "../../kernels/types.js";
import type { DecoderLayerTape, DecoderTape } from "../../models/decoder.js";
import { LayerTapes } from "../../models/tape-store.js";
import type { ImageEncoding, VisionLanguageModel } from "../../models/types.js";
import type { VisionLayerTape } from "../../models/vision.js";
import type { RelevancyPlan } from "./plan.js";
import { type RelevancyInputs, TAPE_MEMORY_BYTES } from "./types.js";

/** The one forward every backward of a request runs on. */
export interface ForwardTape {
  model: VisionLanguageModel;
  kernels: Kernels;
  inputIds: number[];
  generatedIds: number[];
  /** The image encoding, with the tower's activations when vision maps are wanted. */
  image: ImageEncoding;
  llm: DecoderTape;
  /** Frees the tape (closes the file its spilled layers wait in). */
  dispose(): void;
}

/**
 * One forward over positions 0 … T+tmax−1 with every activation kept: position p's activations do not
 * depend on later positions, so the backward of token t runs on the prefix 0 … T+t−1 of this tape. Past
 * `memoryBytes`, the layers of the LLM's tape and of each tower pass's wait in a temporary file.
 */
export async function recordForward(
  model: VisionLanguageModel,
  kernels: Kernels,
  inputs: RelevancyInputs,
  plan: RelevancyPlan,
  memoryBytes?: number,
): Promise<ForwardTape> {
  const { inputIds, generatedIds } = inputs;
  const nAll = plan.nAll;
  const seq = [...inputIds, ...generatedIds].slice(0, nAll);
  // Every store made here (the LLM's, one per tower pass) is disposed with the tape, or on failure.
  const stores: LayerTapes<object>[] = [];
  const store = <T extends object>(): LayerTapes<T> => {
    const s = new LayerTapes<T>({
      memoryBytes: memoryBytes ?? TAPE_MEMORY_BYTES,
      otherwise: "keep the tapes in memory (relevancy --tape-memory all)",
    });
    stores.push(s);
    return s;
  };
  const dispose = () => {
    for (const s of stores) s.dispose();
  };
  try {
    const image = await model.encodeImage(kernels, inputs.pixels, {
      tape: plan.needVision,
      tapeLayers: () => store<VisionLayerTape>(),
      returnAttentions: false,
      layout: inputs.layout,
    });
    const embeds = model.buildInputsEmbeds(seq, image);
    const dec = model.decoder;
    const fwd = await dec.forward(
      kernels,
      embeds,
      model.positionIds(seq, inputs.layout),
      dec.newCache(nAll),
      {
        tape: "input-gradients",
        tapeLayers: store<DecoderLayerTape>(),
        returnAttentions: false,
        logitRows: [nAll - 1],
      },
    );
    if (!fwd.tape) throw new Error("internal: the decoder returned no tape");
    return { model, kernels, inputIds, generatedIds, image, llm: fwd.tape, dispose };
  } catch (e) {
    dispose();
    throw e;
  }
}
