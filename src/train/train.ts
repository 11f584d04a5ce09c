/**
 * Trains the shapes model: seeded, AdamW with warm-up + cosine decay, loss on answer tokens only (after an
 * optional stage 1 that trains the vision tower on per-patch labels, see vision-pretrain.ts), data-parallel
 * over worker processes (each computes a share of the batch's gradients with the ordinary model code), with
 * resumable checkpoints and a final float16 export as a normal llava-hf folder.
 */

import { type ChildProcess, fork } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { askChild } from "../child-rpc.js";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "../hf/safetensors.js";
import { createKernels } from "../kernels/index.js";
import { loadModel } from "../models/registry.js";
import type { VisionLanguageModel } from "../models/types.js";
import { checkNewDir, checkNotExisting, makeDirs, makeTempDir } from "../run/out-dir.js";
import { writeFileAtomic } from "../run/run-dir.js";
import { type SampleOptions, sample } from "../shapes/dataset.js";
import { f32ToF16 } from "../tensor/half.js";
import { AdamW, cosineSchedule, type Param } from "./adamw.js";
import { makeExample } from "./examples.js";
import type { WorkerSetup, WorkRequest, WorkResult } from "./grad-worker.js";
import { createShapesModel, DEFAULT_SHAPES_DIMS, type ShapesModelDims } from "./shapes-model.js";
import { trainingStep } from "./step.js";
import { createPatchHead } from "./vision-pretrain.js";

const OUT_HINT = "choose another --out, or pass --overwrite to replace it";

export interface TrainOptions {
  /**
   * Checkpoint folder (a full model folder plus optimizer state); resumed when it holds a state, with the
   * recorded options (stage-2 options from this call while stage 2 has not begun).
   */
  checkpoint: string;
  /** Where the final float16 model goes: a new folder, or an existing one replaced only with `overwrite`. */
  out: string;
  /** Replace an existing `out` (checked before training starts, so a refusal costs nothing). */
  overwrite?: boolean;
  steps: number;
  /** Images per step. */
  batch: number;
  /** Questions asked about each training image (multi-turn); evaluation always asks one. */
  turns: number;
  /** Training data options (scene and question distribution); evaluation always uses the defaults. */
  data?: SampleOptions;
  /**
   * The first this-many of `steps` are stage 1: the vision tower learns per-patch shape and colour through a
   * throw-away head (see vision-pretrain.ts); the rest train on answer tokens (the whole model, or all but the
   * tower with `freezeVision`). Each stage has its own warm-up and cosine decay.
   */
  visionSteps: number;
  /** The first this-many stage-1 steps use the easy scenes (EASY_SCENES in vision-pretrain.ts); default 0. */
  visionEasySteps?: number;
  /** Peak learning rate (stage 1, and stage 2 unless `answerLr` is given). */
  lr: number;
  /** Stage 2's images per step and peak learning rate; default `batch` and `lr`. */
  answerBatch?: number;
  answerLr?: number;
  /**
   * Stage 2 leaves the vision tower as stage 1 made it: only the projector and the language model learn
   * (measured: otherwise the untrained language model's first gradients wash out the tower's shape features).
   */
  freezeVision?: boolean;
  /**
   * Further stage-2 cycles after `steps` (warm restarts): each has its own warm-up and cosine decay from its
   * peak learning rate. The run then ends at `steps` plus their steps. A finished run can be given one more
   * (see `trainShapes`): training goes on from its last step with fresh images.
   */
  extraCycles?: StageCycle[];
  warmup: number;
  weightDecay: number;
  clip: number;
  seed: number;
  evalSeed: number;
  evalN: number;
  evalEvery: number;
  checkpointEvery: number;
  workers: number;
  dims?: ShapesModelDims;
  /**
   * Stop after this step with a checkpoint and no export (a later call resumes): for splitting a long run
   * over several sittings. Not recorded in the training state.
   */
  pauseAfter?: number;
  log?: (line: string) => void;
}

export interface StageCycle {
  steps: number;
  lr: number;
}

export interface TrainResult {
  /** False when the run paused (see {@link TrainOptions.pauseAfter}) before its last step. */
  finished: boolean;
  step: number;
  /** Latest held-out accuracy (NaN when none was measured yet). */
  finalEvalAccuracy: number;
  seconds: number;
}

interface TrainState {
  step: number;
  options: Omit<TrainOptions, "log" | "checkpoint" | "out" | "overwrite">;
  /** train_acc: first-token accuracy over every answer of the window's training conversations. */
  history: {
    step: number;
    /** Stage: "vision" (train_acc = patches whose shape and colour are both right) or "answer". */
    phase?: "vision" | "answer";
    loss: number;
    train_acc: number;
    eval_acc?: number;
    eval_by_kind?: Record<string, number>;
    seconds: number;
  }[];
  seconds: number;
}

/** Options that act only from stage 2 on (stage 1 never reads them). */
const STAGE_2_OPTIONS = [
  "steps",
  "turns",
  "answerBatch",
  "answerLr",
  "freezeVision",
  "evalSeed",
  "evalN",
  "evalEvery",
] as const satisfies readonly (keyof TrainOptions)[];

const STATE = "train-state.json";
const OPTIMIZER = "optimizer.safetensors";
const PATCH_HEAD = "patch-head.safetensors";

const cycleText = (cycles: StageCycle[]) => cycles.map((c) => `${c.steps}:${c.lr}`).join(",") || "none";

/**
 * The extra stage-2 cycles of a resumed run: the recorded ones, plus any that `asked` lists after them.
 * Appending is safe at any point of a run: the schedule of the steps before the new cycles does not change.
 */
function extendedCycles(state: TrainState, asked: StageCycle[], log: (l: string) => void): StageCycle[] {
  const recorded = state.options.extraCycles ?? [];
  if (asked.length === 0) return recorded;
  const same = (a: StageCycle, b: StageCycle) => a.steps === b.steps && a.lr === b.lr;
  if (asked.length < recorded.length || !recorded.every((c, i) => same(c, asked[i]!)))
    throw new RangeError(
      `the checkpoint's run has extra cycles ${cycleText(recorded)}; the extra cycles asked for (${cycleText(asked)}) must list them first`,
    );
  if (asked.length > recorded.length)
    log(`extending stage 2 by ${cycleText(asked.slice(recorded.length))} (steps:peak lr, warm restarts)`);
  return asked;
}

/**
 * A finished run's export (a model folder with its training.json and no checkpoint state) can be trained
 * further: its record becomes the state. The export keeps no optimizer moments (nor stage 1's patch head,
 * which stage 2 does not use), so the continuation is reproducible from the export, not bit-identical to
 * extending the original checkpoint.
 */
function exportedState(dir: string): TrainState | undefined {
  const record = path.join(dir, "training.json");
  if (fs.existsSync(path.join(dir, STATE)) || !fs.existsSync(record)) return undefined;
  const { steps_done, seconds, history, ...options } = JSON.parse(fs.readFileSync(record, "utf8"));
  if (typeof steps_done !== "number")
    throw new Error(`${record}: no steps_done; it is not the record of a finished training run`);
  return { step: steps_done, options, history, seconds };
}

/** Rewrites a weights file in float32 (training updates float32 weights in place). */
function widenToF32(file: string): void {
  const st = SafetensorsFile.open(file);
  const tensors: TensorToWrite[] = [...st.tensors.values()].map((t) => ({
    name: t.name,
    dtype: "F32",
    shape: t.shape,
    data: st.readF32(t.name),
  }));
  st.close();
  writeSafetensors(`${file}.tmp`, tensors);
  fs.renameSync(`${file}.tmp`, file);
}

/** Where the run ends: stage 1, the first stage-2 cycle, then the extra cycles. */
export function totalSteps(opts: Pick<TrainOptions, "steps" | "extraCycles">): number {
  return opts.steps + (opts.extraCycles ?? []).reduce((n, c) => n + c.steps, 0);
}

/** Learning rate of a step: each stage and each stage-2 cycle has its own warm-up and cosine decay. */
export function learningRate(
  opts: Pick<TrainOptions, "steps" | "extraCycles" | "visionSteps" | "warmup" | "lr" | "answerLr">,
  step: number,
): number {
  const V = opts.visionSteps;
  if (step < V) return cosineSchedule(step, V, opts.warmup, opts.lr);
  if (step < opts.steps)
    return cosineSchedule(step - V, opts.steps - V, opts.warmup, opts.answerLr ?? opts.lr);
  let start = opts.steps;
  for (const c of opts.extraCycles ?? []) {
    if (step < start + c.steps) return cosineSchedule(step - start, c.steps, opts.warmup, c.lr);
    start += c.steps;
  }
  throw new RangeError(`step ${step} is past the run's end (${start})`);
}

function sortedParams(model: VisionLanguageModel): { name: string; shape: number[]; data: Float32Array }[] {
  return model.parameters().sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Norm gains, biases and embeddings are not decayed; weight matrices are. */
function decays(name: string, shape: number[]): boolean {
  return shape.length >= 2 && !name.includes("embed") && !name.includes("embedding");
}

function saveModelWeights(model: VisionLanguageModel, file: string, dtype: "F32" | "F16"): void {
  const tensors: TensorToWrite[] = sortedParams(model).map((p) => {
    const name = model.diskName(p.name);
    if (dtype === "F32") return { name, dtype, shape: p.shape, data: p.data };
    const u = new Uint16Array(p.data.length);
    for (let i = 0; i < u.length; i++) u[i] = f32ToF16(p.data[i]);
    return { name, dtype, shape: p.shape, data: u };
  });
  const tmp = `${file}.tmp`;
  writeSafetensors(tmp, tensors);
  fs.renameSync(tmp, file);
}

interface Evaluation {
  accuracy: number;
  /** Accuracy per question kind. */
  byKind: Record<string, number>;
}

/** First-answer-token accuracy on one-question prompts (what inference sees) of a held-out seed. */
async function evaluate(model: VisionLanguageModel, seed: number, n: number): Promise<Evaluation> {
  const kernels = await createKernels("auto");
  let correct = 0;
  const kinds: Record<string, [number, number]> = {};
  for (let i = 0; i < n; i++) {
    const ok = (await trainingStep(model, kernels, makeExample(model, { seed }, i), null)).firstTokenCorrect;
    const kind = sample(seed, i).qa.kind;
    const k = kinds[kind] ?? [0, 0];
    kinds[kind] = k;
    k[1]++;
    if (ok) {
      correct++;
      k[0]++;
    }
  }
  await kernels.dispose();
  const byKind = Object.fromEntries(Object.entries(kinds).map(([k, [c, t]]) => [k, c / t]));
  return { accuracy: correct / n, byKind };
}

export async function trainShapes(opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const ckpt = path.resolve(opts.checkpoint);
  const statePath = path.join(ckpt, STATE);
  let state: TrainState;
  const {
    log: _l,
    checkpoint: _c,
    out: _o,
    overwrite: _w,
    pauseAfter: _p,
    extraCycles: asked,
    ...recorded
  } = opts;
  // Before any work: training takes hours, and its export must not replace a model (the shipped one) unasked.
  checkNewDir(opts.out, { overwrite: opts.overwrite, overwriteHint: OUT_HINT });
  const exported = exportedState(ckpt);
  if (exported) {
    widenToF32(path.join(ckpt, "model.safetensors"));
    log(
      `continuing the exported model in ${ckpt} from step ${exported.step}: its float16 weights are widened to float32; the optimizer's moments start at zero`,
    );
  }
  const resumed: TrainState | undefined =
    exported ?? (fs.existsSync(statePath) ? JSON.parse(fs.readFileSync(statePath, "utf8")) : undefined);
  if (resumed) {
    state = resumed;
    if (!exported) log(`resuming from ${ckpt} at step ${state.step}/${totalSteps(state.options)}`);
    // Recorded options win; options the checkpoint predates are taken from this call, and recorded.
    const before = state.options;
    state.options = { ...recorded, ...before };
    // Until stage 2 takes its first step, its options have not acted yet: this call's values apply.
    if (before.visionSteps > 0 && state.step <= before.visionSteps) {
      for (const key of STAGE_2_OPTIONS) {
        if (recorded[key] === undefined || recorded[key] === before[key]) continue;
        log(`stage 2 has not begun: ${key} ${before[key]} → ${recorded[key]} (from this call)`);
        Object.assign(state.options, { [key]: recorded[key] });
      }
    }
    state.options.extraCycles = extendedCycles(state, asked ?? [], log);
    Object.assign(opts, state.options);
  } else {
    createShapesModel(ckpt, opts.dims ?? DEFAULT_SHAPES_DIMS, opts.seed);
    // Every optional setting is recorded with its value, so a resumed run never mistakes one left unset
    // for one the checkpoint predates.
    const settled = {
      ...recorded,
      data: opts.data ?? {},
      dims: opts.dims ?? DEFAULT_SHAPES_DIMS,
      visionEasySteps: opts.visionEasySteps ?? 0,
      answerBatch: opts.answerBatch ?? opts.batch,
      answerLr: opts.answerLr ?? opts.lr,
      freezeVision: opts.freezeVision ?? false,
      extraCycles: asked ?? [],
    };
    state = { step: 0, options: settled, history: [], seconds: 0 };
    Object.assign(opts, settled);
  }
  if (!(opts.visionSteps >= 0 && opts.visionSteps < opts.steps))
    throw new RangeError(`vision steps (${opts.visionSteps}) must be fewer than steps (${opts.steps})`);
  if ((opts.visionEasySteps ?? 0) > opts.visionSteps)
    throw new RangeError(
      `easy vision steps (${opts.visionEasySteps}) must not exceed vision steps (${opts.visionSteps})`,
    );
  if (opts.freezeVision && opts.visionSteps === 0)
    throw new RangeError("freezing the vision tower needs stage 1 (vision steps > 0): it would stay random");
  const model = loadModel(ckpt);
  const head = createPatchHead(model.info.towerFeatureWidth, opts.seed);
  const headFile = path.join(ckpt, PATCH_HEAD);
  if (state.step > 0 && fs.existsSync(headFile)) {
    const st = SafetensorsFile.open(headFile);
    for (const t of head.tensors) t.data.set(st.readF32(t.name));
    st.close();
  }
  // Same order as the workers' flat weight vector: model tensors by name, then the head.
  const tensors = [...sortedParams(model), ...head.tensors];
  const total = tensors.reduce((n, p) => n + p.data.length, 0);
  const params: Param[] = tensors.map((p) => ({
    name: p.name,
    data: p.data,
    grad: new Float32Array(p.data.length),
    decay: decays(p.name, p.shape),
  }));
  const adam = new AdamW(params, {
    lr: opts.lr,
    beta1: 0.9,
    beta2: 0.98,
    eps: 1e-8,
    weightDecay: opts.weightDecay,
  });
  const optFile = path.join(ckpt, OPTIMIZER);
  if (state.step > 0 && fs.existsSync(optFile)) {
    const st = SafetensorsFile.open(optFile);
    params.forEach((p, j) => {
      // Checkpoints from before the patch head have no moments for it: they start at zero.
      if (!st.tensors.has(`m.${p.name}`)) return;
      adam.m[j].set(st.readF32(`m.${p.name}`));
      adam.v[j].set(st.readF32(`v.${p.name}`));
    });
    st.close();
    adam.step = state.step;
  }
  const stages =
    opts.visionSteps > 0
      ? `stage 1: ${opts.visionSteps} steps × batch ${opts.batch}; stage 2: ${opts.steps - opts.visionSteps} steps × batch ${opts.answerBatch ?? opts.batch}${opts.freezeVision ? " (tower frozen)" : ""}${(opts.extraCycles ?? []).length > 0 ? `, then ${cycleText(opts.extraCycles ?? [])} (steps:peak lr)` : ""}`
      : `${opts.steps} steps × batch ${opts.batch}`;
  log(`model: ${total} parameters; ${stages}; ${opts.workers} workers`);

  const workerScript = fileURLToPath(new URL("./grad-worker.js", import.meta.url));
  const workers: ChildProcess[] = [];
  // One reply per request; a worker that exits or fails to start rejects whatever waits on it.
  const ask = (w: ChildProcess, req: WorkRequest) => askChild<WorkResult>(w, req, "a training worker");

  const flat = new Float32Array(total);
  const V = opts.visionSteps;
  const answerBatch = opts.answerBatch ?? opts.batch;
  const batchAt = (step: number) => (step < V ? opts.batch : answerBatch);
  // Training images are numbered in order; a step's batch starts where the previous one ended.
  const imagesBefore = (step: number) =>
    step < V ? step * opts.batch : V * opts.batch + (step - V) * answerBatch;
  const lrAt = (step: number) => learningRate(opts, step);
  const lastStep = totalSteps(opts);
  const inTower = (name: string) => name.startsWith("vision.") || name.startsWith("patch_head.");
  const saveCheckpoint = () => {
    saveModelWeights(model, path.join(ckpt, "model.safetensors"), "F32");
    writeSafetensors(
      `${headFile}.tmp`,
      head.tensors.map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: t.data })),
    );
    fs.renameSync(`${headFile}.tmp`, headFile);
    const opt: TensorToWrite[] = params.flatMap((p, j) => [
      { name: `m.${p.name}`, dtype: "F32" as const, shape: [p.data.length], data: adam.m[j] },
      { name: `v.${p.name}`, dtype: "F32" as const, shape: [p.data.length], data: adam.v[j] },
    ]);
    writeSafetensors(`${optFile}.tmp`, opt);
    fs.renameSync(`${optFile}.tmp`, optFile);
    writeFileAtomic(statePath, `${JSON.stringify(state, null, 1)}\n`);
  };

  let windowLoss = 0;
  let windowCorrect = 0;
  let windowAnswers = 0;
  let windowCount = 0;
  const t0 = performance.now() - state.seconds * 1000;
  try {
    for (let k = 0; k < opts.workers; k++) {
      const w = fork(workerScript, [], {
        serialization: "advanced",
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      });
      workers.push(w);
      const setup: WorkerSetup = {
        modelDir: ckpt,
        source: { seed: opts.seed, turns: opts.turns, options: opts.data },
      };
      await askChild<"ready">(w, setup, "a training worker");
    }
    const stopAt = Math.min(lastStep, opts.pauseAfter ?? lastStep);
    let since: { phase: string; step: number; seconds: number } = { phase: "", step: 0, seconds: 0 };
    while (state.step < stopAt) {
      let o = 0;
      for (const p of params) {
        flat.set(p.data, o);
        o += p.data.length;
      }
      const phase = state.step < opts.visionSteps ? "vision" : "answer";
      const stepStart = state.seconds;
      const batch = batchAt(state.step);
      const first = imagesBefore(state.step);
      const share = Math.ceil(batch / workers.length);
      const trainVision = !(phase === "answer" && opts.freezeVision);
      // Stage 1 moves only the tower and its head: the rest is not in its loss, and leaving it untouched
      // (no weight decay either) makes stage 1's result independent of the language model's size.
      for (const p of params)
        p.frozen = phase === "vision" ? !inTower(p.name) : !trainVision && inTower(p.name);
      const results = await Promise.all(
        workers.map((w, k) => {
          const indices = Array.from(
            { length: Math.max(0, Math.min(share, batch - k * share)) },
            (_, j) => first + k * share + j,
          );
          const easy = phase === "vision" && state.step < (opts.visionEasySteps ?? 0);
          return ask(w, { weights: flat, phase, easy, trainVision, indices, scale: 1 / batch });
        }),
      );
      for (const p of params) p.grad.fill(0);
      for (const r of results) {
        let off = 0;
        for (const p of params) {
          for (let i = 0; i < p.grad.length; i++) p.grad[i] += r.grads[off + i];
          off += p.grad.length;
        }
        windowLoss += r.lossSum;
        windowCorrect += r.answersCorrect;
        windowAnswers += r.answers;
        windowCount += r.count;
      }
      const norm = adam.gradNorm();
      const scale = norm > opts.clip ? opts.clip / norm : 1;
      adam.update(lrAt(state.step), scale);
      state.step++;
      state.seconds = (performance.now() - t0) / 1000;
      // The rate is this sitting's, within this stage: a stage-2 image costs more than a stage-1 one, and a
      // rate averaged across stages would promise an end that never comes.
      if (phase !== since.phase) since = { phase, step: state.step - 1, seconds: stepStart };
      const rate =
        (imagesBefore(state.step) - imagesBefore(since.step)) / Math.max(1e-9, state.seconds - since.seconds);
      if (state.step % 10 === 0 || state.step === lastStep) {
        const stageEnd = phase === "vision" ? opts.visionSteps : lastStep;
        const eta = (imagesBefore(stageEnd) - imagesBefore(state.step)) / Math.max(1e-9, rate);
        log(
          `[${phase === "vision" ? "vision" : "train"}] step ${state.step}/${lastStep} loss ${(windowLoss / windowCount).toFixed(4)} ` +
            `${phase === "vision" ? "patch acc" : "acc"} ${((100 * windowCorrect) / windowAnswers).toFixed(1)}% ` +
            `lr ${lrAt(state.step - 1).toExponential(2)} ${rate.toFixed(1)} samples/s ` +
            `eta ${Math.round(eta)}s${phase === "vision" ? " (stage 1; stage 2 is slower per image)" : ""}`,
        );
      }
      const answerSteps = state.step - opts.visionSteps;
      const evalNow = answerSteps > 0 && (answerSteps % opts.evalEvery === 0 || state.step === lastStep);
      if (state.step % 10 === 0 || evalNow) {
        const entry: TrainState["history"][number] = {
          step: state.step,
          phase,
          loss: windowLoss / windowCount,
          train_acc: windowCorrect / windowAnswers,
          seconds: Math.round(state.seconds),
        };
        if (evalNow) {
          const ev = await evaluate(model, opts.evalSeed, opts.evalN);
          entry.eval_acc = ev.accuracy;
          entry.eval_by_kind = ev.byKind;
          const kinds = Object.entries(ev.byKind)
            .map(([k, a]) => `${k} ${(100 * a).toFixed(0)}%`)
            .join(", ");
          log(
            `[eval] step ${state.step}: held-out first-token accuracy ${(100 * ev.accuracy).toFixed(1)}% (${opts.evalN} questions; ${kinds})`,
          );
        }
        state.history.push(entry);
        windowLoss = 0;
        windowCorrect = 0;
        windowAnswers = 0;
        windowCount = 0;
      }
      if (state.step % opts.checkpointEvery === 0 || state.step === stopAt) saveCheckpoint();
    }
  } finally {
    for (const w of workers) w.kill();
  }
  const lastEval = () => state.history.filter((h) => h.eval_acc !== undefined).at(-1)?.eval_acc ?? Number.NaN;
  if (state.step < lastStep) {
    log(`paused at step ${state.step}/${lastStep}; run again with the same --checkpoint to resume`);
    model.close();
    return { finished: false, step: state.step, finalEvalAccuracy: lastEval(), seconds: state.seconds };
  }
  // Final export: the same folder layout with float16 weights and the training record.
  const out = path.resolve(opts.out);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-shapes-"));
  for (const f of fs.readdirSync(ckpt)) {
    if (f.endsWith(".json") && f !== STATE) fs.copyFileSync(path.join(ckpt, f), path.join(tmp, f));
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(tmp, "config.json"), "utf8"));
  cfg.torch_dtype = "float16";
  fs.writeFileSync(path.join(tmp, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);
  saveModelWeights(model, path.join(tmp, "model.safetensors"), "F16");
  fs.writeFileSync(
    path.join(tmp, "training.json"),
    `${JSON.stringify({ ...state.options, steps_done: state.step, seconds: Math.round(state.seconds), history: state.history }, null, 1)}\n`,
  );
  // Checked again: the folder may have appeared during training. Staged beside it, then renamed into place.
  checkNotExisting(opts.out, { overwrite: opts.overwrite, overwriteHint: OUT_HINT });
  makeDirs(path.dirname(out), opts.out);
  const staged = makeTempDir(path.dirname(out), `.${path.basename(out)}.tmp-`, opts.out);
  fs.cpSync(tmp, staged, { recursive: true });
  fs.chmodSync(staged, 0o755);
  fs.rmSync(out, { recursive: true, force: true });
  fs.renameSync(staged, out);
  fs.rmSync(tmp, { recursive: true, force: true });
  model.close();
  return { finished: true, step: state.step, finalEvalAccuracy: lastEval(), seconds: state.seconds };
}
