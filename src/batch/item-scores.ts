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
import {
  imageQuestionSplit,
  type QuestionSpan,
  topWordsVsImage,
} from "../interpret/views/relevancy-views.js";
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
      share: imageQuestionSplit(row, p, promptTokens, positions, span).imageShare,
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
