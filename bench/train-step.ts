/**
 * `bench:train`: what one training example of the shapes recipe costs, and what the trainer achieves with its
 * worker processes. On a fresh model of the default size (random weights: the cost does not depend on them):
 *
 *  - per example, in this process with one ORT thread (as each training worker runs): a stage-1 example (tower
 *    forward + backward through the patch head) and a stage-2 example (four-question conversation, frozen
 *    tower: language model and projector forward + backward), split into kernel time (matmul-class calls)
 *    and the rest (element-wise work in TypeScript, allocation, GC);
 *  - end to end: `trainShapes` with its workers for a few steps of each stage (images per second, as the
 *    training log reports it).
 *
 *   node dist/bench/train-step.js [--n N] [--workers W] [--json]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createKernels } from "../src/kernels/index.js";
import type { Kernels } from "../src/kernels/types.js";
import { WeightGradients } from "../src/models/gradients.js";
import { loadModel } from "../src/models/registry.js";
import { makeExample } from "../src/train/examples.js";
import { createShapesModel, DEFAULT_SHAPES_DIMS } from "../src/train/shapes-model.js";
import { trainingStep } from "../src/train/step.js";
import { trainShapes } from "../src/train/train.js";
import { createPatchHead, makePatchExample, patchPretrainStep } from "../src/train/vision-pretrain.js";

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
}

const json = process.argv.includes("--json");
const n = flag("--n", 24);
const workers = flag("--workers", Math.min(2, os.availableParallelism()));
const log = (s: string) => {
  if (!json) console.log(s);
};

/** Kernels that count the milliseconds spent inside matmul-class calls. */
function timed(inner: Kernels): Kernels & { ms: number; calls: number } {
  const t = {
    name: inner.name,
    ms: 0,
    calls: 0,
    async linear(...args: Parameters<Kernels["linear"]>) {
      return t.time(() => inner.linear(...args));
    },
    async bmm(...args: Parameters<Kernels["bmm"]>) {
      return t.time(() => inner.bmm(...args));
    },
    async matmulTransA(...args: Parameters<Kernels["matmulTransA"]>) {
      return t.time(() => inner.matmulTransA(...args));
    },
    dispose: () => inner.dispose(),
    async time(f: () => Promise<Float32Array>) {
      const s = performance.now();
      const r = await f();
      t.ms += performance.now() - s;
      t.calls++;
      return r;
    },
  };
  return t;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-train-"));
try {
  createShapesModel(dir, DEFAULT_SHAPES_DIMS, 1);
  const model = loadModel(dir);
  const kernels = timed(await createKernels("auto", { threads: 1 }));
  const head = createPatchHead(model.info.towerFeatureWidth, 1);
  const grads = new WeightGradients();
  const source = { seed: 1, turns: 4 };
  const perExample = async (run: (i: number) => Promise<unknown>) => {
    for (let i = 0; i < 4; i++) await run(i); // warm-up: JIT, ORT sessions, transposed-weight caches
    kernels.ms = 0;
    kernels.calls = 0;
    const start = performance.now();
    for (let i = 0; i < n; i++) await run(4 + i);
    const ms = (performance.now() - start) / n;
    return { ms, kernelMs: kernels.ms / n, calls: kernels.calls / n };
  };
  const stage1 = await perExample(async (i) => {
    const ex = makePatchExample(model, source, i);
    await patchPretrainStep(model, kernels, head, ex, grads, 1 / 16);
  });
  const stage2 = await perExample(async (i) => {
    const ex = makeExample(model, source, i);
    await trainingStep(model, kernels, ex, grads, 1 / 32, { trainVision: false });
  });
  await kernels.dispose();
  model.close();
  log(`per example (one process, one ORT thread, ${n} examples after 4 warm-up):`);
  log("| stage | ms/example | kernel ms | kernel calls | other ms |");
  log("|---|---|---|---|---|");
  for (const [name, r] of [
    ["1 (tower + patch head)", stage1],
    ["2 (4 questions, tower frozen)", stage2],
  ] as const) {
    log(
      `| ${name} | ${r.ms.toFixed(1)} | ${r.kernelMs.toFixed(1)} | ${r.calls.toFixed(0)} | ${(r.ms - r.kernelMs).toFixed(1)} |`,
    );
  }

  // End to end: the trainer with its workers, 20 steps of each stage at the recipe's batch sizes. It logs every
  // 10 steps; steps 10–20 and 30–40 are clear of start-up and of the stage change.
  const lines: number[] = [];
  await trainShapes({
    checkpoint: path.join(dir, "ckpt"),
    out: path.join(dir, "out"),
    steps: 40,
    batch: 16,
    answerBatch: 32,
    turns: 4,
    visionSteps: 20,
    freezeVision: true,
    lr: 1e-3,
    warmup: 5,
    weightDecay: 0.01,
    clip: 1,
    seed: 1,
    evalSeed: 9001,
    evalN: 1,
    evalEvery: 1000,
    checkpointEvery: 1000,
    workers,
    log: (l) => {
      if (/ step \d+\/40 /.test(l)) lines.push(performance.now());
    },
  });
  const stage1Step = (lines[1]! - lines[0]!) / 1000 / 10;
  const stage2Step = (lines[3]! - lines[2]!) / 1000 / 10;
  log(`\ntrainer, ${workers} workers (10 steps of each stage, clear of start-up):`);
  log("| stage | s/step | images/s |");
  log("|---|---|---|");
  log(`| 1 (batch 16) | ${stage1Step.toFixed(2)} | ${(16 / stage1Step).toFixed(1)} |`);
  log(`| 2 (batch 32 × 4 questions) | ${stage2Step.toFixed(2)} | ${(32 / stage2Step).toFixed(1)} |`);
  if (json)
    console.log(
      JSON.stringify({
        n,
        workers,
        stage1,
        stage2,
        trainer: { stage1SecondsPerStep: stage1Step, stage2SecondsPerStep: stage2Step },
      }),
    );
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
