/**
 * Training worker, run as a child process (threads of one process scaled poorly here: two worker threads ran
 * each example ~1.5× slower than two processes): holds its own copy of the model (loaded through the ordinary
 * loader), receives the current weights, computes the summed gradients of its share of a batch and sends
 * them back.
 */
import { AutoKernels } from "../kernels/index.js";
import { OrtKernels } from "../kernels/ort-kernels.js";
import { TsKernels } from "../kernels/ts-kernels.js";
import { WeightGradients } from "../models/gradients.js";
import { LlavaModel } from "../models/llava.js";
import { type ExampleSource, makeExample } from "./examples.js";
import { trainingStep } from "./step.js";

export interface WorkerSetup {
  modelDir: string;
  source: ExampleSource;
}

export interface WorkRequest {
  weights: Float32Array;
  indices: number[];
  /** Gradients are multiplied by this (1/batch). */
  scale: number;
}

export interface WorkResult {
  grads: Float32Array;
  lossSum: number;
  /** Examples whose first answer's first token was right. */
  correct: number;
  count: number;
  /** Over every answer of every example. */
  answersCorrect: number;
  answers: number;
}

const send = (m: unknown) => process.send!(m);

async function serve(setup: WorkerSetup): Promise<void> {
  const model = LlavaModel.load(setup.modelDir);
  // One ORT thread per worker: the workers themselves use the cores.
  const kernels = new AutoKernels(new TsKernels(), await OrtKernels.create({ threads: 1 }));
  const params = model.weights.loadedTensors().sort((a, b) => (a.name < b.name ? -1 : 1));
  const grads = new WeightGradients();
  process.on("message", async (req: WorkRequest) => {
    let o = 0;
    for (const p of params) {
      p.data.set(req.weights.subarray(o, o + p.data.length));
      o += p.data.length;
    }
    grads.zero();
    const res: WorkResult = {
      grads: new Float32Array(req.weights.length),
      lossSum: 0,
      correct: 0,
      count: req.indices.length,
      answersCorrect: 0,
      answers: 0,
    };
    for (const i of req.indices) {
      const r = await trainingStep(model, kernels, makeExample(model, setup.source, i), grads, req.scale);
      res.lossSum += r.loss;
      if (r.firstTokenCorrect) res.correct++;
      res.answersCorrect += r.answersCorrect;
      res.answers += r.answers;
    }
    o = 0;
    for (const p of params) {
      const g = grads.get(p.data);
      if (g) res.grads.set(g, o);
      o += p.data.length;
    }
    send(res);
  });
  send("ready");
}

process.once("message", (setup: WorkerSetup) => {
  serve(setup).catch((e) => {
    process.stderr.write(`training worker: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
});
