/**
 * Relevancy for a run directory: reload the model named by the manifest (or an override), recompute what
 * the backward passes need from the run's input_ids, generated_ids and pixel_values, and add the maps to the
 * run as `rel.<mode>.safetensors` (schema: docs/trace-format.md, section "Relevancy maps in a run directory").
 * Computing a subset of tokens merges into what an earlier call stored, so a UI can fill tokens in on demand.
 */
import * as fs from "node:fs";
import type { TensorToWrite } from "../../hf/safetensors.js";
import { createKernels } from "../../kernels/index.js";
import type { KernelChoice, Kernels } from "../../kernels/types.js";
import { type ImageLayout, towerTokens } from "../../models/image-layout.js";
import { loadModel } from "../../models/registry.js";
import type { TowerSource, VisionLanguageModel } from "../../models/types.js";
import { runWeightFormat, weightsMismatch } from "../../run/manifest.js";
import { IMAGE_GRID_TENSOR, Run } from "../../run/run-dir.js";
import { relevancyMaps } from "./maps.js";
import { resolveTokens } from "./plan.js";
import {
  RELEVANCY_MODES,
  RelevancyError,
  type RelevancyMode,
  VISION_RELEVANCY_KINDS,
  type VisionRelevancyKind,
  type VitGradients,
} from "./types.js";

export interface ComputeRelevancyOptions {
  mode: RelevancyMode;
  /** Vision-side maps to add (default none). */
  vision?: VisionRelevancyKind[];
  /** Generated-token indices, or "all" (default). */
  tokens?: number[] | "all";
  /** ViT gradients for vit/all/all_v2 (default: fresh for exact, accumulated for incremental). */
  vitGradients?: VitGradients;
  /** Kernels to use, or a choice to create (default "auto"; created kernels are disposed at the end). */
  kernels?: Kernels | KernelChoice;
  /** Checkpoint folder (default: the manifest's `model.dir`). */
  modelDir?: string;
  /** Bytes of each backward tape kept in memory (see `RelevancyOptions.tapeMemoryBytes`). */
  tapeMemoryBytes?: number;
  /** An already loaded model (a server keeps one); takes precedence over modelDir. */
  model?: VisionLanguageModel;
  onProgress?: (stage: string, done: number, total: number) => void;
}

/** What `manifest.extras.relevancy[mode]` records. */
export interface RelevancyRecord {
  file: string;
  vit_gradients: VitGradients;
  vit_layers: number[];
  /** Per map kind ("llm", "vit", "all", "all_v2", "chain"): generated-token indices whose rows are filled. */
  computed: Partial<Record<"llm" | VisionRelevancyKind, number[]>>;
  /**
   * With vision maps: the tower's geometry for this image, what the rows of the vision kinds hold (`passes`
   * blocks of `seq_len` tower tokens, or of `seq_len` − 1 patches for the chain with a class token at `cls`);
   * `rel.sources.<mode>` maps them onto the image tokens where the layout's `tower` mapping cannot.
   */
  tower?: { passes: number; seq_len: number; cls: number };
  updated_at: string;
}

export interface RelevancySummary {
  mode: RelevancyMode;
  file: string;
  /** Tokens computed by this call. */
  tokens: number[];
  record: RelevancyRecord;
  tensorNames: string[];
  seconds: number;
}

export function relevancyFileName(mode: RelevancyMode): string {
  return `rel.${mode}.safetensors`;
}

export function relevancyTensorName(kind: "llm" | VisionRelevancyKind, mode: RelevancyMode): string {
  return `rel.${kind}.${mode}`;
}

/**
 * `rel.sources.<mode>`: [P, K, 3] F32, image token i's tower sources as (pass, token, weight) triples, K the
 * most any token has; unused slots are (−1, −1, 0).
 */
export function towerSourcesTensorName(mode: RelevancyMode): string {
  return `rel.sources.${mode}`;
}

/** Whether the layout's `tower` mapping gives exactly these sources (one token of weight 1, or none). */
export function layoutHoldsSources(layout: ImageLayout, sources: TowerSource[][]): boolean {
  const viaLayout = towerTokens(layout);
  return sources.every((src, i) => {
    const t = viaLayout[i];
    if (src.length === 0) return t.token < 0;
    return src.length === 1 && src[0].weight === 1 && src[0].pass === t.pass && src[0].token === t.token;
  });
}

/** The sources of every image token as the `rel.sources` tensor. */
export function towerSourcesTensor(name: string, sources: TowerSource[][]): TensorToWrite {
  const K = Math.max(1, ...sources.map((s) => s.length));
  const data = new Float32Array(sources.length * K * 3);
  sources.forEach((src, i) => {
    for (let k = 0; k < K; k++) {
      const s = src[k];
      data.set(s ? [s.pass, s.token, s.weight] : [-1, -1, 0], (i * K + k) * 3);
    }
  });
  return { name, dtype: "F32", shape: [sources.length, K, 3], data };
}

/** The relevancy record of a run for a mode, if any. */
export function relevancyRecord(run: Run, mode: RelevancyMode): RelevancyRecord | undefined {
  const rel = run.manifest.extras?.relevancy as Record<string, RelevancyRecord> | undefined;
  return rel?.[mode];
}

export async function computeRelevancy(
  runDir: string,
  opts: ComputeRelevancyOptions,
): Promise<RelevancySummary> {
  const t0 = performance.now();
  if (!RELEVANCY_MODES.includes(opts.mode))
    throw new RelevancyError(`unknown relevancy mode "${opts.mode}" (expected exact or incremental)`);
  const vision = [...new Set(opts.vision ?? [])];
  for (const k of vision) {
    if (!VISION_RELEVANCY_KINDS.includes(k))
      throw new RelevancyError(
        `unknown vision relevancy "${k}" (expected ${VISION_RELEVANCY_KINDS.join(", ")})`,
      );
  }
  const run = Run.open(runDir);
  let model: VisionLanguageModel | null = null;
  let ownModel = false;
  let kernels: Kernels | null = null;
  let ownKernels = false;
  try {
    const m = run.manifest;
    const G = m.generated_ids.length;
    const tokens = resolveTokens(
      opts.tokens === "all" || opts.tokens === undefined ? undefined : opts.tokens,
      G,
    );
    if (opts.model) model = opts.model;
    else {
      const dir = opts.modelDir ?? m.model.dir;
      if (!fs.existsSync(dir)) {
        throw new RelevancyError(
          `${dir}: model folder of this run not found (pass the checkpoint folder explicitly)`,
        );
      }
      opts.onProgress?.("load", 0, 1);
      model = loadModel(dir, { weights: runWeightFormat(m) });
      ownModel = true;
      opts.onProgress?.("load", 1, 1);
    }
    checkModelMatchesRun(model, run);
    if (opts.kernels && typeof opts.kernels === "object") kernels = opts.kernels;
    else {
      kernels = await createKernels(opts.kernels ?? "auto");
      ownKernels = true;
    }
    const px = run.tensor("pixel_values");
    const result = await relevancyMaps(
      model,
      kernels,
      {
        inputIds: m.input_ids,
        generatedIds: m.generated_ids,
        pixels: {
          data: px.data,
          shape: px.shape,
          grid: run.has(IMAGE_GRID_TENSOR) ? run.ints(IMAGE_GRID_TENSOR) : undefined,
        },
        layout: m.image_layout,
      },
      {
        mode: opts.mode,
        vision,
        tokens,
        vitGradients: opts.vitGradients,
        tapeMemoryBytes: opts.tapeMemoryBytes,
        onProgress: opts.onProgress,
      },
    );

    // Merge with what an earlier call stored for this mode.
    const mode = opts.mode;
    const S = m.seq_len;
    const Sv = result.vitSeqLen;
    const passes = result.vitPasses;
    const nPatches = Sv - (result.hasCls ? 1 : 0);
    const prev = relevancyRecord(run, mode);
    const prevValid = (kind: "llm" | VisionRelevancyKind) =>
      prev !== undefined &&
      prev.computed[kind] !== undefined &&
      run.has(relevancyTensorName(kind, mode)) &&
      (kind === "llm" || kind === "chain" || prev.vit_gradients === result.vitGradients);
    const width: Record<"llm" | VisionRelevancyKind, number> = {
      llm: S,
      vit: passes * Sv,
      all: passes * Sv,
      all_v2: passes * Sv,
      chain: passes * nPatches,
    };
    const kinds: ("llm" | VisionRelevancyKind)[] = ["llm", ...VISION_RELEVANCY_KINDS];
    const tensors: TensorToWrite[] = [];
    const computed: RelevancyRecord["computed"] = {};
    for (const kind of kinds) {
      const fresh = kind === "llm" || vision.includes(kind);
      const keep = prevValid(kind);
      if (!fresh && !keep) continue;
      const name = relevancyTensorName(kind, mode);
      const data = new Float32Array(G * width[kind]);
      const done = new Set<number>();
      if (keep) {
        const old = run.tensor(name);
        if (old.shape[0] === G && old.shape[1] === width[kind]) {
          data.set(old.data);
          for (const t of prev!.computed[kind]!) done.add(t);
        }
      }
      if (fresh) {
        for (const r of result.tokens) {
          const row =
            kind === "llm"
              ? r.llm
              : kind === "vit"
                ? r.vit
                : kind === "all"
                  ? r.all
                  : kind === "all_v2"
                    ? r.allV2
                    : r.chain;
          if (!row) throw new Error(`internal: ${kind} row missing for token ${r.token}`);
          data.fill(0, r.token * width[kind], (r.token + 1) * width[kind]);
          data.set(row, r.token * width[kind]);
          done.add(r.token);
        }
      }
      tensors.push({ name, dtype: "F32", shape: [G, width[kind]], data });
      computed[kind] = [...done].sort((a, b) => a - b);
    }
    const withVision = VISION_RELEVANCY_KINDS.some((k) => computed[k] !== undefined);
    // The layout's own `tower` mapping places one-to-one towers (LLaVA); the rest need their sources stored.
    if (withVision && !layoutHoldsSources(m.image_layout, result.towerSources))
      tensors.push(towerSourcesTensor(towerSourcesTensorName(mode), result.towerSources));
    const file = relevancyFileName(mode);
    run.addTensors(file, tensors);
    const record: RelevancyRecord = {
      file,
      vit_gradients: result.vitGradients,
      vit_layers: result.vitLayers,
      computed,
      ...(withVision ? { tower: { passes, seq_len: Sv, cls: result.hasCls ? 0 : -1 } } : {}),
      updated_at: new Date().toISOString(),
    };
    const extras = { ...(run.manifest.extras ?? {}) };
    const rel = {
      ...((extras.relevancy as Record<string, RelevancyRecord> | undefined) ?? {}),
      [mode]: record,
    };
    run.manifest = { ...run.manifest, extras: { ...extras, relevancy: rel } };
    run.saveManifest();
    return {
      mode,
      file,
      tokens,
      record,
      tensorNames: tensors.map((t) => t.name),
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    run.close();
    if (ownKernels && kernels) await kernels.dispose();
    if (ownModel && model) model.close();
  }
}

function checkModelMatchesRun(model: VisionLanguageModel, run: Run): void {
  const mm = run.manifest.model;
  const c = model.info;
  const problems: string[] = [];
  if (c.llmLayers !== mm.llm_layers) problems.push(`${c.llmLayers} LLM layers vs the run's ${mm.llm_layers}`);
  if (c.llmHeads !== mm.llm_heads) problems.push(`${c.llmHeads} LLM heads vs ${mm.llm_heads}`);
  if (c.vitLayers !== mm.vit_layers) problems.push(`${c.vitLayers} vision layers vs ${mm.vit_layers}`);
  const D = run.has("vision_features") ? run.info("vision_features").shape[1] : c.hiddenSize;
  if (D !== c.hiddenSize) problems.push(`hidden size ${c.hiddenSize} vs the run's image features of ${D}`);
  const P = model.imagePositions(run.manifest.input_ids).length;
  const runP = run.manifest.image_layout.token_count;
  if (P !== runP) problems.push(`${P} image tokens vs ${runP}`);
  if (problems.length > 0)
    throw new RelevancyError(`${model.dir}: not the model of this run (${problems.join("; ")})`);
  const weights = weightsMismatch(model.info.weights, run.manifest);
  if (weights) throw new RelevancyError(`${model.dir}: ${weights}`);
}
