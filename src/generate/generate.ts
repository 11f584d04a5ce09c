/**
 * KV-cache generation with full capture: one prefill over the prompt, then one single-token step per new
 * token. Every LLM attention row is kept, so the result holds the causal attention over the final sequence
 * exactly as Hugging Face's stepwise `output_attentions` returns it. Every row goes in with the position ids the
 * model gives for it (1-D, or M-RoPE's three axes with their offset after the image).
 */
import type { Kernels } from "../kernels/types.js";
import type { KvCache } from "../models/decoder.js";
import type { ImageLayout } from "../models/image-layout.js";
import type { ImageEncoding, VisionLanguageModel } from "../models/types.js";
import { chooseToken, seededRandom } from "./sampling.js";

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  seed: number;
  /** Token ids that end generation (the stop token itself is kept, as Hugging Face does). */
  stopIds: number[];
  onToken?: (index: number, id: number) => void;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface GenerationTrace {
  inputIds: number[];
  generatedIds: number[];
  /** The scores that chose each generated token, [G, vocab]. */
  stepLogits: Float32Array[];
  /** Per LLM layer: [heads, S, S] with S = T + G − 1, zero above the diagonal. */
  llmAttn: Float32Array[];
  seqLen: number;
  timingsMs: Record<string, number>;
}

/**
 * Every LLM attention row of a generation, assembled into [heads, S, S] per layer at the end. The prefill's
 * [heads, T, T] blocks and the steps' [heads, 1, len] rows are kept as the decoder returned them (no copy),
 * and each layer is released as soon as it is assembled: at 7B sizes the prefill block alone is ~1.4 GB, so
 * a square buffer sized for the longest run plus a compacted copy would hold three times that at the end.
 */
class AttentionStore {
  private readonly prefill: (Float32Array | null)[];
  private readonly steps: Float32Array[][];

  constructor(
    nLayers: number,
    readonly heads: number,
    readonly promptLength: number,
  ) {
    this.prefill = new Array(nLayers).fill(null);
    this.steps = Array.from({ length: nLayers }, () => []);
  }

  /** The prefill's probabilities of one layer, [heads, T, T]. */
  addPrefill(layer: number, probs: Float32Array): void {
    this.prefill[layer] = probs;
  }

  /** One decode step's probabilities of one layer, [heads, 1, T + k + 1] for the k-th step. */
  addStep(layer: number, probs: Float32Array): void {
    this.steps[layer].push(probs);
  }

  /** Per layer [heads, S, S], S = T + steps, zero above the diagonal; the store is empty afterwards. */
  assemble(): Float32Array[] {
    const T = this.promptLength;
    const H = this.heads;
    return this.prefill.map((block, l) => {
      if (!block) throw new Error(`attention of layer ${l} missing from the prefill`);
      const rows = this.steps[l];
      const S = T + rows.length;
      const out = new Float32Array(H * S * S);
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < T; i++) {
          out.set(block.subarray((h * T + i) * T, (h * T + i + 1) * T), (h * S + i) * S);
        }
        rows.forEach((row, k) => {
          const len = T + k + 1;
          out.set(row.subarray(h * len, (h + 1) * len), (h * S + T + k) * S);
        });
      }
      this.prefill[l] = null;
      this.steps[l] = [];
      return out;
    });
  }
}

/** The prefill: every prompt row through the decoder, its attention handed to the store; the last logits. */
async function prefill(
  model: VisionLanguageModel,
  kernels: Kernels,
  inputIds: number[],
  image: ImageEncoding,
  layout: ImageLayout,
  cache: KvCache,
  store: AttentionStore,
): Promise<Float32Array> {
  const embeds = model.buildInputsEmbeds(inputIds, image);
  const pre = await model.decoder.forward(kernels, embeds, model.positionIds(inputIds, layout), cache);
  pre.attentions.forEach((p, l) => {
    store.addPrefill(l, p);
  });
  return pre.logits;
}

export async function generate(
  model: VisionLanguageModel,
  kernels: Kernels,
  inputIds: number[],
  image: ImageEncoding,
  layout: ImageLayout,
  opts: GenerateOptions,
): Promise<GenerationTrace> {
  const dec = model.decoder;
  const T = inputIds.length;
  const cap = T + Math.max(1, opts.maxNewTokens) - 1;
  const cache = dec.newCache(cap + 1);
  const store = new AttentionStore(model.info.llmLayers, model.info.llmHeads, T);
  const random = seededRandom(opts.seed);
  const sampling = { temperature: opts.temperature, topP: opts.topP };
  const stop = new Set(opts.stopIds);
  const timings: Record<string, number> = {};

  let t0 = performance.now();
  opts.onProgress?.("prefill", 0, T);
  const prefillLogits = await prefill(model, kernels, inputIds, image, layout, cache, store);
  timings.prefill = performance.now() - t0;
  opts.onProgress?.("prefill", T, T);

  const generatedIds: number[] = [];
  const stepLogits: Float32Array[] = [prefillLogits];
  let next = chooseToken(prefillLogits, sampling, random);
  generatedIds.push(next);
  opts.onToken?.(0, next);
  t0 = performance.now();
  const seq = [...inputIds];
  while (generatedIds.length < opts.maxNewTokens && !stop.has(next)) {
    const pos = cache.length;
    seq.push(next);
    const step = await dec.forward(kernels, dec.embed([next]), model.positionIds(seq, layout, pos), cache);
    step.attentions.forEach((p, l) => {
      store.addStep(l, p);
    });
    stepLogits.push(step.logits);
    next = chooseToken(step.logits, sampling, random);
    generatedIds.push(next);
    opts.onToken?.(generatedIds.length - 1, next);
    opts.onProgress?.("decode", generatedIds.length, opts.maxNewTokens);
  }
  timings.decode = performance.now() - t0;
  const llmAttn = store.assemble();
  return {
    inputIds,
    generatedIds,
    stepLogits,
    llmAttn,
    seqLen: T + generatedIds.length - 1,
    timingsMs: timings,
  };
}
