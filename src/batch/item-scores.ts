/**
 * What the case study measures on one run: LVLM-Interpret's image reliance (its "top-3 question words vs max
 * image relevancy" score), a continuous reliance (the share of relevancy mass on image tokens vs the question's
 * tokens), the top question words, and the pointing game against a box — all from the stored LLM relevancy.
 */
import { pointingHit } from "../interpret/grounding-scores.js";
import {
  normalizeRow,
  type RelevancyMode,
  relevancyRecord,
  relevancyTensorName,
} from "../interpret/relevancy/index.js";
import { type QuestionSpan, topWordsVsImage } from "../interpret/views/relevancy-views.js";
import { isSeparatorToken } from "../interpret/views/words.js";
import type { Run } from "../run/run-dir.js";

export interface ItemScores {
  reliance: {
    token: number;
    lvlm: number;
    lvlm_mean: number;
    image_share: number;
    image_share_mean: number;
    image_max: number;
  };
  top_words: { word: string; value: number }[];
  pointing: { box: [number, number, number, number]; hit: number } | null;
}

/**
 * Share of the (normalised) row's mass on image tokens, against the question's tokens (`span`; default the
 * prompt's text after the image; separators skipped): 1 = all of it on the image.
 */
export function imageShare(
  row: ArrayLike<number>,
  p: number,
  promptTokens: string[],
  imagePositions: readonly number[],
  span: QuestionSpan = {},
): number {
  const r = normalizeRow(
    Array.from({ length: p + 1 }, (_, j) => row[j]),
    p,
  );
  let image = 0;
  for (const q of imagePositions) image += Math.max(0, r[q]);
  let text = 0;
  const from = span.from ?? imagePositions[imagePositions.length - 1] + 1;
  const to = span.to ?? promptTokens.length;
  for (let i = from; i < to; i++) if (!isSeparatorToken(promptTokens[i])) text += Math.max(0, r[i]);
  return image + text > 0 ? image / (image + text) : 0;
}

/** Fraction of each image token's box (original pixels; NaN = no place) inside `box`. */
export function boxCoverage(tokenBoxes: Float32Array, box: readonly number[]): Float32Array {
  const n = tokenBoxes.length / 4;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const [x0, y0, x1, y1] = tokenBoxes.subarray(4 * i, 4 * i + 4);
    if (!(x1 > x0 && y1 > y0)) continue;
    const w = Math.max(0, Math.min(x1, box[2]) - Math.max(x0, box[0]));
    const h = Math.max(0, Math.min(y1, box[3]) - Math.max(y0, box[1]));
    out[i] = (w * h) / ((x1 - x0) * (y1 - y0));
  }
  return out;
}

/**
 * Number of tokens the chat template puts after the question ("ASSISTANT:" …). Prompts with the question
 * "zebra" and "zebra zebra" share a suffix of the tail plus one "zebra" (whose length is the difference of
 * their lengths); this holds for word-level vocabularies that map both to <unk> as for sub-word ones.
 */
export function templateTailLength(encode: (question: string) => number[]): number {
  const a = encode("zebra");
  const b = encode("zebra zebra");
  let k = 0;
  while (k < a.length && k < b.length && a[a.length - 1 - k] === b[b.length - 1 - k]) k++;
  return Math.max(0, k - (b.length - a.length));
}

/**
 * Scores of a run whose LLM relevancy (mode) is stored. `answerTokens`: generated-token indices of the answer
 * (stop tokens left out); the first is the one the per-token scores describe.
 */
export function scoreRun(
  run: Run,
  mode: RelevancyMode,
  promptTokens: string[],
  answerTokens: number[],
  box: [number, number, number, number] | null,
  span: QuestionSpan = {},
): ItemScores {
  const m = run.manifest;
  const rec = relevancyRecord(run, mode);
  const have = new Set(rec?.computed.llm ?? []);
  const tokens = answerTokens.filter((t) => have.has(t));
  if (tokens.length === 0)
    throw new Error(`${run.dir}: no LLM relevancy (${mode}) stored for the answer's tokens`);
  const rel = run.tensor(relevancyTensorName("llm", mode));
  const S = rel.shape[1];
  const T = m.input_ids.length;
  const { positions, boxes } = run.imageTokens();
  const per = tokens.map((t) => {
    const row = rel.data.subarray(t * S, (t + 1) * S);
    const p = T - 1 + t;
    return {
      t,
      row,
      p,
      words: topWordsVsImage(row, p, promptTokens, positions, span),
      share: imageShare(row, p, promptTokens, positions, span),
    };
  });
  const first = per[0];
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  let pointing: ItemScores["pointing"] = null;
  if (box) {
    const r = normalizeRow(
      Array.from({ length: first.p + 1 }, (_, j) => first.row[j]),
      first.p,
    );
    const map = Float32Array.from(positions, (q) => r[q]);
    pointing = { box, hit: pointingHit(map, boxCoverage(boxes, box)) };
  }
  return {
    reliance: {
      token: first.t,
      lvlm: first.words.reliance,
      lvlm_mean: mean(per.map((x) => x.words.reliance)),
      image_share: first.share,
      image_share_mean: mean(per.map((x) => x.share)),
      image_max: first.words.imageMax,
    },
    top_words: first.words.bars
      .filter((b) => b.label !== "max_img")
      .map((b) => ({ word: b.label, value: b.value })),
    pointing,
  };
}
