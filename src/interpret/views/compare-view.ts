/**
 * Two runs side by side (the web app's compare view): for one answer token of each, its LLM relevancy map on
 * its own picture, how its relevancy splits between the image and the question, and — only where both runs
 * show the same picture through the same image-token layout — the difference of the two maps.
 *
 * Maps are compared as distributions: each map's non-negative part divided by its total over the image
 * tokens (the share of the token's image relevancy on each patch), so two runs whose relevancy differs in
 * overall scale still compare patch by patch. The difference is A − B on that scale (range −1…1).
 */
import type { CompareSide, CompareView, MapDifference, RelevancyShare } from "../../contracts/http.js";
import type { Run } from "../../run/run-dir.js";
import { normalizeRow, type RelevancyMode, relevancyTensorName } from "../relevancy/index.js";
import { imageGeometry } from "./image-tokens.js";
import { RelevancyViewError, relevancyStatus } from "./relevancy-panels.js";
import { imageQuestionSplit, topWordsVsImage } from "./relevancy-views.js";

// The view's shapes are the HTTP contracts (contracts/http.ts).
export type { CompareSide, CompareView, RelevancyShare };

/** A map as a distribution over image tokens: non-negative values over their sum (null stays null). */
export function mapShares(map: readonly (number | null)[]): (number | null)[] {
  let sum = 0;
  for (const v of map) if (v !== null && Number.isFinite(v)) sum += Math.max(0, v);
  return map.map((v) => (v === null || !Number.isFinite(v) ? null : sum > 0 ? Math.max(0, v) / sum : 0));
}

/** What the difference needs to know about one side's picture. */
export interface PictureKey {
  /** A digest of the original image file's bytes. */
  digest: string;
  width: number;
  height: number;
  /** Each image token's box on the original picture (null: no place). */
  boxes: readonly (readonly number[] | null)[];
}

/** Null when the two pictures and layouts are the same; otherwise why no difference map can be drawn. */
export function differenceProblem(a: PictureKey, b: PictureKey): string | null {
  if (a.digest !== b.digest) return "the runs show different pictures, so their maps have no common patches";
  if (a.width !== b.width || a.height !== b.height || a.boxes.length !== b.boxes.length)
    return `the same picture split into different image tokens (${a.boxes.length} vs ${b.boxes.length}): compare runs made with the same image mode`;
  for (let i = 0; i < a.boxes.length; i++) {
    const x = a.boxes[i];
    const y = b.boxes[i];
    if ((x === null) !== (y === null) || (x && y && x.some((v, k) => Math.abs(v - y[k]) > 1e-6)))
      return "the same picture with image tokens in different places: compare runs made with the same image mode";
  }
  return null;
}

/** A − B of two maps on the same image tokens, as shares (null where either has no value). */
export function mapDifference(a: readonly (number | null)[], b: readonly (number | null)[]): MapDifference {
  if (a.length !== b.length) throw new RangeError(`maps of ${a.length} and ${b.length} image tokens`);
  const pa = mapShares(a);
  const pb = mapShares(b);
  let absMax = 0;
  const map = pa.map((x, i) => {
    const y = pb[i];
    if (x === null || y === null) return null;
    absMax = Math.max(absMax, Math.abs(x - y));
    return x - y;
  });
  return { map, absMax };
}

/** The inputs of one side, read from a run (`promptTokens`: the prompt's token strings, one per input id). */
export interface CompareRunInput {
  id: string;
  run: Run;
  promptTokens: string[];
  /** A digest of the run's original image file. */
  imageDigest: string;
  /**
   * One past the question's last prompt position: the chat template's tail ("ASSISTANT:") is not question
   * (the prompt length less `templateTailLength`, as the batch report counts it); default the prompt's end.
   */
  questionEnd?: number;
}

function side(s: CompareRunInput, mode: RelevancyMode, token: number, label: string): CompareSide {
  const m = s.run.manifest;
  const done = relevancyStatus(s.run).computed[mode]?.llm ?? [];
  if (!done.includes(token))
    throw new RelevancyViewError(
      `run ${label} ("${s.id}"): LLM relevancy (${mode}) of answer token ${token} is not computed yet; compute it first`,
    );
  const t = s.run.tensor(relevancyTensorName("llm", mode));
  const width = t.shape[1];
  const raw = t.data.subarray(token * width, (token + 1) * width);
  const T = m.input_ids.length;
  const p = T - 1 + token;
  const r = normalizeRow(raw, p, p + 1);
  const { positions } = s.run.imageTokens();
  const span = { to: s.questionEnd };
  const map = mapShares(Array.from(positions, (q) => r[q]));
  const finite = map.filter((v): v is number => v !== null);
  return {
    id: s.id,
    prompt: m.prompt,
    answer: m.answer,
    tokens: m.generated_tokens,
    token,
    tokenText: m.generated_tokens[token] ?? "",
    map,
    min: finite.length ? Math.min(...finite) : 0,
    max: finite.length ? Math.max(...finite) : 0,
    share: imageQuestionSplit(raw, p, s.promptTokens, positions, span),
    reliance: topWordsVsImage(raw, p, s.promptTokens, positions, span).reliance,
  };
}

function pictureKey(s: CompareRunInput): PictureKey {
  const g = imageGeometry(s.run.imageTokens());
  return { digest: s.imageDigest, width: g.width, height: g.height, boxes: g.boxes };
}

/** The compare view of answer token `token` of two runs (both must have its LLM relevancy computed). */
export function compareRuns(
  a: CompareRunInput,
  b: CompareRunInput,
  mode: RelevancyMode,
  token: number,
): CompareView {
  const sa = side(a, mode, token, "A");
  const sb = side(b, mode, token, "B");
  const reason = differenceProblem(pictureKey(a), pictureKey(b));
  return {
    mode,
    token,
    sameImage: a.imageDigest === b.imageDigest,
    sameQuestion: sa.prompt === sb.prompt,
    a: sa,
    b: sb,
    difference: reason ? null : mapDifference(sa.map, sb.map),
    differenceReason: reason,
  };
}
