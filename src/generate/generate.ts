/**
 * KV-cache generation with full capture: one prefill over the prompt, then one single-token step per new
 * token. Every LLM attention row is kept, so the result holds the causal attention over the final sequence
 * exactly as Hugging Face's stepwise `output_attentions` returns it. Every row goes in with the position ids the
 * model gives for it (1-D, or M-RoPE's three axes with their offset after the image).
 */
import type { Kernels } from "../kernels/types.js";
import type { KvCache } from "../models/decoder.js";
import type { ImageLayout } from "../models/image-layout.js";
import { LayerTapes } from "../models/tape-store.js";
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
  /**
   * Bytes of the prefill's attention kept in memory until it is read; later layers wait in an unlinked file
   * under `TMPDIR` (default: all in memory). At 7B sizes the prefill's attention is ~1.4 GB.
   */
  attentionMemoryBytes?: number;
  onToken?: (index: number, id: number) => void;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface GenerationTrace {
  inputIds: number[];
  generatedIds: number[];
  /** The scores that chose each generated token, [G, vocab]. */
  stepLogits: Float32Array[];
  /** Every LLM attention row, per layer [heads, S, S] on request; `dispose()` it when done. */
  llmAttn: GenerationAttention;
  seqLen: number;
  timingsMs: Record<string, number>;
}

/**
 * Every LLM attention row of a generation, assembled into [heads, S, S] one layer at a time when asked for
 * (`take`). The prefill's [heads, T, T] blocks and the steps' [heads, 1, len] rows are kept as the decoder
 * returned them (no copy); the prefill's blocks past the memory budget wait in a file. At 7B sizes the
 * prefill's blocks are ~1.4 GB: written out layer by layer, a run never holds more than one layer's square.
 */
export class GenerationAttention {
  private readonly prefill: LayerTapes<{ probs: Float32Array }>;
  private readonly steps: Float32Array[][];

  constructor(
    readonly layers: number,
    readonly heads: number,
    readonly promptLength: number,
    memoryBytes?: number,
  ) {
    this.prefill = new LayerTapes({ memoryBytes, what: "the prefill's attention" });
    this.steps = Array.from({ length: layers }, () => []);
  }

  /** The prefill's probabilities of the next layer, [heads, T, T] (layers come in order). */
  addPrefill(layer: number, probs: Float32Array): void {
    if (layer !== this.prefill.length)
      throw new Error(`prefill attention of layer ${layer} came after ${this.prefill.length} layers`);
    this.prefill.push({ probs });
  }

  /** One decode step's probabilities of one layer, [heads, 1, T + k + 1] for the k-th step. */
  addStep(layer: number, probs: Float32Array): void {
    this.steps[layer].push(probs);
  }

  /** Layer l as [heads, S, S], zero above the diagonal; the store lets go of the layer (once per layer). */
  take(l: number): Float32Array {
    if (l >= this.prefill.length) throw new Error(`attention of layer ${l} missing from the prefill`);
    const T = this.promptLength;
    const H = this.heads;
    const block = this.prefill.get(l).probs;
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
    this.prefill.release(l);
    this.steps[l] = [];
    return out;
  }

  /** Every layer at once (small models; at 7B sizes take them one by one). */
  takeAll(): Float32Array[] {
    return Array.from({ length: this.layers }, (_, l) => this.take(l));
  }

  /** Lets go of every layer left and of the file, if one was needed. */
  dispose(): void {
    this.prefill.dispose();
    this.steps.forEach((_, l) => {
      this.steps[l] = [];
    });
  }
}

/** The prefill: every prompt row through the decoder, each layer's attention handed to the store; the last logits. */
async function prefill(
  model: VisionLanguageModel,
  kernels: Kernels,
  inputIds: number[],
  image: ImageEncoding,
  layout: ImageLayout,
  cache: KvCache,
  store: GenerationAttention,
): Promise<Float32Array> {
  const embeds = model.buildInputsEmbeds(inputIds, image);
  const pre = await model.decoder.forward(kernels, embeds, model.positionIds(inputIds, layout), cache, {
    onAttention: (l, p) => store.addPrefill(l, p),
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
  const store = new GenerationAttention(
    model.info.llmLayers,
    model.info.llmHeads,
    T,
    opts.attentionMemoryBytes,
  );
  const random = seededRandom(opts.seed);
  const sampling = { temperature: opts.temperature, topP: opts.topP };
  const stop = new Set(opts.stopIds);
  const timings: Record<string, number> = {};

  const generatedIds: number[] = [];
  const stepLogits: Float32Array[] = [];
  try {
    let t0 = performance.now();
    opts.onProgress?.("prefill", 0, T);
    const prefillLogits = await prefill(model, kernels, inputIds, image, layout, cache, store);
    timings.prefill = performance.now() - t0;
    opts.onProgress?.("prefill", T, T);

    stepLogits.push(prefillLogits);
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
  } catch (e) {
    store.dispose(); // a spilled prefill leaves no file open in a long-lived server
    throw e;
  }
  return {
    inputIds,
    generatedIds,
    stepLogits,
    llmAttn: store,
    seqLen: T + generatedIds.length - 1,
    timingsMs: timings,
  };
}
