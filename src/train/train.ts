/**
 * Trains the shapes model: seeded, AdamW with warm-up + cosine decay, loss on answer tokens only, data-parallel
 * over worker threads (each computes a share of the batch's gradients with the ordinary model code), with
 * resumable checkpoints and a final float16 export as a normal llava-hf folder.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "../hf/safetensors.js";
import { createKernels } from "../kernels/index.js";
import { LlavaModel } from "../models/llava.js";
import { writeFileAtomic } from "../run/run-dir.js";
import { f32ToF16 } from "../tensor/half.js";
import { AdamW, cosineSchedule, type Param } from "./adamw.js";
import { makeExample } from "./examples.js";
import type { WorkRequest, WorkResult } from "./grad-worker.js";
import { createShapesModel, DEFAULT_SHAPES_DIMS, type ShapesModelDims } from "./shapes-model.js";
import { trainingStep } from "./step.js";

export interface TrainOptions {
  /** Checkpoint folder (a full model folder plus optimizer state); resumed when it holds a state. */
  checkpoint: string;
  /** Where the final float16 model goes. */
  out: string;
  steps: number;
  batch: number;
  lr: number;
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
  log?: (line: string) => void;
}

interface TrainState {
  step: number;
  options: Omit<TrainOptions, "log" | "checkpoint" | "out">;
  history: { step: number; loss: number; train_acc: number; eval_acc?: number; seconds: number }[];
  seconds: number;
}

const STATE = "train-state.json";
const OPTIMIZER = "optimizer.safetensors";

function sortedParams(model: LlavaModel): { name: string; shape: number[]; data: Float32Array }[] {
  return model.weights.loadedTensors().sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Norm gains, biases and embeddings are not decayed; weight matrices are. */
function decays(name: string, shape: number[]): boolean {
  return shape.length >= 2 && !name.includes("embed") && !name.includes("embedding");
}

function saveModelWeights(model: LlavaModel, file: string, dtype: "F32" | "F16"): void {
  const tensors: TensorToWrite[] = sortedParams(model).map((p) => {
    const name = model.weights.diskName(p.name);
    if (dtype === "F32") return { name, dtype, shape: p.shape, data: p.data };
    const u = new Uint16Array(p.data.length);
    for (let i = 0; i < u.length; i++) u[i] = f32ToF16(p.data[i]);
    return { name, dtype, shape: p.shape, data: u };
  });
  const tmp = `${file}.tmp`;
  writeSafetensors(tmp, tensors);
  fs.renameSync(tmp, file);
}

async function evaluate(model: LlavaModel, seed: number, n: number): Promise<number> {
  const kernels = await createKernels("auto");
  let correct = 0;
  for (let i = 0; i < n; i++) {
    if ((await trainingStep(model, kernels, makeExample(model, { seed }, i), null)).firstTokenCorrect)
      correct++;
  }
  await kernels.dispose();
  return correct / n;
}

export async function trainShapes(
  opts: TrainOptions,
): Promise<{ finalEvalAccuracy: number; seconds: number }> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const ckpt = path.resolve(opts.checkpoint);
  const statePath = path.join(ckpt, STATE);
  let state: TrainState;
  const { log: _l, checkpoint: _c, out: _o, ...recorded } = opts;
  if (fs.existsSync(statePath)) {
    state = JSON.parse(fs.readFileSync(statePath, "utf8"));
    log(`resuming from ${ckpt} at step ${state.step}/${state.options.steps}`);
    Object.assign(opts, state.options);
  } else {
    createShapesModel(ckpt, opts.dims ?? DEFAULT_SHAPES_DIMS, opts.seed);
    state = { step: 0, options: recorded, history: [], seconds: 0 };
  }
  const model = LlavaModel.load(ckpt);
  const tensors = sortedParams(model);
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
      adam.m[j].set(st.readF32(`m.${p.name}`));
      adam.v[j].set(st.readF32(`v.${p.name}`));
    });
    st.close();
    adam.step = state.step;
  }
  log(`model: ${total} parameters; ${opts.steps} steps × batch ${opts.batch}; ${opts.workers} workers`);

  const workers = await Promise.all(
    Array.from({ length: opts.workers }, async () => {
      const w = new Worker(new URL("./grad-worker.js", import.meta.url), {
        workerData: { modelDir: ckpt, source: { seed: opts.seed } },
      });
      await new Promise<void>((resolve, reject) => {
        w.once("message", () => resolve());
        w.once("error", reject);
      });
      return w;
    }),
  );
  const ask = (w: Worker, req: WorkRequest) =>
    new Promise<WorkResult>((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      w.once("error", onError);
      w.once("message", (r: WorkResult) => {
        w.off("error", onError);
        resolve(r);
      });
      w.postMessage(req);
    });

  const flat = new Float32Array(total);
  const saveCheckpoint = () => {
    saveModelWeights(model, path.join(ckpt, "model.safetensors"), "F32");
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
  let windowCount = 0;
  const t0 = performance.now() - state.seconds * 1000;
  try {
    while (state.step < opts.steps) {
      let o = 0;
      for (const p of params) {
        flat.set(p.data, o);
        o += p.data.length;
      }
      const first = state.step * opts.batch;
      const share = Math.ceil(opts.batch / workers.length);
      const results = await Promise.all(
        workers.map((w, k) => {
          const indices = Array.from(
            { length: Math.max(0, Math.min(share, opts.batch - k * share)) },
            (_, j) => first + k * share + j,
          );
          return ask(w, { weights: flat, indices, scale: 1 / opts.batch });
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
        windowCorrect += r.correct;
        windowCount += r.count;
      }
      const norm = adam.gradNorm();
      const scale = norm > opts.clip ? opts.clip / norm : 1;
      adam.update(cosineSchedule(state.step, opts.steps, opts.warmup, opts.lr), scale);
      state.step++;
      state.seconds = (performance.now() - t0) / 1000;
      const rate = (state.step * opts.batch) / Math.max(1e-9, state.seconds);
      if (state.step % 10 === 0 || state.step === opts.steps) {
        const eta = ((opts.steps - state.step) * opts.batch) / Math.max(1e-9, rate);
        log(
          `[train] step ${state.step}/${opts.steps} loss ${(windowLoss / windowCount).toFixed(4)} acc ${((100 * windowCorrect) / windowCount).toFixed(1)}% ` +
            `lr ${cosineSchedule(state.step, opts.steps, opts.warmup, opts.lr).toExponential(2)} ${rate.toFixed(1)} samples/s eta ${Math.round(eta)}s`,
        );
      }
      const evalNow = state.step % opts.evalEvery === 0 || state.step === opts.steps;
      if (state.step % 10 === 0 || evalNow) {
        const entry: TrainState["history"][number] = {
          step: state.step,
          loss: windowLoss / windowCount,
          train_acc: windowCorrect / windowCount,
          seconds: Math.round(state.seconds),
        };
        if (evalNow) {
          entry.eval_acc = await evaluate(model, opts.evalSeed, opts.evalN);
          log(
            `[eval] step ${state.step}: held-out first-token accuracy ${(100 * entry.eval_acc).toFixed(1)}% (${opts.evalN} questions)`,
          );
        }
        state.history.push(entry);
        windowLoss = 0;
        windowCorrect = 0;
        windowCount = 0;
      }
      if (state.step % opts.checkpointEvery === 0 || state.step === opts.steps) saveCheckpoint();
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
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
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.cpSync(tmp, out, { recursive: true });
  fs.chmodSync(out, 0o755);
  fs.rmSync(tmp, { recursive: true, force: true });
  model.close();
  const last = state.history.filter((h) => h.eval_acc !== undefined).at(-1);
  return { finalEvalAccuracy: last?.eval_acc ?? Number.NaN, seconds: state.seconds };
}
