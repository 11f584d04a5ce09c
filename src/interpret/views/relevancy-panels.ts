/**
 * The relevancy views of a run as small JSON for the web app: per answer word (or token) the relevancy map
 * over the image tokens (drawn on the original picture through the run's image_token_boxes), the text relevancy of one token (top question words vs the image), and every computed
 * token's image-vs-text reliance. Reads the tensors `computeRelevancy` stored (`rel.<kind>.<mode>` [G, width])
 * and the record in `manifest.extras.relevancy[mode]`; the maths are relevancy-views.ts / words.ts.
 */
import type {
  RelevancyComputed,
  RelevancyMapItem,
  RelevancyMapsView,
  RelevancyTextView,
  TokenReliance,
} from "../../contracts/http.js";
import { type MapGrouping, RELEVANCY_MAP_KINDS, type RelevancyMapKind } from "../../contracts/lists.js";
import type { Run } from "../../run/run-dir.js";
import {
  type RelevancyMode,
  type RelevancyRecord,
  relevancyTensorName,
  towerSourcesTensorName,
} from "../relevancy/index.js";
import { type ImageTokenSource, layoutTowerSources } from "./image-tokens.js";
import {
  type ImageMap,
  imageReliance,
  llmImageMap,
  normalizeTowerRows,
  type QuestionSpan,
  type TowerRows,
  textRelevancy,
  topWordsVsImage,
  towerImageMap,
  wordRows,
} from "./relevancy-views.js";
import { averagePaddedRows, groupWords, isSeparatorToken, tokenDisplayText } from "./words.js";

// The views' shapes are the HTTP contracts (contracts/http.ts).
export type { RelevancyMapItem, RelevancyMapsView, RelevancyTextView };
// Stored map kinds (the LLM map and the vision-side ones) are listed once, in contracts/lists.ts.
export { RELEVANCY_MAP_KINDS, type RelevancyMapKind };

/** A request the run cannot answer (nothing computed yet, a token not computed, a bad mode). */
export class RelevancyViewError extends Error {
  override name = "RelevancyViewError";
}

export interface RelevancyStatus {
  /** Per mode, per map kind: the answer tokens whose relevancy is stored. */
  computed: RelevancyComputed;
}

export function relevancyStatus(run: Run): RelevancyStatus {
  const rel = (run.manifest.extras?.relevancy ?? {}) as Partial<Record<RelevancyMode, RelevancyRecord>>;
  const computed: RelevancyStatus["computed"] = {};
  for (const [mode, rec] of Object.entries(rel) as [RelevancyMode, RelevancyRecord][]) {
    const kinds: Partial<Record<RelevancyMapKind, number[]>> = {};
    for (const [kind, toks] of Object.entries(rec?.computed ?? {}) as [RelevancyMapKind, number[]][]) {
      if (run.has(relevancyTensorName(kind, mode))) kinds[kind] = toks;
    }
    computed[mode] = kinds;
  }
  return { computed };
}

function computedTokens(run: Run, mode: RelevancyMode, kind: RelevancyMapKind): number[] {
  const toks = relevancyStatus(run).computed[mode]?.[kind];
  if (!toks || toks.length === 0)
    throw new RelevancyViewError(`no ${kind} relevancy (${mode}) computed for this run yet`);
  return toks;
}

/** Rows of `rel.<kind>.<mode>` for the given tokens. */
function rows(
  run: Run,
  mode: RelevancyMode,
  kind: RelevancyMapKind,
): { width: number; row: (t: number) => Float32Array } {
  const t = run.tensor(relevancyTensorName(kind, mode));
  const width = t.shape[1];
  return { width, row: (k: number) => t.data.subarray(k * width, (k + 1) * width) };
}

/**
 * What the stored vision rows of a mode hold: the record's tower geometry and `rel.sources.<mode>` when
 * present (multi-pass or blended towers), else one pass placed through the layout's own `tower` mapping.
 */
function towerRows(run: Run, mode: RelevancyMode, width: number, chain: boolean): TowerRows {
  const rec = (
    run.manifest.extras?.relevancy as Partial<Record<RelevancyMode, RelevancyRecord>> | undefined
  )?.[mode];
  const cls = run.manifest.model.has_cls ? 0 : -1;
  const name = towerSourcesTensorName(mode);
  if (rec?.tower && run.has(name)) {
    const t = run.tensor(name);
    const [P, K] = t.shape;
    const sources: ImageTokenSource[][] = [];
    for (let i = 0; i < P; i++) {
      const src: ImageTokenSource[] = [];
      for (let k = 0; k < K; k++) {
        const o = (i * K + k) * 3;
        if (t.data[o] >= 0) src.push({ pass: t.data[o], token: t.data[o + 1], weight: t.data[o + 2] });
      }
      sources.push(src);
    }
    return { passes: rec.tower.passes, seqLen: rec.tower.seq_len, cls: rec.tower.cls, sources };
  }
  const seqLen = chain ? width + (cls >= 0 ? 1 : 0) : width;
  return { passes: 1, seqLen, cls, sources: layoutTowerSources(run.imageTokens().layout) };
}

function item(label: string, tokens: number[], separator: boolean, m: ImageMap): RelevancyMapItem {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const v of m.values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const map = Array.from(m.values, (v) => (Number.isFinite(v) ? v : null));
  return { label, tokens, separator, map, min, max };
}

/**
 * Relevancy maps on the image for every computed answer word (`by: "word"`, the tool's gallery: a word's map
 * is the mean of its tokens' normalised rows) or token. `normalized` applies LVLM-Interpret's handle_residual
 * to each row first (the tool's display); chain maps are per-patch already and are averaged as stored.
 * `rawTokens` are the answer's tokenizer pieces (id_to_token, with their `▁`/`Ġ` word-boundary markers) that
 * words are grouped by; without them the manifest's decoded tokens are used, which have lost those markers.
 */
export function relevancyImageMaps(
  run: Run,
  mode: RelevancyMode,
  kind: RelevancyMapKind,
  by: MapGrouping,
  normalized = true,
  rawTokens?: string[],
): RelevancyMapsView {
  if (!RELEVANCY_MAP_KINDS.includes(kind))
    throw new RelevancyViewError(
      `unknown relevancy map "${kind}" (expected ${RELEVANCY_MAP_KINDS.join(", ")})`,
    );
  const m = run.manifest;
  const computed = computedTokens(run, mode, kind);
  const done = new Set(computed);
  const { positions: imagePositions } = run.imageTokens();
  const T = m.input_ids.length;
  const G = m.generated_ids.length;
  const { row, width } = rows(run, mode, kind);
  const chain = kind === "chain";
  const tower = kind === "llm" ? null : towerRows(run, mode, width, chain);
  if (rawTokens && rawTokens.length !== G)
    throw new RelevancyViewError(`${rawTokens.length} raw tokens for ${G} generated ids`);
  const gen = rawTokens ?? m.generated_tokens;
  const sep = (toks: number[]) => toks.every((t) => isSeparatorToken(gen[t]));
  const tokenMap = (t: number, r: ArrayLike<number>, norm: boolean): ImageMap => {
    if (!tower) return llmImageMap(r, T - 1 + t, imagePositions, norm);
    return towerImageMap(r, tower, chain, norm);
  };
  const items: RelevancyMapItem[] = [];
  if (by === "token") {
    for (const t of computed)
      items.push(item(tokenDisplayText(gen[t]), [t], sep([t]), tokenMap(t, row(t), normalized)));
    return { mode, kind, by, normalized, computed, items };
  }
  const words = groupWords(gen).filter((w) => w.tokens.every((t) => done.has(t)));
  if (kind === "llm") {
    const positions = Array.from({ length: G }, (_, t) => T - 1 + t);
    const all = wordRows(
      Array.from({ length: G }, (_, t) => row(t)),
      positions,
      gen,
      normalized,
    );
    for (const w of all) {
      if (!w.tokens.every((t) => done.has(t))) continue;
      items.push(
        item(
          w.text,
          w.tokens,
          sep(w.tokens),
          llmImageMap(w.row, T - 1 + w.tokens[w.tokens.length - 1], imagePositions, false),
        ),
      );
    }
  } else {
    for (const w of words) {
      // A word's map: the mean of its tokens' (per pass normalised) rows.
      const rs = w.tokens.map((t) => (normalized && !chain ? normalizeTowerRows(row(t), tower!) : row(t)));
      const avg = averagePaddedRows(rs);
      items.push(item(w.text, w.tokens, sep(w.tokens), towerImageMap(avg, tower!, chain, false)));
    }
  }
  return { mode, kind, by, normalized, computed, items };
}

/** Text relevancy of one answer token (`promptTokens`: the prompt's token strings, one per input id). */
export function relevancyText(
  run: Run,
  mode: RelevancyMode,
  token: number,
  promptTokens: string[],
  span: QuestionSpan = {},
): RelevancyTextView {
  const m = run.manifest;
  const computed = computedTokens(run, mode, "llm");
  if (!computed.includes(token))
    throw new RelevancyViewError(`LLM relevancy (${mode}) of answer token ${token} is not computed yet`);
  if (promptTokens.length !== m.input_ids.length)
    throw new RelevancyViewError(
      `${promptTokens.length} prompt token strings for ${m.input_ids.length} input ids`,
    );
  const r = rows(run, mode, "llm").row(token);
  const p = m.input_ids.length - 1 + token;
  const { positions } = run.imageTokens();
  return {
    mode,
    token,
    entries: textRelevancy(r, p, promptTokens, positions, true),
    wordsVsImage: topWordsVsImage(r, p, promptTokens, positions, span),
  };
}

/**
 * Image-vs-text reliance of every computed answer token (1 = the image beats every top question word);
 * `span`: where the question is (e.g. ending before the chat template's tail).
 */
export function relevancyReliance(
  run: Run,
  mode: RelevancyMode,
  promptTokens: string[],
  span: QuestionSpan = {},
): TokenReliance[] {
  const computed = computedTokens(run, mode, "llm");
  const { row } = rows(run, mode, "llm");
  return imageReliance(
    computed.map((t) => row(t)),
    computed,
    promptTokens,
    run.imageTokens().positions,
    span,
  );
}
