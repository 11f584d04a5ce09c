/**
 * Training worker: holds its own copy of the model (loaded through the ordinary loader), receives the
 * current weights, computes the summed gradients of its share of a batch and sends them back.
 */
import { parentPort, workerData } from "node:worker_threads";
import { AutoKernels } from "../kernels/index.js";
import { OrtKernels } from "../kernels/ort-kernels.js";
import { TsKernels } from "../kernels/ts-kernels.js";
import { WeightGradients } from "../models/gradients.js";
import { LlavaModel } from "../models/llava.js";
import { type ExampleSource, makeExample } from "./examples.js";
import { trainingStep } from "./step.js";

export interface WorkRequest {
  weights: Float32Array;
  indices: number[];
  /** Gradients are multiplied by this (1/batch). */
  scale: number;
}

export interface WorkResult {
  grads: Float32Array;
  lossSum: number;
  correct: number;
  count: number;
}

const { modelDir, source } = workerData as { modelDir: string; source: ExampleSource };
const model = LlavaModel.load(modelDir);
// One ORT thread per worker: the workers themselves use the cores.
const kernels = new AutoKernels(new TsKernels(), await OrtKernels.create({ threads: 1 }));
const params = model.weights.loadedTensors().sort((a, b) => (a.name < b.name ? -1 : 1));
const grads = new WeightGradients();

parentPort!.on("message", async (req: WorkRequest) => {
  let o = 0;
  for (const p of params) {
    p.data.set(req.weights.subarray(o, o + p.data.length));
    o += p.data.length;
  }
  grads.zero();
  let lossSum = 0;
  let correct = 0;
  for (const i of req.indices) {
    const r = await trainingStep(model, kernels, makeExample(model, source, i), grads, req.scale);
    lossSum += r.loss;
    if (r.firstTokenCorrect) correct++;
  }
  const flat = new Float32Array(req.weights.length);
  o = 0;
  for (const p of params) {
    const g = grads.get(p.data);
    if (g) flat.set(g, o);
    o += p.data.length;
  }
  const res: WorkResult = { grads: flat, lossSum, correct, count: req.indices.length };
  parentPort!.postMessage(res, [flat.buffer]);
});
parentPort!.postMessage("ready");
