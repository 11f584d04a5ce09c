/**
 * Derived relevancy views (the UI only draws them): image maps (one value per image token; the run's
 * image_token_boxes place them on the original picture), text relevancy over the prompt with the image
 * collapsed to its mean, LVLM-Interpret's "top-3 prompt words vs max image relevancy" bars, and the per-token
 * image-vs-text reliance score behind "tokens with high relevancy to image".
 *
 * Inputs are the rows stored in a run: row p of the raw LLM map (`rel.llm.<mode>`, diagonal entry at index
 * p = T + t − 1) and CLS rows of the ViT maps (`rel.vit|all|all_v2.<mode>`, diagonal at index 0). "Normalised"
 * means LVLM-Interpret's `handle_residual` applied to that row.
 */
import type { RelevancyShare, TextRelevancyEntry, WordsVsImage } from "../../contracts/http.js";
import type { ImageLayout } from "../../models/image-layout.js";
import { normalizeRow } from "../relevancy/index.js";
import { type ImageTokenSource, towerRowsToImageTokens, towerRowToImageTokens } from "./image-tokens.js";
import { averagePaddedRows, groupWords, isSeparatorToken, tokenDisplayText } from "./words.js";

// The text views' shapes are the HTTP contracts (contracts/http.ts).
export type { TextRelevancyEntry, WordsVsImage };

/** One value per image token (NaN where a map has none); the token's place is image_token_boxes[i]. */
export interface ImageMap {
  values: Float32Array;
}

/**
 * The image part of an LLM relevancy row (token t's row p) at the image positions; `normalized` applies
 * handle_residual to the row first (the tool's display).
 */
export function llmImageMap(
  row: ArrayLike<number>,
  p: number,
  imagePositions: readonly number[],
  normalized = false,
): ImageMap {
  const r = normalized ? normalizeRow(row, p, p + 1) : row;
  return { values: Float32Array.from(imagePositions, (q) => r[q]) };
}

/**
 * A ViT-propagated CLS row (index 0 = CLS) on the image tokens through the layout's tower mapping;
 * optionally normalised.
 */
export function vitImageMap(clsRow: ArrayLike<number>, layout: ImageLayout, normalized = false): ImageMap {
  const r = normalized ? normalizeRow(clsRow, 0) : clsRow;
  return { values: towerRowToImageTokens(r, layout) };
}

/** A chain map (one value per tower patch, the CLS token `cls` left out) on the image tokens. */
export function chainImageMap(chain: ArrayLike<number>, layout: ImageLayout, cls: number): ImageMap {
  return { values: towerRowToImageTokens(chain, layout, cls) };
}

/** What a stored vision row holds: `passes` blocks over the tower tokens, and the image tokens' sources. */
export interface TowerRows {
  passes: number;
  /** Tower tokens per pass, class token included. */
  seqLen: number;
  /** Class token index, or −1. */
  cls: number;
  sources: ImageTokenSource[][];
}

/**
 * Per-pass CLS rows (vit / all / all_v2; `chain: false`) or chain rows (`chain: true`, the class token left
 * out of each block) on the image tokens through their sources; CLS rows optionally normalised, each pass on
 * its own (every pass has its own CLS row and diagonal).
 */
export function towerImageMap(
  rows: ArrayLike<number>,
  tower: TowerRows,
  chain: boolean,
  normalized = false,
): ImageMap {
  const { seqLen, cls, sources } = tower;
  if (chain) {
    const width = seqLen - (cls >= 0 ? 1 : 0);
    return { values: towerRowsToImageTokens(rows, sources, width, cls, false) };
  }
  const r = normalized ? normalizeTowerRows(rows, tower) : rows;
  return { values: towerRowsToImageTokens(r, sources, seqLen, cls, true) };
}

/** Per-pass CLS rows with every pass normalised on its own (handle_residual at its CLS entry). */
export function normalizeTowerRows(rows: ArrayLike<number>, tower: TowerRows): Float32Array {
  const { passes, seqLen, cls } = tower;
  const out = new Float32Array(passes * seqLen);
  for (let k = 0; k < passes; k++) {
    const block = Array.from({ length: seqLen }, (_, j) => rows[k * seqLen + j]);
    out.set(normalizeRow(block, Math.max(cls, 0)), k * seqLen);
  }
  return out;
}

/**
 * Relevancy of every prompt position to token t, with the image collapsed to the mean over its tokens, at
 * the place of its first token (positions 0 … T−1; `promptTokens` = the prompt's token strings, e.g.
 * id_to_token of input_ids).
 */
export function textRelevancy(
  row: ArrayLike<number>,
  p: number,
  promptTokens: string[],
  imagePositions: readonly number[],
  normalized = true,
): TextRelevancyEntry[] {
  const r = normalized ? normalizeRow(row, p, p + 1) : row;
  const image = new Set(imagePositions);
  const out: TextRelevancyEntry[] = [];
  for (let i = 0; i < promptTokens.length; i++) {
    if (i === imagePositions[0]) {
      const positions = [...imagePositions];
      const mean = positions.reduce((s, q) => s + r[q], 0) / positions.length;
      out.push({ label: "<image>", positions, value: mean });
      continue;
    }
    if (image.has(i)) continue;
    out.push({ label: tokenDisplayText(promptTokens[i]), positions: [i], value: r[i] });
  }
  return out;
}

export interface QuestionSpan {
  /** First and one-past-last prompt positions of the question text (default: after the last image token to T). */
  from?: number;
  to?: number;
}

/**
 * Number of tokens the chat template puts after the question ("ASSISTANT:" …), so the question span can end
 * before them. Prompts with the question "zebra" and "zebra zebra" share a suffix of the tail plus one "zebra"
 * (whose length is the difference of their lengths); this holds for word-level vocabularies that map both to
 * <unk> as for sub-word ones.
 */
export function templateTailLength(encode: (question: string) => number[]): number {
  const a = encode("zebra");
  const b = encode("zebra zebra");
  let k = 0;
  while (k < a.length && k < b.length && a[a.length - 1 - k] === b[b.length - 1 - k]) k++;
  return Math.max(0, k - (b.length - a.length));
}

/**
 * The continuous image reliance of the case study and the compare view, one definition: the normalised row's
 * (handle_residual, as the tool's views) non-negative mass on image tokens against the question's tokens
 * (`span`; default the prompt's text after the image; separator tokens skipped). `row` is the raw LLM row of
 * the token at position p.
 */
export function imageQuestionSplit(
  row: ArrayLike<number>,
  p: number,
  promptTokens: string[],
  imagePositions: readonly number[],
  span: QuestionSpan = {},
): RelevancyShare {
  const r = normalizeRow(row, p, p + 1);
  let image = 0;
  for (const q of imagePositions) image += Math.max(0, r[q]);
  let question = 0;
  const from = span.from ?? imagePositions[imagePositions.length - 1] + 1;
  const to = span.to ?? promptTokens.length;
  for (let i = from; i < to; i++) if (!isSeparatorToken(promptTokens[i])) question += Math.max(0, r[i]);
  const total = image + question;
  return { image, question, imageShare: total > 0 ? image / total : 0.5 };
}

/**
 * LVLM-Interpret's "top-3 prompt words vs max image relevancy" for token t: the question's tokens are
 * grouped into words (`groupWords`; a word's value is the mean of its tokens'), separator words are
 * skipped, and the k best words are compared with the largest image-token relevancy. Values come from the
 * normalised row (the tool's). Differences from the tool: the question span is given by positions instead
 * of the tool's template-specific slice [img+3 : −5], and the last word is not dropped.
 */
export function topWordsVsImage(
  row: ArrayLike<number>,
  p: number,
  promptTokens: string[],
  imagePositions: readonly number[],
  opts: QuestionSpan & { k?: number } = {},
): WordsVsImage {
  return wordsVsImage(row, p, questionWords(promptTokens, imagePositions, opts), imagePositions, opts.k ?? 3);
}

/** The question's words (separators left out), by their tokens' prompt positions. */
interface QuestionWords {
  label: string;
  positions: number[];
}

function questionWords(
  promptTokens: string[],
  imagePositions: readonly number[],
  opts: QuestionSpan,
): QuestionWords[] {
  const from = opts.from ?? imagePositions[imagePositions.length - 1] + 1;
  const to = opts.to ?? promptTokens.length;
  const span = promptTokens.slice(from, to);
  return groupWords(span)
    .filter((w) => !w.tokens.every((i) => isSeparatorToken(span[i])))
    .map((w) => ({ label: w.text, positions: w.tokens.map((i) => from + i) }));
}

function wordsVsImage(
  row: ArrayLike<number>,
  p: number,
  question: QuestionWords[],
  imagePositions: readonly number[],
  k: number,
): WordsVsImage {
  const r = normalizeRow(row, p, p + 1);
  let imageMax = Number.NEGATIVE_INFINITY;
  for (const q of imagePositions) imageMax = Math.max(imageMax, r[q]);
  const words = question.map((w) => ({
    label: w.label,
    value: w.positions.reduce((s, q) => s + r[q], 0) / w.positions.length,
  }));
  const top = [...words].sort((a, b) => b.value - a.value).slice(0, k);
  const bars = [...top, { label: "max_img", value: imageMax }];
  const below = bars.filter((b) => b.value < imageMax).length;
  return { bars, imageMax, reliance: below / bars.length };
}

/**
 * Per generated token: the reliance score above (for "tokens with high relevancy to image"). `rows[k]` is the
 * raw LLM row of token `tokens[k]` (position T − 1 + tokens[k]).
 */
export function imageReliance(
  rows: ArrayLike<number>[],
  tokens: number[],
  promptTokens: string[],
  imagePositions: readonly number[],
  opts: QuestionSpan & { k?: number } = {},
): { token: number; reliance: number; imageMax: number }[] {
  const T = promptTokens.length;
  // The question's words are the same for every token: grouped once.
  const question = questionWords(promptTokens, imagePositions, opts);
  return tokens.map((t, k) => {
    const v = wordsVsImage(rows[k], T - 1 + t, question, imagePositions, opts.k ?? 3);
    return { token: t, reliance: v.reliance, imageMax: v.imageMax };
  });
}

/**
 * Word-level rows: the rows of a word's tokens (normalised with handle_residual first unless
 * `normalized: false`), zero-padded to the longest and averaged — the views' word maps (see words.ts for
 * the grouping). `tokenRows[i]` is the raw LLM row of generated token i, `positions[i]` its position
 * T − 1 + i.
 */
export function wordRows(
  tokenRows: ArrayLike<number>[],
  positions: number[],
  generatedTokens: string[],
  normalized = true,
): { text: string; tokens: number[]; row: Float32Array }[] {
  const rows = tokenRows.map((r, i) => (normalized ? normalizeRow(r, positions[i], positions[i] + 1) : r));
  return groupWords(generatedTokens).map((w) => ({
    text: w.text,
    tokens: w.tokens,
    row: averagePaddedRows(w.tokens.map((i) => rows[i])),
  }));
}
