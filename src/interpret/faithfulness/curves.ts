/**
 * Deletion and insertion curves of one answer token (Petsiuk et al. 2018, RISE): the token's probability,
 * teacher-forced (the prompt and the answer tokens before it fed as they were generated), as the top
 * patches of a map are deleted (deletion: 0 % … 100 % of the located image tokens painted out, see
 * ./perturb.ts) or as only they are kept (insertion: everything else painted out). A faithful map makes the
 * deletion curve fall fast (low AUC) and the insertion curve rise fast (high AUC); a random map is the
 * yardstick. Areas are `curveArea` of src/interpret/grounding-scores.ts, as `bench:grounding` scores them.
 */
import type { RgbImage } from "../../hf/image-decode.js";
import type { ImageMode } from "../../hf/image-processor.js";
import type { Kernels } from "../../kernels/types.js";
import type { ImageLayout } from "../../models/image-layout.js";
import type { PixelValues, VisionLanguageModel } from "../../models/types.js";
import type { Rng } from "../../tensor/rng.js";
import { patchOrder } from "../grounding-scores.js";
import { locatedTokens, paintImageTokens } from "./perturb.js";

/** Softmax probability of `id` in a logits row. */
export function softmaxAt(logits: ArrayLike<number>, id: number): number {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]);
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i] - m);
  return Math.exp(logits[id] - m) / z;
}

/** What the model is asked again and again, with ever other pictures. */
export interface ProbeInput {
  /** The original picture (boxes are in its pixels). */
  picture: RgbImage;
  /** The processor mode the run used. */
  mode: ImageMode;
  /** The image layout (of the unperturbed picture; painting keeps the size, so it holds for every step). */
  layout: ImageLayout;
  /** image_token_boxes: [P, 4]. */
  boxes: Float32Array;
  /** Prompt ids, then the answer tokens before the one asked about (teacher forcing). */
  ids: number[];
  /** The token whose probability is read at the last position. */
  targetId: number;
}

/** The answer token's probability for a picture with some image tokens deleted. */
export class TokenProbe {
  /** Image tokens with a box, in token order. */
  readonly located: number[];
  /** Forward passes run so far (progress). */
  forwards = 0;
  private readonly cache = new Map<string, number>();

  constructor(
    private readonly model: VisionLanguageModel,
    private readonly kernels: Kernels,
    private readonly input: ProbeInput,
  ) {
    this.located = locatedTokens(input.boxes);
    if (this.located.length === 0) throw new RangeError("the image has no located tokens to delete");
  }

  /** Probability of the target token with the image tokens `deleted` painted out. */
  async probability(deleted: readonly number[]): Promise<number> {
    const key = [...deleted].sort((a, b) => a - b).join(",");
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const { model, input } = this;
    const picture = paintImageTokens(input.picture, input.boxes, deleted, model.padColor);
    const p = await this.probabilityOfPixels(model.preprocess(picture, input.mode).pixels);
    this.cache.set(key, p);
    return p;
  }

  /** Probability of the target token for pixel_values as given. */
  async probabilityOfPixels(pixels: PixelValues): Promise<number> {
    const { model, kernels, input } = this;
    const image = await model.encodeImage(kernels, pixels, { layout: input.layout });
    const embeds = model.buildInputsEmbeds(input.ids, image);
    const positions = model.positionIds(input.ids, input.layout);
    const out = await model.decoder.forward(
      kernels,
      embeds,
      positions,
      model.decoder.newCache(input.ids.length),
    );
    this.forwards++;
    return softmaxAt(out.logits, input.targetId);
  }
}

/** Number of tokens deleted (or kept) at step k of `steps`, out of `n`. */
export function stepCount(k: number, steps: number, n: number): number {
  return Math.round((k / steps) * n);
}

/** Located image tokens by decreasing map value (ties: seeded shuffle; NaN values last). */
export function tokenOrder(map: ArrayLike<number>, located: readonly number[], rng: Rng): number[] {
  let min = Number.POSITIVE_INFINITY;
  for (const i of located) if (Number.isFinite(map[i])) min = Math.min(min, map[i]);
  const floor = Number.isFinite(min) ? min - 1 : 0;
  const values = located.map((i) => (Number.isFinite(map[i]) ? map[i] : floor));
  return patchOrder(values, rng).map((j) => located[j]);
}

/** Probabilities at 0, 1/steps, …, 1 of the tokens in `order` deleted, top first. */
export async function deletionCurve(
  probe: TokenProbe,
  order: readonly number[],
  steps: number,
  onStep?: () => void,
): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; k <= steps; k++) {
    out.push(await probe.probability(order.slice(0, stepCount(k, steps, order.length))));
    onStep?.();
  }
  return out;
}

/** Probabilities at 0, 1/steps, …, 1 of only the top tokens of `order` kept (the rest deleted). */
export async function insertionCurve(
  probe: TokenProbe,
  order: readonly number[],
  steps: number,
  onStep?: () => void,
): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; k <= steps; k++) {
    out.push(await probe.probability(order.slice(stepCount(k, steps, order.length))));
    onStep?.();
  }
  return out;
}
