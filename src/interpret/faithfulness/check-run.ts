/**
 * The faithfulness check of a run's map for one answer token: deletion and insertion curves of the token's
 * probability (./curves.ts) for the map and for random maps (the mean over seeded random orders), with their
 * areas, written to `faithfulness/<k>.<spec>.json` in the run so the app shows it without recomputing.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  type CurvePair,
  FAITHFULNESS_DEFAULTS,
  type FaithfulnessResult,
  faithfulnessResult,
} from "../../contracts/http.js";
import { decodeImage } from "../../hf/image-decode.js";
import { createKernels } from "../../kernels/index.js";
import type { KernelChoice, Kernels } from "../../kernels/types.js";
import { loadModel } from "../../models/registry.js";
import type { VisionLanguageModel } from "../../models/types.js";
import { runWeightFormat, weightsMismatch } from "../../run/manifest.js";
import { Run, RunError, readRunFile, writeFileAtomic } from "../../run/run-dir.js";
import { hashSeed, Rng } from "../../tensor/rng.js";
import { curveArea } from "../grounding-scores.js";
import { deletionCurve, insertionCurve, softmaxAt, TokenProbe, tokenOrder } from "./curves.js";
import { formatMapSpec, type MapSpec, mapSpecSlug, parseMapSpec, readTokenMap } from "./maps.js";

export const FAITHFULNESS_FORMAT = faithfulnessResult.shape.format.value;
export const DEFAULT_STEPS = FAITHFULNESS_DEFAULTS.steps;
export const DEFAULT_SEEDS = FAITHFULNESS_DEFAULTS.seeds;

/** A request the run cannot serve (bad token, steps, seeds, model); one line. */
export class FaithfulnessError extends Error {
  override name = "FaithfulnessError";
}

// The result's shape is the HTTP contract (the app serves the stored file as it is).
export type { CurvePair, FaithfulnessResult };

export interface FaithfulnessOptions {
  token: number;
  /** A map spec string (maps.ts) or a parsed one. */
  map: string | MapSpec;
  steps?: number;
  seeds?: number;
  model?: VisionLanguageModel;
  /** Checkpoint folder when no model is given (default: the run's). */
  modelDir?: string;
  kernels?: Kernels | KernelChoice;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export const PERTURBATION =
  "image tokens' boxes painted with the processor's background colour int(mean·255) in the original picture, then preprocessed again";

/** Where a check's result lives inside the run. */
export function faithfulnessFile(token: number, spec: MapSpec): string {
  return `faithfulness/${token}.${mapSpecSlug(spec)}.json`;
}

function checkCount(name: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 1 || v > max)
    throw new FaithfulnessError(`${name} ${v}: expected an integer from 1 to ${max}`);
}

export async function checkFaithfulness(
  runDir: string,
  opts: FaithfulnessOptions,
): Promise<{ file: string; result: FaithfulnessResult }> {
  const t0 = performance.now();
  const spec = typeof opts.map === "string" ? parseMapSpec(opts.map) : opts.map;
  const steps = opts.steps ?? DEFAULT_STEPS;
  const seeds = opts.seeds ?? DEFAULT_SEEDS;
  checkCount("steps", steps, 100);
  checkCount("seeds", seeds, 20);
  const run = Run.open(runDir);
  let model: VisionLanguageModel | null = null;
  let ownModel = false;
  let kernels: Kernels | null = null;
  let ownKernels = false;
  try {
    const m = run.manifest;
    const G = m.generated_ids.length;
    const k = opts.token;
    if (!Number.isInteger(k) || k < 0 || k >= G)
      throw new FaithfulnessError(`token ${k} is out of range (the answer has tokens 0…${G - 1})`);
    const map = readTokenMap(run, spec, k);
    const { boxes, layout } = run.imageTokens();
    const picture = await decodeImage(readRunFile(runDir, m.original_image_file), m.original_image_file);
    const logits = run.tensor("logits");
    const V = logits.shape[1];
    const runProbability = softmaxAt(logits.data.subarray(k * V, (k + 1) * V), m.generated_ids[k]);

    if (opts.model) model = opts.model;
    else {
      const dir = opts.modelDir ?? m.model.dir;
      if (!fs.existsSync(path.join(dir, "config.json")))
        throw new FaithfulnessError(
          `${dir}: model folder of this run not found (pass the checkpoint folder with --model)`,
        );
      opts.onProgress?.("load", 0, 1);
      model = loadModel(dir, { weights: runWeightFormat(m) });
      ownModel = true;
      opts.onProgress?.("load", 1, 1);
    }
    if (model.info.llmLayers !== m.model.llm_layers || model.info.llmHeads !== m.model.llm_heads)
      throw new FaithfulnessError(`${model.dir}: not the model of this run (other layer or head counts)`);
    const weights = weightsMismatch(model.info.weights, m);
    if (weights) throw new FaithfulnessError(`${model.dir}: ${weights}`);
    if (opts.kernels && typeof opts.kernels === "object") kernels = opts.kernels;
    else {
      kernels = await createKernels(opts.kernels ?? "auto");
      ownKernels = true;
    }
    const probe = new TokenProbe(model, kernels, {
      picture,
      mode: m.settings.image_mode,
      layout,
      boxes,
      ids: [...m.input_ids, ...m.generated_ids.slice(0, k)],
      targetId: m.generated_ids[k],
    });
    // Every curve has steps + 1 points; the two curves of one order share both ends.
    const total = 2 * (steps + 1) * (1 + seeds);
    let done = 0;
    const tick = () => opts.onProgress?.("forward", ++done, total);
    opts.onProgress?.("forward", 0, total);
    // Ties broken by a fixed seed, so a check reads the same every time.
    const order = tokenOrder(map, probe.located, new Rng(hashSeed(0xfa17, k)));
    const pair = async (o: number[]): Promise<CurvePair> => {
      const deletion = await deletionCurve(probe, o, steps, tick);
      const insertion = await insertionCurve(probe, o, steps, tick);
      return {
        deletion,
        insertion,
        deletion_auc: curveArea(deletion),
        insertion_auc: curveArea(insertion),
      };
    };
    const curves = await pair(order);
    const randoms: CurvePair[] = [];
    for (let s = 0; s < seeds; s++) {
      const rng = new Rng(hashSeed(0x5eed, k, s));
      const random = Float32Array.from({ length: map.length }, () => rng.next());
      randoms.push(await pair(tokenOrder(random, probe.located, rng)));
    }
    const mean = (f: (c: CurvePair) => number[]) =>
      Array.from({ length: steps + 1 }, (_, i) => randoms.reduce((a, c) => a + f(c)[i], 0) / seeds);
    const rDel = mean((c) => c.deletion);
    const rIns = mean((c) => c.insertion);
    const result: FaithfulnessResult = {
      format: FAITHFULNESS_FORMAT,
      map: formatMapSpec(spec),
      token: k,
      token_id: m.generated_ids[k],
      token_text: m.generated_tokens[k],
      steps,
      fractions: Array.from({ length: steps + 1 }, (_, i) => i / steps),
      located_tokens: probe.located.length,
      run_probability: runProbability,
      curves,
      random: {
        deletion: rDel,
        insertion: rIns,
        deletion_auc: curveArea(rDel),
        insertion_auc: curveArea(rIns),
        seeds,
      },
      perturbation: PERTURBATION,
      forwards: probe.forwards,
      seconds: (performance.now() - t0) / 1000,
      created_at: new Date().toISOString(),
    };
    const file = faithfulnessFile(k, spec);
    writeFileAtomic(path.join(runDir, file), `${JSON.stringify(result, null, 1)}\n`);
    return { file, result };
  } finally {
    run.close();
    if (ownKernels && kernels) await kernels.dispose();
    if (ownModel && model) model.close();
  }
}

/** A stored check, or null when none was made for this token and map. */
export function readFaithfulness(runDir: string, token: number, spec: MapSpec): FaithfulnessResult | null {
  const file = faithfulnessFile(token, spec);
  let raw: string;
  try {
    raw = readRunFile(runDir, file).toString("utf8");
  } catch {
    return null;
  }
  try {
    const r = JSON.parse(raw) as FaithfulnessResult;
    if (r.format !== FAITHFULNESS_FORMAT) throw new Error(`format ${JSON.stringify(r.format)}`);
    return r;
  } catch (e) {
    throw new RunError(`${file}: not a faithfulness result (${(e as Error).message}); run the check again`);
  }
}
