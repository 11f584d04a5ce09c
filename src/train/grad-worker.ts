/**
 * Training worker, run as a child process with its own V8 heap: holds its own copy of the model (loaded
 * through the ordinary loader), receives the current weights, computes the summed gradients of its share of
 * a batch and sends them back. (Measured here: one example takes ~45 ms in a standalone process, two of them
 * side by side alike, but 55–75 ms inside a training worker, thread or process; not understood yet.)
 */
import { createKernels } from "../kernels/index.js";
import { WeightGradients } from "../models/gradients.js";
import { loadModel } from "../models/registry.js";
import { type ExampleSource, makeExample } from "./examples.js";
import { trainingStep } from "./step.js";
import { createPatchHead, makePatchExample, patchPretrainStep } from "./vision-pretrain.js";

export interface WorkerSetup {
  modelDir: string;
  source: ExampleSource;
}

export interface WorkRequest {
  /** Model tensors sorted by name, then the patch head's tensors. */
  weights: Float32Array;
  /** "vision": stage 1 (tower + patch head); "answer": the VQA loss on answer tokens. */
  phase: "vision" | "answer";
  /** Vision phase on the easy scenes (see EASY_SCENES). */
  easy?: boolean;
  /** Answer phase: false leaves the vision tower out of the backward (frozen tower). */
  trainVision?: boolean;
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
  /** Over every answer of every example (vision phase: every patch). */
  answersCorrect: number;
  answers: number;
}

const send = (m: unknown) => process.send!(m);

async function serve(setup: WorkerSetup): Promise<void> {
  const model = loadModel(setup.modelDir);
  // One ORT thread per worker: the workers themselves use the cores.
  const kernels = await createKernels("auto", { threads: 1 });
  const head = createPatchHead(model.info.towerFeatureWidth, 0);
  const params = [...model.parameters().sort((a, b) => (a.name < b.name ? -1 : 1)), ...head.tensors];
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
      if (req.phase === "vision") {
        const ex = makePatchExample(model, setup.source, i, req.easy === true);
        const r = await patchPretrainStep(model, kernels, head, ex, grads, req.scale);
        res.lossSum += r.loss;
        res.answersCorrect += r.correct;
        res.answers += r.patches;
        continue;
      }
      const ex = makeExample(model, setup.source, i);
      const r = await trainingStep(model, kernels, ex, grads, req.scale, { trainVision: req.trainVision });
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

// The trainer went away (finished, failed or was killed): nothing left to answer.
process.on("disconnect", () => process.exit(0));

process.once("message", (setup: WorkerSetup) => {
  serve(setup).catch((e) => {
    process.stderr.write(`training worker: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
});
