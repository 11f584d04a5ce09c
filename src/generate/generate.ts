/**
 * KV-cache generation with full capture: one prefill over the prompt, then one single-token step per new
 * token. Every LLM attention row is kept, so the result holds the causal attention over the final sequence
 * exactly as Hugging Face's stepwise `output_attentions` returns it. Every row goes in with the position ids the
 * model gives for it (1-D, or M-RoPE's three axes with their offset after the image).
 */
import type { Kernels } from "../kernels/types.js";
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

/** Square attention store sized for the longest possible run, compacted to the final length at the end. */
class AttentionStore {
  readonly layers: Float32Array[];

  constructor(
    nLayers: number,
    readonly heads: number,
    readonly cap: number,
  ) {
    this.layers = Array.from({ length: nLayers }, () => new Float32Array(heads * cap * cap));
  }

  /** probs [heads, n, len] for rows start … start+n−1. */
  write(layer: number, probs: Float32Array, start: number, n: number, len: number): void {
    const dst = this.layers[layer];
    for (let h = 0; h < this.heads; h++) {
      for (let i = 0; i < n; i++) {
        const src = (h * n + i) * len;
        dst.set(probs.subarray(src, src + len), (h * this.cap + start + i) * this.cap);
      }
    }
  }

  compact(S: number): Float32Array[] {
    if (S === this.cap) return this.layers;
    return this.layers.map((a) => {
      const out = new Float32Array(this.heads * S * S);
      for (let h = 0; h < this.heads; h++) {
        for (let i = 0; i < S; i++)
          out.set(
            a.subarray((h * this.cap + i) * this.cap, (h * this.cap + i) * this.cap + S),
            (h * S + i) * S,
          );
      }
      return out;
    });
  }
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
  const store = new AttentionStore(model.info.llmLayers, model.info.llmHeads, cap);
  const random = seededRandom(opts.seed);
  const sampling = { temperature: opts.temperature, topP: opts.topP };
  const stop = new Set(opts.stopIds);
  const timings: Record<string, number> = {};

  let t0 = performance.now();
  opts.onProgress?.("prefill", 0, T);
  const embeds = model.buildInputsEmbeds(inputIds, image);
  const pre = await dec.forward(kernels, embeds, model.positionIds(inputIds, layout), cache);
  pre.attentions.forEach((p, l) => {
    store.write(l, p, 0, T, T);
  });
  timings.prefill = performance.now() - t0;
  opts.onProgress?.("prefill", T, T);

  const generatedIds: number[] = [];
  const stepLogits: Float32Array[] = [pre.logits];
  let next = chooseToken(pre.logits, sampling, random);
  generatedIds.push(next);
  opts.onToken?.(0, next);
  t0 = performance.now();
  const seq = [...inputIds];
  while (generatedIds.length < opts.maxNewTokens && !stop.has(next)) {
    const pos = cache.length;
    seq.push(next);
    const step = await dec.forward(kernels, dec.embed([next]), model.positionIds(seq, layout, pos), cache);
    step.attentions.forEach((p, l) => {
      store.write(l, p, pos, 1, pos + 1);
    });
    stepLogits.push(step.logits);
    next = chooseToken(step.logits, sampling, random);
    generatedIds.push(next);
    opts.onToken?.(generatedIds.length - 1, next);
    opts.onProgress?.("decode", generatedIds.length, opts.maxNewTokens);
  }
  timings.decode = performance.now() - t0;
  const S = T + generatedIds.length - 1;
  return { inputIds, generatedIds, stepLogits, llmAttn: store.compact(S), seqLen: S, timingsMs: timings };
}
