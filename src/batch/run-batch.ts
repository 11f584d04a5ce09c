/**
 * Runs a dataset through one loaded model: per item a trace (a v2 run directory under out/runs/<id>), LLM
 * relevancy (and optionally vision maps and a causal explanation), then the case study's scores; report.json
 * is rewritten after every item. Resumable: a finished step of an item (run written, relevancy stored,
 * causal explanation written) is never redone, so a re-run after an interruption or with a larger --limit
 * only computes what is missing.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { WeightFormat } from "../contracts/lists.js";
import { explainRun } from "../interpret/causal/index.js";
import type { RelevancyMode, VisionRelevancyKind } from "../interpret/relevancy/index.js";
import { computeRelevancy, relevancyRecord } from "../interpret/relevancy/index.js";
import { templateTailLength } from "../interpret/views/relevancy-views.js";
import { createKernels } from "../kernels/index.js";
import type { KernelChoice } from "../kernels/types.js";
import { prepareWeights } from "../models/prepare.js";
import { loadModel } from "../models/registry.js";
import type { VisionLanguageModel } from "../models/types.js";
import { runWeightFormat } from "../run/manifest.js";
import { MANIFEST_FILE, Run } from "../run/run-dir.js";
import { traceWithModel } from "../trace.js";
import { judgeAnswer, promptFor } from "./answers.js";
import { type BatchItem, readDataset } from "./dataset.js";
import { scoreRun } from "./item-scores.js";
import { writePlots } from "./plots.js";
import {
  aggregate,
  BATCH_REPORT_FORMAT,
  type BatchReport,
  type ItemRecord,
  reportMarkdown,
  writeFileAtomic,
  writeReportJson,
} from "./report.js";

export interface BatchOptions {
  dataset: string;
  out: string;
  modelDir: string;
  relevancy: RelevancyMode;
  vision: VisionRelevancyKind[];
  causal: boolean;
  limit?: number;
  maxNewTokens: number;
  kernels?: KernelChoice;
  /** "int8": the language model's matrices quantised at load (opt-in; recorded in every run). */
  weights?: WeightFormat;
  /** Called after every item (skipped or computed). */
  onItem?: (record: ItemRecord, done: number, total: number, skipped: boolean) => void;
}

export interface BatchResult {
  report: BatchReport;
  computed: number;
  skipped: number;
}

function readImage(it: BatchItem): Uint8Array {
  try {
    return fs.readFileSync(it.imagePath);
  } catch (e) {
    throw new Error(`${it.image}: cannot read image (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
}

/**
 * Which steps of an item are already on disk. A run traced from another question, image or token budget
 * (the dataset was edited since) does not count as done.
 */
function itemState(
  runDir: string,
  mode: RelevancyMode,
  vision: VisionRelevancyKind[],
  want: { prompt: string; image: Uint8Array; maxNewTokens: number; weights: WeightFormat },
) {
  const none = { traced: false, related: false };
  if (!fs.existsSync(path.join(runDir, MANIFEST_FILE))) return none;
  const run = Run.open(runDir);
  try {
    const m = run.manifest;
    const original = path.join(runDir, m.original_image_file ?? "");
    if (
      m.prompt !== want.prompt ||
      m.settings.max_new_tokens !== want.maxNewTokens ||
      // A batch resumed with the other --weights redoes the item rather than mix the two models' runs.
      runWeightFormat(m) !== want.weights ||
      !m.original_image_file ||
      !fs.existsSync(original) ||
      !Buffer.from(want.image).equals(fs.readFileSync(original))
    )
      return none;
    const rec = relevancyRecord(run, mode);
    const G = m.generated_ids.length;
    const full = (ts: number[] | undefined) => (ts?.length ?? 0) === G;
    return { traced: true, related: full(rec?.computed.llm) && vision.every((k) => full(rec?.computed[k])) };
  } finally {
    run.close();
  }
}

export async function runBatch(opts: BatchOptions): Promise<BatchResult> {
  const ds = readDataset(opts.dataset);
  const items = opts.limit !== undefined ? ds.items.slice(0, opts.limit) : ds.items;
  const out = path.resolve(opts.out);
  // Before the model loads: an --out that cannot hold the batch fails now, in one line.
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory())
    throw new Error(`${opts.out}: --out is a file; pass a folder (new, or an earlier batch's to resume it)`);
  fs.mkdirSync(path.join(out, "runs"), { recursive: true });
  const model: VisionLanguageModel = loadModel(opts.modelDir, { weights: opts.weights });
  const kernels = await createKernels(opts.kernels ?? "auto");
  await prepareWeights(model, kernels);
  const stop = new Set(model.stopTokenIds);
  const records: ItemRecord[] = [];
  const report = (): BatchReport => ({
    format: BATCH_REPORT_FORMAT,
    created_at: new Date().toISOString(),
    complete: false,
    dataset: {
      path: path.relative(out, path.resolve(ds.path)) || ".",
      kind: ds.kind,
      items: ds.items.length,
    },
    model: { dir: path.resolve(model.dir), model_type: model.info.modelType, weights: model.info.weights },
    settings: {
      relevancy: opts.relevancy,
      vision: opts.vision,
      causal: opts.causal,
      limit: opts.limit ?? null,
      max_new_tokens: opts.maxNewTokens,
    },
    items: records,
    aggregates: aggregate(records, items.length),
    plots: [],
  });
  let computed = 0;
  let skipped = 0;
  try {
    for (const it of items) {
      const runDir = path.join(out, "runs", it.id);
      let record: ItemRecord;
      let did = false;
      try {
        ({ record, did } = await processItem(it, runDir));
      } catch (e) {
        // One bad item (an undecodable image, a prompt too long) must not cost the batch: record it, go on;
        // a re-run retries it.
        did = true;
        record = failedRecord(it, runDir, (e as Error).message.split("\n")[0]);
      }
      records.push(record);
      if (did) computed++;
      else skipped++;
      writeReportJson(out, report());
      opts.onItem?.(record, records.length, items.length, !did);
    }
    const final = { ...report(), complete: true };
    final.plots = await writePlots(out, records);
    writeReportJson(out, final);
    writeFileAtomic(path.join(out, "report.md"), reportMarkdown(final));
    return { report: final, computed, skipped };
  } finally {
    await kernels.dispose();
    model.close();
  }

  function failedRecord(it: BatchItem, runDir: string, error: string): ItemRecord {
    return {
      ...baseRecord(it, runDir),
      answer: null,
      correct: null,
      match: null,
      reliance: null,
      top_words: [],
      pointing: null,
      seconds: 0,
      error,
    };
  }

  function baseRecord(it: BatchItem, runDir: string) {
    return {
      id: it.id,
      index: it.index,
      pair: it.pair,
      run: path.relative(out, runDir).split(path.sep).join("/"),
      image: it.image,
      question: it.question,
      options: it.options,
      expected: it.answer,
    };
  }

  async function processItem(it: BatchItem, runDir: string): Promise<{ record: ItemRecord; did: boolean }> {
    const t0 = performance.now();
    const bytes = readImage(it);
    const prompt = promptFor(it.question, it.options);
    const state = itemState(runDir, opts.relevancy, opts.vision, {
      prompt,
      image: bytes,
      maxNewTokens: opts.maxNewTokens,
      weights: model.info.weights,
    });
    const causalFile = (k: number) => path.join(runDir, "causal", `${k}.json`);
    let did = false;
    if (!state.traced) {
      await traceWithModel(model, kernels, {
        image: { bytes, name: it.image },
        prompt,
        maxNewTokens: opts.maxNewTokens,
        temperature: 0,
        topP: 1,
        seed: 0,
        imageMode: "default",
        attnDtype: "f32",
        out: runDir,
        // A folder without a manifest is an interrupted item of this batch, one with another prompt or
        // image a stale one: redo it.
        overwrite: fs.existsSync(runDir),
      });
      did = true;
    }
    if (!state.related) {
      await computeRelevancy(runDir, { mode: opts.relevancy, vision: opts.vision, model, kernels });
      did = true;
    }
    const run = Run.open(runDir);
    let record: ItemRecord;
    try {
      const m = run.manifest;
      const answerTokens = m.generated_ids.map((id, t) => ({ id, t })).filter(({ id }) => !stop.has(id));
      const tokens = (answerTokens.length > 0 ? answerTokens : [{ id: -1, t: 0 }]).map(({ t }) => t);
      if (opts.causal && !fs.existsSync(causalFile(tokens[0]))) {
        await explainRun(runDir, { token: tokens[0] });
        did = true;
      }
      const promptTokens = m.input_ids.map((id) => model.text.idToToken(id));
      const tail = templateTailLength((q) => model.text.encodePrompt(q, m.image_layout.token_count).inputIds);
      const scores = scoreRun(run, opts.relevancy, promptTokens, tokens, it.box, {
        to: m.input_ids.length - tail,
      });
      const verdict = judgeAnswer(m.answer, it.answer, it.options);
      record = {
        ...baseRecord(it, runDir),
        answer: m.answer,
        correct: verdict.correct,
        match: verdict.match,
        reliance: scores.reliance,
        top_words: scores.top_words,
        pointing: scores.pointing,
        seconds: did
          ? (performance.now() - t0) / 1000
          : ((m.extras?.batch_seconds as number | undefined) ?? 0),
      };
      if (did) {
        run.manifest = { ...m, extras: { ...(m.extras ?? {}), batch_seconds: record.seconds } };
        run.saveManifest();
      }
    } finally {
      run.close();
    }
    return { record, did };
  }
}
