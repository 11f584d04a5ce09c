/**
 * CLEANN over a run: read one LLM layer's attention, explain a generated token with every requested head
 * (heads are independent and run on worker threads), aggregate the patch weights on the patch grid, and write
 * `causal/<k>.json` into the run (format: docs/trace-format.md, section "causal/<k>.json").
 */

import * as os from "node:os";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import type { CausalParamsRecord } from "../../contracts/http.js";
import { type ImageLayout, segmentTokenCount, separatorTokens } from "../../models/image-layout.js";
import { Run, writeFileAtomic } from "../../run/run-dir.js";
import {
  type CleannParams,
  DEFAULT_CLEANN_PARAMS,
  explainHead,
  type HeadExplanation,
  type TokenLayout,
} from "./cleann.js";
import type { HeadJob } from "./head-worker.js";

export const CAUSAL_FORMAT = "lvlm-causal/1";

/** A user-facing failure (bad token, layer, heads, or not a run); the message is one line. */
export class CausalError extends Error {}

export interface CausalOptions {
  /** 0-based index of the generated token to explain (default: the last). */
  token?: number;
  /** LLM layer (default: the last). */
  layer?: number;
  /** Heads to analyse (default: all). */
  heads?: "all" | readonly number[];
  params?: Partial<CleannParams>;
  /** Worker threads (default: min(#heads, available CPUs)); 1 runs in this thread. */
  jobs?: number;
  /** Called as each head finishes. */
  onHead?: (record: HeadExplanation, done: number, total: number) => void;
}

export interface PatchWeights {
  /**
   * [rows, cols] of the values: the image's grid when it is one grid of all its tokens, else [1, tokens].
   * Flattened row-major, value i belongs to image token i.
   */
  grid: [number, number];
  /** Σ over the analysed heads of each explanation image token's weight, row-major rows × cols. */
  sum: number[][];
  /** `sum` divided by its maximum (all zero when no head has an image explanation). */
  normalized: number[][];
}

export interface CausalDocument {
  format: typeof CAUSAL_FORMAT;
  layer: number;
  /** Generated token index k. */
  token_index: number;
  token_id: number;
  token: string | null;
  /** Sequence position whose output predicts token k: len(input_ids) − 1 + k. */
  token_to_explain: number;
  /** First image position and the number of image tokens (their positions: the run's image_token_positions). */
  image_token_start: number;
  image_token_count: number;
  /** The CLEANN parameters in the reference's names (also served as they are: contracts/http.ts). */
  params: CausalParamsRecord;
  heads: HeadExplanation[];
  patch_weights: PatchWeights;
  timings_ms: { total: number };
}

/** Parse "all", "3", "0,2,5" or "0-7,12" into a sorted head list (validated against `count`). */
export function parseHeads(spec: string, count: number): number[] {
  const s = spec.trim();
  if (s === "all") return Array.from({ length: count }, (_, i) => i);
  const out = new Set<number>();
  for (const part of s.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m)
      throw new CausalError(
        `--heads: "${part.trim()}" is not a head number or range (use "all", "0,3" or "0-7")`,
      );
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new CausalError(`--heads: empty range ${a}-${b}`);
    for (let h = a; h <= b; h++) {
      if (h >= count)
        throw new CausalError(
          `--heads: head ${h} out of range (the layer has ${count} heads: 0…${count - 1})`,
        );
      out.add(h);
    }
  }
  return [...out].sort((x, y) => x - y);
}

function validateParams(p: CleannParams): void {
  const bad = (what: string) => {
    throw new CausalError(what);
  };
  if (!(p.alpha > 0 && p.alpha < 1)) bad(`alpha must be in (0, 1), got ${p.alpha}`);
  if (!(Number.isInteger(p.numSamples) && p.numSamples >= 4))
    bad(`dof (num_samples) must be an integer ≥ 4, got ${p.numSamples}`);
  if (!(Number.isInteger(p.maxRange) && p.maxRange >= 1))
    bad(`radius must be an integer ≥ 1, got ${p.maxRange}`);
  if (!(p.attTh >= 0 && p.attTh < 1)) bad(`att-th must be in [0, 1), got ${p.attTh}`);
  if (!(Number.isInteger(p.maxImageTokens) && p.maxImageTokens >= 1))
    bad(`max-image-tokens must be an integer ≥ 1, got ${p.maxImageTokens}`);
}

/**
 * Explain position `x` with the given heads of one layer (`data`: [H, S, S] row-major). Heads run on
 * `jobs` worker threads (1: in this thread). Records come back in head order.
 */
export async function explainLayer(
  data: Float32Array,
  shape: readonly [number, number, number],
  x: number,
  layout: TokenLayout,
  heads: readonly number[],
  params: CleannParams,
  jobs: number,
  onHead?: (record: HeadExplanation, done: number, total: number) => void,
): Promise<HeadExplanation[]> {
  const [H, S] = shape;
  if (data.length !== H * S * S)
    throw new CausalError(`attention has ${data.length} values, expected ${H}×${S}×${S}`);
  const results = new Map<number, HeadExplanation>();
  const total = heads.length;
  const workers = Math.max(1, Math.min(jobs, total));
  if (workers === 1) {
    for (const h of heads) {
      const { record } = explainHead(data.subarray(h * S * S, (h + 1) * S * S), S, x, layout, params, h);
      results.set(h, record);
      onHead?.(record, results.size, total);
    }
    return heads.map((h) => results.get(h)!);
  }

  const shared = new SharedArrayBuffer(data.length * 4);
  new Float32Array(shared).set(data);
  const queue = [...heads];
  const pool: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const feed = (w: Worker) => {
        const h = queue.shift();
        if (h === undefined) return;
        const job: HeadJob = { buffer: shared, offset: h * S * S, size: S, x, layout, params, head: h };
        w.postMessage(job);
      };
      for (let i = 0; i < workers; i++) {
        const w = new Worker(new URL("./head-worker.js", import.meta.url));
        pool.push(w);
        w.on("message", (m: { ok: boolean; head: number; record?: HeadExplanation; error?: string }) => {
          if (failed) return;
          if (!m.ok) {
            failed = true;
            reject(new CausalError(`head ${m.head}: ${m.error}`));
            return;
          }
          results.set(m.head, m.record!);
          onHead?.(m.record!, results.size, total);
          if (results.size === total) resolve();
          else feed(w);
        });
        w.on("error", (e) => {
          if (!failed) {
            failed = true;
            reject(e);
          }
        });
        feed(w);
      }
    });
  } finally {
    await Promise.all(pool.map((w) => w.terminate()));
  }
  return heads.map((h) => results.get(h)!);
}

/** Sum the heads' patch weights over the image tokens, shaped as `grid` when it holds them all. */
export function aggregatePatchWeights(
  records: readonly HeadExplanation[],
  imageCount: number,
  grid: [number, number] | null,
): PatchWeights {
  if (!grid) grid = [1, imageCount];
  const g: [number, number] = grid[0] * grid[1] === imageCount ? grid : [1, imageCount];
  const flat = new Float64Array(imageCount);
  for (const r of records) {
    r.explanation_image_patches.forEach((patch, i) => {
      flat[patch] += r.image_expla_weights[i];
    });
  }
  let max = 0;
  for (const v of flat) max = Math.max(max, v);
  const rows = (f: (v: number) => number) =>
    Array.from({ length: g[0] }, (_, r) => Array.from(flat.subarray(r * g[1], (r + 1) * g[1]), f));
  return { grid: g, sum: rows((v) => v), normalized: rows((v) => (max > 0 ? v / max : 0)) };
}

/** Run CLEANN on a run directory and write `causal/<k>.json`. */
export async function explainRun(
  dir: string,
  opts: CausalOptions = {},
): Promise<{ file: string; doc: CausalDocument }> {
  const t0 = performance.now();
  const run = Run.open(dir);
  try {
    const m = run.manifest;
    const T = m.input_ids.length;
    const G = m.generated_ids.length;
    if (G === 0) throw new CausalError(`${dir}: the run generated no tokens`);
    const image = run.imageTokens();
    const P = image.positions.length;
    if (!(P > 0)) throw new CausalError(`${dir}: the run has no image tokens to explain with`);
    const k = opts.token ?? G - 1;
    if (!Number.isInteger(k) || k < 0 || k >= G)
      throw new CausalError(`token ${k} out of range (the run generated ${G} tokens: 0…${G - 1})`);
    const L = m.model.llm_layers;
    const layer = opts.layer ?? L - 1;
    if (!Number.isInteger(layer) || layer < 0 || layer >= L)
      throw new CausalError(`layer ${layer} out of range (the model has ${L} LLM layers: 0…${L - 1})`);
    if (!run.has(`llm_attn.${layer}`))
      throw new CausalError(`${dir}: the run has no attention for layer ${layer} (llm_attn.${layer})`);
    const info = run.info(`llm_attn.${layer}`);
    if (info.shape.length !== 3 || info.shape[1] !== info.shape[2])
      throw new CausalError(`llm_attn.${layer}: expected [heads, S, S], got [${info.shape}]`);
    const [H, S] = info.shape;
    const x = T - 1 + k;
    if (x >= S) throw new CausalError(`token ${k}: position ${x} is beyond the stored attention (S = ${S})`);
    const separator = separatorTokens(image.layout);
    const layout: TokenLayout = {
      imagePositions: image.positions,
      nodePositions: image.positions.filter((_, i) => !separator[i]),
    };
    if (x <= image.positions[P - 1])
      throw new CausalError(`token ${k}: position ${x} is not after the image`);
    const heads =
      opts.heads === undefined || opts.heads === "all"
        ? Array.from({ length: H }, (_, i) => i)
        : [...opts.heads];
    if (heads.length === 0) throw new CausalError("no heads selected");
    for (const h of heads)
      if (!Number.isInteger(h) || h < 0 || h >= H)
        throw new CausalError(`head ${h} out of range (the layer has ${H} heads: 0…${H - 1})`);
    const params: CleannParams = { ...DEFAULT_CLEANN_PARAMS, ...opts.params };
    validateParams(params);

    const att = run.llmAttention(layer);
    const jobs = opts.jobs ?? Math.min(heads.length, os.availableParallelism());
    const records = await explainLayer(att.data, [H, S, S], x, layout, heads, params, jobs, opts.onHead);

    const doc: CausalDocument = {
      format: CAUSAL_FORMAT,
      layer,
      token_index: k,
      token_id: m.generated_ids[k],
      token: m.generated_tokens?.[k] ?? null,
      token_to_explain: x,
      image_token_start: image.positions[0],
      image_token_count: P,
      params: {
        p_val_th: params.alpha,
        num_samples: params.numSamples,
        max_range: params.maxRange,
        att_th: params.attTh,
        max_num_image_tokens: params.maxImageTokens,
      },
      heads: records,
      patch_weights: aggregatePatchWeights(records, P, singleGrid(image.layout)),
      timings_ms: { total: 0 },
    };
    doc.timings_ms.total = performance.now() - t0;
    const file = path.join(dir, "causal", `${k}.json`);
    writeFileAtomic(file, `${JSON.stringify(doc)}\n`);
    return { file, doc };
  } finally {
    run.close();
  }
}

/** [rows, cols] when the image's tokens are exactly one grid without separators, else null. */
export function singleGrid(layout: ImageLayout): [number, number] | null {
  const [s] = layout.segments;
  if (layout.segments.length !== 1 || s.kind !== "grid" || s.row_separator) return null;
  return segmentTokenCount(s) === layout.token_count ? [s.rows, s.cols] : null;
}
