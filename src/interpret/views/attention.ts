/**
 * Raw-attention aggregates of a run, the numbers behind LVLM-Interpret's attention views:
 *
 * * {@link attentionSummary}: per LLM layer × head, the mean attention from the answer tokens to the image
 *   tokens ("Image-to-Answer") and to the question tokens ("Question-to-Answer").
 * * {@link headImageMaps}: for chosen answer tokens and one layer, every head's attention over the image patch
 *   grid, sorted by mean attention, plus the per-head mean strip.
 * * {@link patchAttention}: for chosen image patches and one layer, how much each answer token attends to them
 *   (per head, and averaged over heads) — the patch selector.
 *
 * Conventions (the run format's, see docs/trace-format.md): with T = len(input_ids), answer token k is the one
 * *predicted by* position T − 1 + k, so "the attention of answer token k" is row T − 1 + k of `llm_attn.{l}`
 * (the attention that produced it — what LVLM-Interpret reads from each generation step's last query row).
 * Image token i is column image_token_positions[i]; its place in the picture is image_token_boxes[i] (maps are
 * one value per image token). The question tokens are the prompt positions after the last image token (the
 * question and the chat template's tail), as in LVLM-Interpret.
 *
 * Only the rows needed are read from disk (one contiguous read per head), never the whole [H, S, S] tensor,
 * so the summary of a 7B run touches G·S values per head instead of S².
 */
import type { AttentionSummary, HeadImageMap, HeadImageMaps, PatchAttention } from "../../contracts/http.js";
import { DTYPE_BYTES, toF32 } from "../../hf/safetensors.js";
import type { Run } from "../../run/run-dir.js";

// The answers' shapes are the HTTP contracts (contracts/http.ts).
export type { AttentionSummary, HeadImageMap, HeadImageMaps, PatchAttention };

/** A query outside the run (bad layer, token or patch index); the message says which and the valid range. */
export class AttentionQueryError extends Error {
  override name = "AttentionQueryError";
}

/** Where things are in a run's LLM sequence. */
export interface AttentionLayout {
  /** Prompt length (expanded input_ids). */
  T: number;
  /** Number of generated tokens. */
  G: number;
  /** Sequence length of the attention tensors (T + G − 1). */
  S: number;
  layers: number;
  heads: number;
  /** Sequence position of each image token (separators included). */
  imagePositions: number[];
  /** First question position (just after the last image token) and one past the last (T). */
  questionStart: number;
  questionEnd: number;
}

export function attentionLayout(run: Run): AttentionLayout {
  const m = run.manifest;
  const T = m.input_ids.length;
  const G = m.generated_ids.length;
  const imagePositions = run.imageTokens().positions;
  return {
    T,
    G,
    S: m.seq_len,
    layers: m.model.llm_layers,
    heads: m.model.llm_heads,
    imagePositions,
    questionStart: imagePositions[imagePositions.length - 1] + 1,
    questionEnd: T,
  };
}

/** The attention row of answer token k. */
export function answerRow(layout: AttentionLayout, k: number): number {
  return layout.T - 1 + k;
}

function checkLayer(layout: AttentionLayout, layer: number): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= layout.layers) {
    throw new AttentionQueryError(
      `layer ${layer} is out of range (the model has LLM layers 0…${layout.layers - 1})`,
    );
  }
}

/** Validated, de-duplicated, sorted answer-token indices; all tokens when `tokens` is empty or absent. */
export function checkTokens(layout: AttentionLayout, tokens?: readonly number[]): number[] {
  if (!tokens || tokens.length === 0) return Array.from({ length: layout.G }, (_, k) => k);
  for (const k of tokens) {
    if (!Number.isInteger(k) || k < 0 || k >= layout.G) {
      throw new AttentionQueryError(
        `answer token ${k} is out of range (the answer has tokens 0…${layout.G - 1})`,
      );
    }
  }
  return [...new Set(tokens)].sort((a, b) => a - b);
}

/** Validated, de-duplicated, sorted image-token indices; at least one. */
export function checkPatches(layout: AttentionLayout, patches: readonly number[]): number[] {
  if (patches.length === 0) throw new AttentionQueryError("select at least one image patch");
  const P = layout.imagePositions.length;
  for (const p of patches) {
    if (!Number.isInteger(p) || p < 0 || p >= P) {
      throw new AttentionQueryError(`image patch ${p} is out of range (the image has patches 0…${P - 1})`);
    }
  }
  return [...new Set(patches)].sort((a, b) => a - b);
}

/**
 * Rows [r0, r0 + n) of every head of LLM layer `layer`, widened to float32: [H, n, S] row-major. Reads only
 * those rows from the safetensors file.
 */
export function readLlmAttentionRows(run: Run, layer: number, r0: number, n: number): Float32Array {
  const info = run.info(`llm_attn.${layer}`);
  if (info.shape.length !== 3)
    throw new AttentionQueryError(`llm_attn.${layer}: expected [H, S, S], got [${info.shape.join(", ")}]`);
  const [H, S, S2] = info.shape;
  if (S !== S2) throw new AttentionQueryError(`llm_attn.${layer}: not square ([${info.shape.join(", ")}])`);
  if (r0 < 0 || n < 0 || r0 + n > S)
    throw new AttentionQueryError(`rows ${r0}…${r0 + n - 1} outside llm_attn.${layer} (S = ${S})`);
  const eb = DTYPE_BYTES[info.dtype];
  const rowBytes = S * eb;
  const out = new Float32Array(H * n * S);
  if (n === 0) return out;
  // Through the run's own open file: reopening info.file by path could follow a link swapped in since.
  const buf = new Uint8Array(n * rowBytes);
  for (let h = 0; h < H; h++) {
    run.readTensorBytes(`llm_attn.${layer}`, (h * S + r0) * rowBytes, buf);
    // Copy into a fresh aligned buffer: toF32 views it with the dtype's typed array.
    out.set(toF32(info.dtype, buf.slice().buffer), h * n * S);
  }
  return out;
}

/**
 * Mean of `rows[h, r, c]` over the chosen rows and columns, per head. `rows` is [H, n, S]; `rowSel` indexes
 * its n rows; `cols` are column indices (e.g. the image positions).
 */
export function blockMeanPerHead(
  rows: Float32Array,
  H: number,
  n: number,
  S: number,
  rowSel: readonly number[],
  cols: readonly number[],
): number[] {
  const out = new Array<number>(H).fill(0);
  const cells = rowSel.length * cols.length;
  if (cells <= 0) return out;
  for (let h = 0; h < H; h++) {
    let s = 0;
    for (const r of rowSel) {
      const base = (h * n + r) * S;
      for (const c of cols) s += rows[base + c];
    }
    out[h] = s / cells;
  }
  return out;
}

/** Columns c0 … c1−1. */
export function columnRange(c0: number, c1: number): number[] {
  return Array.from({ length: Math.max(0, c1 - c0) }, (_, i) => c0 + i);
}

/** LVLM-Interpret's "Image-to-Answer" and "Question-to-Answer" layer × head heatmaps. */
export function attentionSummary(run: Run, tokens?: readonly number[]): AttentionSummary {
  const L = attentionLayout(run);
  const ks = checkTokens(L, tokens);
  const r0 = answerRow(L, ks[0]);
  const n = answerRow(L, ks[ks.length - 1]) - r0 + 1;
  const rowSel = ks.map((k) => answerRow(L, k) - r0);
  const image: number[][] = [];
  const question: number[][] = [];
  const questionCols = columnRange(L.questionStart, L.questionEnd);
  for (let l = 0; l < L.layers; l++) {
    const rows = readLlmAttentionRows(run, l, r0, n);
    const H = rows.length / (n * L.S);
    image.push(blockMeanPerHead(rows, H, n, L.S, rowSel, L.imagePositions));
    question.push(blockMeanPerHead(rows, H, n, L.S, rowSel, questionCols));
  }
  return {
    layers: L.layers,
    heads: L.heads,
    tokens: ks,
    image,
    question,
    imageTokens: L.imagePositions.length,
    questionSpan: [L.questionStart, L.questionEnd],
  };
}

/** Per-head attention of the chosen answer tokens (mean over tokens) over the image patches of one layer. */
export function headImageMaps(run: Run, layer: number, tokens?: readonly number[]): HeadImageMaps {
  const L = attentionLayout(run);
  checkLayer(L, layer);
  const ks = checkTokens(L, tokens);
  const r0 = answerRow(L, ks[0]);
  const n = answerRow(L, ks[ks.length - 1]) - r0 + 1;
  const rows = readLlmAttentionRows(run, layer, r0, n);
  const H = rows.length / (n * L.S);
  const pos = L.imagePositions;
  const P = pos.length;
  const heads: HeadImageMap[] = [];
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let h = 0; h < H; h++) {
    const map = new Array<number>(P).fill(0);
    for (const k of ks) {
      const base = (h * n + answerRow(L, k) - r0) * L.S;
      for (let p = 0; p < P; p++) map[p] += rows[base + pos[p]];
    }
    let s = 0;
    let hmax = Number.NEGATIVE_INFINITY;
    for (let p = 0; p < P; p++) {
      map[p] /= ks.length;
      s += map[p];
      if (map[p] > hmax) hmax = map[p];
      if (map[p] < min) min = map[p];
    }
    if (hmax > max) max = hmax;
    heads.push({ head: h, mean: s / P, max: hmax, map });
  }
  const headMeans = heads.map((x) => x.mean);
  heads.sort((a, b) => b.mean - a.mean || a.head - b.head);
  return { layer, tokens: ks, heads, headMeans, min, max };
}

/** The patch selector: how much each answer token of one layer attends to the selected image patches. */
export function patchAttention(run: Run, layer: number, patches: readonly number[]): PatchAttention {
  const L = attentionLayout(run);
  checkLayer(L, layer);
  const ps = checkPatches(L, patches);
  const r0 = answerRow(L, 0);
  const rows = readLlmAttentionRows(run, layer, r0, L.G);
  const H = rows.length / (L.G * L.S);
  const perHeadToken: number[][] = [];
  const tokenSum = new Array<number>(L.G).fill(0);
  for (let h = 0; h < H; h++) {
    const row: number[] = [];
    for (let k = 0; k < L.G; k++) {
      const base = (h * L.G + k) * L.S;
      let s = 0;
      for (const p of ps) s += rows[base + L.imagePositions[p]];
      row.push(s / ps.length);
      tokenSum[k] += s / H;
    }
    perHeadToken.push(row);
  }
  const tokenMean = Array.from({ length: L.G }, (_, k) => perHeadToken.reduce((a, r) => a + r[k], 0) / H);
  const headMean = perHeadToken.map((r) => (r.length ? r.reduce((a, b) => a + b, 0) / r.length : 0));
  return { layer, patches: ps, perHeadToken, tokenMean, headMean, tokenSum };
}
