/**
 * `npm run bench:grounding`: does each explanation method point at the object the question is about?
 * On held-out synthetic scenes (known masks), for the first answer token:
 *   - answer accuracy;
 *   - pointing game: the map's maximum patch overlaps the asked object's mask; also over the questions the
 *     model answered right alone (a map that explains a wrong answer need not point at the object);
 *   - energy in mask: Σ map·coverage / Σ map over the 8×8 patch grid (map clipped at 0; coverage = fraction
 *     of the patch's pixels that belong to the object);
 *   - deletion AUC: the answer token's probability while the top patches by the map are deleted (painted with
 *     the processor's background colour, ≈ the dataset mean: src/interpret/faithfulness/perturb.ts, the same
 *     deletion as `lvlm-interpret check`), from 0 to 100 % of the patches, averaged over the steps (lower =
 *     the map found what the answer depends on).
 * Every method is compared with a random map.
 *
 *   npm run bench:grounding -- [--n 500] [--seed 7001] [--model DIR] [--steps 8] [--calib 100]
 *                              [--out docs/grounding.json] [--md docs/grounding.md] [--kernels auto]
 *                              [--workers 2]   (processes; default: up to 2, one ORT thread each here)
 */
import { type ChildProcess, fork } from "node:child_process";
import * as fs from "node:fs";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { askChild } from "../src/child-rpc.js";
import { defaultModelDir } from "../src/cli/default-model.js";
import { stderrProgress } from "../src/cli/progress.js";
import { generate } from "../src/generate/generate.js";
import { attentionRolloutRow } from "../src/interpret/attention-rollout.js";
import { contiguousLayout, DEFAULT_CLEANN_PARAMS } from "../src/interpret/causal/cleann.js";
import { aggregatePatchWeights, explainLayer } from "../src/interpret/causal/explain-run.js";
import { deletionCurve, TokenProbe, tokenOrder } from "../src/interpret/faithfulness/index.js";
import { curveArea, energyInMask, isFlat, pointingHit } from "../src/interpret/grounding-scores.js";
import { relevancyMaps } from "../src/interpret/relevancy/index.js";
import { createKernels, parseKernelChoice } from "../src/kernels/index.js";
import type { KernelChoice, Kernels } from "../src/kernels/types.js";
import { layoutBoxes } from "../src/models/image-layout.js";
import { loadModel } from "../src/models/registry.js";
import type { PreparedImage, VisionLanguageModel } from "../src/models/types.js";
import { objectPatchCoverage, SHAPES_PATCH_SIZE, type ShapesSample, sample } from "../src/shapes/dataset.js";
import { Rng } from "../src/tensor/rng.js";

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

export interface MethodScores {
  pointing_game: number;
  /** Pointing game over the correctly answered questions only. */
  pointing_game_correct: number;
  /** Pointing game per question kind ("exists" questions here all have the answer yes). */
  pointing_game_by_kind: Record<string, number>;
  energy_in_mask: number;
  deletion_auc: number;
  /** Share of questions whose map is flat (no patch singled out; the pointing game then scores a random pick). */
  flat_maps: number;
}

/** One prepared example: a question about exactly one object, with everything the maps need. */
interface Example {
  s: ShapesSample;
  image: PreparedImage;
  inputIds: number[];
  answerId: number;
  correct: boolean;
  /** Per image token, the fraction of its patch covered by the asked object. */
  coverage: Float32Array;
  /** LLM attention of every layer over the prompt ([H, T, T]). */
  attn: Float32Array[];
  T: number;
  imageStart: number;
  P: number;
}

/** [rows, cols] of the example's one patch grid. */
function patchGrid(ex: Example): [number, number] {
  const g = ex.image.layout.segments.find((s) => s.kind === "grid");
  if (g?.kind !== "grid" || ex.image.layout.segments.length !== 1)
    throw new Error("the grounding benchmark needs a model whose image is one patch grid");
  return [g.rows, g.cols];
}

/** Single-object questions: the map has one right place to point at. */
function isGroundable(s: ShapesSample): boolean {
  return s.qa.target_object !== null && s.qa.kind !== "bigger" && s.qa.kind !== "count";
}

async function prepare(model: VisionLanguageModel, kernels: Kernels, s: ShapesSample): Promise<Example> {
  const pre = model.preprocess(s.scene.image, "default");
  const enc = model.text.encodePrompt(s.qa.question, pre.layout.token_count);
  const image = await model.encodeImage(kernels, pre.pixels);
  const gen = await generate(model, kernels, enc.inputIds, image, pre.layout, {
    maxNewTokens: 1,
    temperature: 0,
    topP: 1,
    seed: 0,
    stopIds: [...model.stopTokenIds],
  });
  const answerId = model.text.tokenId(s.qa.answer);
  if (answerId === undefined) throw new Error(`answer "${s.qa.answer}" is not in the vocabulary`);
  const T = enc.inputIds.length;
  return {
    s,
    image: pre,
    inputIds: enc.inputIds,
    answerId,
    correct: gen.generatedIds[0] === answerId,
    coverage: objectPatchCoverage(s.scene, s.qa.target_object!, SHAPES_PATCH_SIZE),
    attn: gen.llmAttn.takeAll(),
    T,
    imageStart: enc.imageTokenStart,
    P: enc.imageTokenCount,
  };
}

/** Image columns of row `row` of a [H, S, S] attention, averaged over the given heads. */
function attentionRow(
  a: Float32Array,
  S: number,
  heads: number[],
  row: number,
  c0: number,
  P: number,
): Float32Array {
  const out = new Float32Array(P);
  for (const h of heads) for (let i = 0; i < P; i++) out[i] += a[(h * S + row) * S + c0 + i] / heads.length;
  return out;
}

/** Attention rollout (the library's) read at the image positions. */
function rollout(
  attn: Float32Array[],
  H: number,
  S: number,
  row: number,
  c0: number,
  P: number,
): Float32Array {
  const r = attentionRolloutRow(attn, H, S, row);
  return Float32Array.from({ length: P }, (_, i) => r[c0 + i]);
}

/** The first answer token's probability as patches are deleted (the library's definition of deleting). */
function probeOf(model: VisionLanguageModel, kernels: Kernels, ex: Example): TokenProbe {
  return new TokenProbe(model, kernels, {
    picture: ex.s.scene.image,
    mode: "default",
    layout: ex.image.layout,
    boxes: layoutBoxes(ex.image.layout),
    ids: ex.inputIds,
    targetId: ex.answerId,
  });
}

async function deletionAuc(probe: TokenProbe, map: Float32Array, steps: number, rng: Rng): Promise<number> {
  return curveArea(await deletionCurve(probe, tokenOrder(map, probe.located, rng), steps));
}

type MapFn = (ex: Example) => Promise<Float32Array>;

/** What a process needs to score questions (sent to each worker). */
interface EvalSetup {
  modelDir: string;
  kernels: KernelChoice;
  /** ORT threads per process (1 when several processes share the cores). */
  threads?: number;
  seed: number;
  steps: number;
  bestLayer: number;
  bestHead: number;
}

interface MapScores {
  hit: number;
  flat: boolean;
  energy: number;
  auc: number;
}

/** Every method's scores on one question (the `index`-th sample of the seed). */
interface QuestionScores {
  index: number;
  kind: string;
  correct: boolean;
  /** By method name, in a fixed order; "random" last. */
  maps: Record<string, MapScores>;
}

async function openEvaluator(setup: EvalSetup) {
  const model = loadModel(setup.modelDir);
  const kernels = await createKernels(setup.kernels, { threads: setup.threads });
  const H = model.info.llmHeads;
  const L = model.info.llmLayers;
  const allHeads = Array.from({ length: H }, (_, h) => h);
  const { bestLayer, bestHead } = setup;
  const relevancy = async (ex: Example, mode: "exact" | "incremental") =>
    (
      await relevancyMaps(
        model,
        kernels,
        {
          inputIds: ex.inputIds,
          generatedIds: [ex.answerId],
          pixels: ex.image.pixels,
          layout: ex.image.layout,
        },
        { mode, vision: ["vit", "all", "all_v2", "chain"], tokens: [0] },
      )
    ).tokens[0];
  const cls = (row: Float32Array | undefined) =>
    Float32Array.from({ length: row!.length - 1 }, (_, i) => row![i + 1]);
  // Both modes serve several methods: computed once per question.
  let relCache = new Map<string, Awaited<ReturnType<typeof relevancy>>>();
  const rel = async (ex: Example, mode: "exact" | "incremental") => {
    if (!relCache.has(mode)) relCache.set(mode, await relevancy(ex, mode));
    return relCache.get(mode)!;
  };
  const llmImage = (row: Float32Array, ex: Example) => row.slice(ex.imageStart, ex.imageStart + ex.P);

  const methods: Record<string, MapFn> = {
    attention_last_layer_mean: async (ex) =>
      attentionRow(ex.attn[L - 1], ex.T, allHeads, ex.T - 1, ex.imageStart, ex.P),
    [`attention_best_layer${bestLayer}_head${bestHead}`]: async (ex) =>
      attentionRow(ex.attn[bestLayer], ex.T, [bestHead], ex.T - 1, ex.imageStart, ex.P),
    attention_rollout: async (ex) => rollout(ex.attn, H, ex.T, ex.T - 1, ex.imageStart, ex.P),
    relevancy_llm_exact: async (ex) => llmImage((await rel(ex, "exact")).llm, ex),
    relevancy_llm_incremental: async (ex) => llmImage((await rel(ex, "incremental")).llm, ex),
    relevancy_vit_exact: async (ex) => cls((await rel(ex, "exact")).vit),
    relevancy_all_exact: async (ex) => cls((await rel(ex, "exact")).all),
    relevancy_all_v2_exact: async (ex) => cls((await rel(ex, "exact")).allV2),
    relevancy_chain_exact: async (ex) => (await rel(ex, "exact")).chain!,
    relevancy_all_incremental: async (ex) => cls((await rel(ex, "incremental")).all),
    causal_explanation_last_layer: async (ex) => {
      const S = ex.T;
      const recs = await explainLayer(
        ex.attn[L - 1],
        [H, S, S],
        S - 1,
        contiguousLayout(ex.imageStart, ex.P),
        allHeads,
        DEFAULT_CLEANN_PARAMS,
        1,
      );
      return Float32Array.from(aggregatePatchWeights(recs, ex.P, patchGrid(ex)).sum.flat());
    },
  };

  const score = async (index: number): Promise<QuestionScores> => {
    const s = sample(setup.seed, index);
    const ex = await prepare(model, kernels, s);
    const probe = probeOf(model, kernels, ex);
    // Seeded per question, so the scores do not depend on which process took which question.
    const tieRng = new Rng(setup.seed * 1000003 + index);
    const randomRng = new Rng((setup.seed ^ 0x5eed) * 1000003 + index);
    const maps: Record<string, MapScores> = {};
    for (const name of [...Object.keys(methods), "random"]) {
      const map =
        name === "random"
          ? Float32Array.from({ length: ex.P }, () => randomRng.next())
          : await methods[name](ex);
      maps[name] = {
        hit: pointingHit(map, ex.coverage),
        flat: isFlat(map),
        energy: energyInMask(map, ex.coverage),
        auc: await deletionAuc(probe, map, setup.steps, tieRng),
      };
    }
    relCache = new Map();
    return { index, kind: s.qa.kind, correct: ex.correct, maps };
  };
  const close = async () => {
    await kernels.dispose();
    model.close();
  };
  return { score, close };
}

/** A forked copy of this script that scores the questions it is sent, one message each way. */
const WORKER_ENV = "LVLM_GROUNDING_WORKER";
type WorkerRequest = { setup: EvalSetup } | { index: number };

function runWorker(): void {
  let evaluator: Awaited<ReturnType<typeof openEvaluator>> | undefined;
  process.on("message", async (m: WorkerRequest) => {
    try {
      if ("setup" in m) {
        evaluator = await openEvaluator(m.setup);
        process.send!({ ready: true });
      } else process.send!(await evaluator!.score(m.index));
    } catch (e) {
      process.send!({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  });
  process.on("disconnect", () => {
    void evaluator?.close().then(() => process.exit(0));
  });
}

/** Scores the questions over `workers` processes (in this one when 1), handing out one question at a time. */
async function scoreAll(
  setup: EvalSetup,
  indices: number[],
  workers: number,
  onDone: () => void,
): Promise<QuestionScores[]> {
  const results: QuestionScores[] = [];
  if (workers <= 1) {
    const ev = await openEvaluator(setup);
    try {
      for (const i of indices) {
        results.push(await ev.score(i));
        onDone();
      }
    } finally {
      await ev.close();
    }
    return results;
  }
  const script = fileURLToPath(import.meta.url);
  const procs = Array.from({ length: workers }, () =>
    fork(script, [], {
      env: { ...process.env, [WORKER_ENV]: "1" },
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    }),
  );
  // One reply per request; a worker that dies or reports an error fails the whole run.
  const ask = (w: ChildProcess, req: WorkerRequest) => askChild<unknown>(w, req, "a benchmark worker");
  try {
    const threads = Math.max(1, Math.floor(availableParallelism() / workers));
    await Promise.all(procs.map((w) => ask(w, { setup: { ...setup, threads } })));
    let next = 0;
    await Promise.all(
      procs.map(async (w) => {
        while (next < indices.length) {
          const index = indices[next++];
          results.push((await ask(w, { index })) as QuestionScores);
          onDone();
        }
      }),
    );
  } finally {
    for (const w of procs) w.disconnect();
  }
  // Summed in question order, so the totals do not depend on the workers' timing.
  return results.sort((a, b) => a.index - b.index);
}

async function main(): Promise<void> {
  const n = Number(flag("--n", "500"));
  const seed = Number(flag("--seed", "7001"));
  const steps = Number(flag("--steps", "8"));
  const calibN = Number(flag("--calib", "100"));
  const workers = Number(flag("--workers", String(Math.min(2, availableParallelism()))));
  const out = flag("--out", "docs/grounding.json");
  const md = flag("--md", out.replace(/\.json$/, ".md"));
  const modelDir = flag("--model", defaultModelDir());
  const kernelChoice = parseKernelChoice(flag("--kernels", "auto"));
  for (const [name, v] of [
    ["--n", n],
    ["--steps", steps],
    ["--calib", calibN],
    ["--workers", workers],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} ${v}: expected a positive integer`);
  const model = loadModel(modelDir);
  const kernels = await createKernels(kernelChoice);
  const progress = stderrProgress();
  const H = model.info.llmHeads;
  const L = model.info.llmLayers;

  // Calibration split (a different seed) picks the best single layer/head by pointing game.
  progress("calibrate", 0, calibN);
  const hits = new Float64Array(L * H);
  let calibDone = 0;
  for (let i = 0; calibDone < calibN; i++) {
    const s = sample(seed + 1, i);
    if (!isGroundable(s)) continue;
    const ex = await prepare(model, kernels, s);
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++)
        hits[l * H + h] += pointingHit(
          attentionRow(ex.attn[l], ex.T, [h], ex.T - 1, ex.imageStart, ex.P),
          ex.coverage,
        );
    }
    progress("calibrate", ++calibDone, calibN);
  }
  await kernels.dispose();
  model.close();
  let bestLH = 0;
  for (let i = 1; i < hits.length; i++) if (hits[i] > hits[bestLH]) bestLH = i;
  const bestLayer = Math.floor(bestLH / H);
  const bestHead = bestLH % H;

  const indices: number[] = [];
  for (let i = 0; indices.length < n; i++) if (isGroundable(sample(seed, i))) indices.push(i);
  let done = 0;
  progress("evaluate", 0, n);
  const records = await scoreAll(
    { modelDir, kernels: kernelChoice, seed, steps, bestLayer, bestHead },
    indices,
    workers,
    () => progress("evaluate", ++done, n),
  );

  const names = Object.keys(records[0]!.maps);
  const sums = new Map(
    names.map((k) => [
      k,
      {
        pointing_game: 0,
        pointing_game_correct: 0,
        hitsByKind: {} as Record<string, number>,
        energy_in_mask: 0,
        deletion_auc: 0,
        flat_maps: 0,
      },
    ]),
  );
  const questionsByKind: Record<string, number> = {};
  let correct = 0;
  for (const r of records) {
    if (r.correct) correct++;
    questionsByKind[r.kind] = (questionsByKind[r.kind] ?? 0) + 1;
    for (const name of names) {
      const acc = sums.get(name)!;
      const m = r.maps[name]!;
      if (m.flat) acc.flat_maps++;
      acc.pointing_game += m.hit;
      if (r.correct) acc.pointing_game_correct += m.hit;
      acc.hitsByKind[r.kind] = (acc.hitsByKind[r.kind] ?? 0) + m.hit;
      acc.energy_in_mask += m.energy;
      acc.deletion_auc += m.auc;
    }
  }

  const kinds = Object.keys(questionsByKind).sort();
  const avg = (k: string): MethodScores => {
    const a = sums.get(k)!;
    return {
      pointing_game: a.pointing_game / n,
      pointing_game_correct: correct > 0 ? a.pointing_game_correct / correct : Number.NaN,
      pointing_game_by_kind: Object.fromEntries(
        kinds.map((kind) => [kind, (a.hitsByKind[kind] ?? 0) / questionsByKind[kind]!]),
      ),
      energy_in_mask: a.energy_in_mask / n,
      deletion_auc: a.deletion_auc / n,
      flat_maps: a.flat_maps / n,
    };
  };
  const result = {
    n,
    seed,
    model: path.relative(process.cwd(), modelDir) || modelDir,
    answer_accuracy: correct / n,
    deletion_steps: steps,
    best_layer_head: { layer: bestLayer, head: bestHead, calibration_seed: seed + 1, calibration_n: calibN },
    methods: Object.fromEntries(names.filter((k) => k !== "random").map((k) => [k, avg(k)])),
    random_baseline: avg("random"),
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  const row = (k: string, v: MethodScores) =>
    `| ${k} | ${(100 * v.pointing_game).toFixed(1)} % | ${(100 * v.pointing_game_correct).toFixed(1)} % | ${(100 * v.energy_in_mask).toFixed(1)} % | ${v.deletion_auc.toFixed(3)} | ${(100 * v.flat_maps).toFixed(1)} % |`;
  const table = [
    `# Grounding benchmark`,
    ``,
    `${n} held-out questions about one object each (seed ${seed}; kinds color, shape, where, exists-yes), model \`${result.model}\`.`,
    `Answer accuracy: **${(100 * result.answer_accuracy).toFixed(1)} %**. Maps explain the first answer token.`,
    `Pointing game and energy in mask: higher is better. Deletion AUC (answer probability while the top patches`,
    `are deleted — painted with the processor's background colour, as \`lvlm-interpret check\` deletes them —, ${steps} steps`,
    `from 0 to 100 %): lower is better. "Best layer/head" was chosen on ${calibN} calibration`,
    `questions of another seed.`,
    ``,
    `| method | pointing game | pointing, answered right (${correct}) | energy in mask | deletion AUC | flat maps |`,
    `|---|---|---|---|---|---|`,
    ...Object.entries(result.methods).map(([k, v]) => row(k, v)),
    row("random baseline", result.random_baseline),
    ``,
    `Pointing game by question kind ("exists": questions whose answer is yes):`,
    ``,
    `| method | ${kinds.map((kind) => `${kind} (${questionsByKind[kind]})`).join(" | ")} |`,
    `|---|${kinds.map(() => "---|").join("")}`,
    ...[...Object.entries(result.methods), ["random baseline", result.random_baseline] as const].map(
      ([k, v]) =>
        `| ${k} | ${kinds.map((kind) => `${(100 * v.pointing_game_by_kind[kind]!).toFixed(1)} %`).join(" | ")} |`,
    ),
    ``,
    `Reproduce: \`npm run bench:grounding -- --n ${n} --seed ${seed}\``,
    ``,
  ].join("\n");
  fs.writeFileSync(md, table);
  process.stdout.write(`${table}\n`);
}

if (process.env[WORKER_ENV]) runWorker();
else await main();
