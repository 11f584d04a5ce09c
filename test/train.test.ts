/**
 * Training loop: a tiny shapes model trained for a few steps with two worker processes and multi-turn
 * examples exports a loadable llava-hf folder, and a run paused half-way and resumed ends with exactly the
 * weights of an uninterrupted run (optimizer state, schedule and data order all restored).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { SafetensorsFile } from "../src/hf/safetensors.js";
import { LlavaModel } from "../src/models/llava/model.js";
import {
  createShapesModel,
  DEFAULT_SHAPES_DIMS,
  initialShapesWeights,
  type ShapesModelDims,
} from "../src/train/shapes-model.js";
import { learningRate, type TrainOptions, totalSteps, trainShapes } from "../src/train/train.js";
import { tempDir } from "./fixture-utils.js";

const TINY: ShapesModelDims = {
  visionHidden: 16,
  visionIntermediate: 32,
  visionLayers: 1,
  visionHeads: 2,
  textHidden: 16,
  textIntermediate: 32,
  textLayers: 1,
  textHeads: 2,
  textKvHeads: 1,
};

function options(dir: string, name: string): TrainOptions {
  return {
    checkpoint: path.join(dir, `${name}-ckpt`),
    out: path.join(dir, `${name}-model`),
    steps: 4,
    batch: 3,
    turns: 3,
    visionSteps: 2,
    visionEasySteps: 1,
    lr: 1e-3,
    warmup: 1,
    weightDecay: 0.01,
    clip: 1,
    seed: 5,
    evalSeed: 6,
    evalN: 4,
    evalEvery: 4,
    checkpointEvery: 100,
    workers: 2,
    dims: TINY,
    log: () => {},
  };
}

function weightsOf(modelDir: string): Map<string, Float32Array> {
  const st = SafetensorsFile.open(path.join(modelDir, "model.safetensors"));
  const out = new Map([...st.tensors.keys()].map((n): [string, Float32Array] => [n, st.readF32(n)]));
  st.close();
  return out;
}

function std(data: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += data[i]! * data[i]!;
  return Math.sqrt(s / data.length);
}

describe("shapes model initialisation", () => {
  test("vision position and q/k initial std follow the dims; everything else is unchanged", () => {
    const base = initialShapesWeights(DEFAULT_SHAPES_DIMS, 68, 9);
    const wide = initialShapesWeights(
      { ...DEFAULT_SHAPES_DIMS, visionPositionStd: 1, visionQkStd: 0.2 },
      68,
      9,
    );
    assert.equal(base.length, wide.length);
    base.forEach((t, i) => {
      const w = wide[i]!;
      assert.equal(w.name, t.name);
      const s0 = std(t.data as Float32Array);
      const s1 = std(w.data as Float32Array);
      if (t.name.endsWith("position_embedding.weight")) {
        assert.ok(Math.abs(s0 - 0.02) < 0.002 && Math.abs(s1 - 1) < 0.1, `${t.name}: ${s0} → ${s1}`);
      } else if (/vision_tower.*self_attn\.(q|k)_proj\.weight/.test(t.name)) {
        assert.ok(Math.abs(s0 - 0.02) < 0.002 && Math.abs(s1 - 0.2) < 0.02, `${t.name}: ${s0} → ${s1}`);
      } else {
        assert.deepEqual(w.data, t.data, `${t.name} unchanged`);
      }
    });
  });
});

describe("shapes training", () => {
  const dir = tempDir("train");
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test("trains with worker processes, exports a loadable model, and resumes exactly", async () => {
    const straight = await trainShapes(options(dir, "straight"));
    assert.equal(straight.finished, true);
    assert.equal(straight.step, 4);
    assert.ok(Number.isFinite(straight.finalEvalAccuracy));
    const model = LlavaModel.load(path.join(dir, "straight-model"));
    assert.equal(model.config.text.hiddenSize, TINY.textHidden);
    model.close();
    const record = JSON.parse(fs.readFileSync(path.join(dir, "straight-model", "training.json"), "utf8"));
    assert.equal(record.steps_done, 4);
    assert.equal(record.turns, 3);

    const paused = await trainShapes({ ...options(dir, "resumed"), pauseAfter: 2 });
    assert.equal(paused.finished, false);
    assert.equal(paused.step, 2);
    assert.ok(!fs.existsSync(path.join(dir, "resumed-model")), "a paused run exports nothing");
    const resumed = await trainShapes(options(dir, "resumed"));
    assert.equal(resumed.finished, true);

    const a = weightsOf(path.join(dir, "straight-ckpt"));
    const b = weightsOf(path.join(dir, "resumed-ckpt"));
    createShapesModel(path.join(dir, "init"), TINY, 5);
    const init = weightsOf(path.join(dir, "init"));
    assert.equal(a.size, b.size);
    let moved = 0;
    for (const [name, w] of a) {
      assert.deepEqual(b.get(name), w, `${name} differs after resume`);
      if (!w.every((v, i) => v === init.get(name)![i])) moved++;
    }
    // Every tensor the loss reaches moves; the tiny tower's class embedding is dropped by the "default" feature
    // selection, so a few tensors may stay put.
    assert.ok(moved >= a.size - 3, `${moved} of ${a.size} tensors changed`);
  });

  test("stage 2 with a frozen tower, its own batch and lr; a resumed checkpoint takes options it predates", async () => {
    const stage2 = { freezeVision: true, answerBatch: 2, answerLr: 5e-4 };
    const whole = await trainShapes({ ...options(dir, "frozen"), ...stage2 });
    assert.equal(whole.finished, true);
    // Stage 1 alone, recorded without the stage-2 options; then resumed with them.
    await trainShapes({ ...options(dir, "later"), pauseAfter: 2 });
    const afterStage1 = weightsOf(path.join(dir, "later-ckpt"));
    const resumed = await trainShapes({ ...options(dir, "later"), ...stage2 });
    assert.equal(resumed.finished, true);

    const a = weightsOf(path.join(dir, "frozen-ckpt"));
    const b = weightsOf(path.join(dir, "later-ckpt"));
    let tower = 0;
    let text = 0;
    for (const [name, w] of a) {
      assert.deepEqual(
        b.get(name),
        w,
        `${name}: resumed run differs from the one given every option at once`,
      );
      const before = afterStage1.get(name)!;
      if (name.startsWith("vision_tower.")) {
        tower++;
        assert.deepEqual(w, before, `${name} moved in stage 2 with the tower frozen`);
      } else if (name.startsWith("language_model.") && !w.every((v, i) => v === before[i])) text++;
    }
    assert.ok(tower > 10 && text > 5, `${tower} tower tensors kept, ${text} language-model tensors moved`);
    const record = JSON.parse(fs.readFileSync(path.join(dir, "later-model", "training.json"), "utf8"));
    assert.deepEqual(
      { freezeVision: record.freezeVision, answerBatch: record.answerBatch, answerLr: record.answerLr },
      stage2,
    );
    // The straight run without them trains the tower in stage 2.
    const free = weightsOf(path.join(dir, "straight-ckpt"));
    const moved = [...free].filter(
      ([n, w]) => n.startsWith("vision_tower.") && !w.every((v, i) => v === afterStage1.get(n)![i]),
    );
    assert.ok(moved.length > 5, "without freezing, stage 2 moves the tower");
  });

  test("stage 1 moves only the tower, so its result does not depend on the language model's size", async () => {
    const wider: ShapesModelDims = {
      ...TINY,
      textHidden: 24,
      textIntermediate: 40,
      textLayers: 2,
      textHeads: 3,
    };
    await trainShapes({ ...options(dir, "s1-tiny"), pauseAfter: 2 });
    await trainShapes({ ...options(dir, "s1-wider"), dims: wider, pauseAfter: 2 });
    const tiny = weightsOf(path.join(dir, "s1-tiny-ckpt"));
    const wide = weightsOf(path.join(dir, "s1-wider-ckpt"));
    createShapesModel(path.join(dir, "s1-init"), TINY, 5);
    const init = weightsOf(path.join(dir, "s1-init"));
    let tower = 0;
    let towerMoved = 0;
    let rest = 0;
    for (const [name, w] of tiny) {
      const before = init.get(name)!;
      if (name.startsWith("vision_tower.")) {
        tower++;
        if (!w.every((v, i) => v === before[i])) towerMoved++;
        assert.deepEqual(wide.get(name), w, `${name}: stage 1 differs with a wider language model`);
      } else {
        rest++;
        assert.deepEqual(w, before, `${name} moved (or decayed) in stage 1`);
      }
    }
    assert.ok(
      towerMoved > 10 && rest > 5,
      `${towerMoved} of ${tower} tower tensors moved, ${rest} others kept`,
    );
  });

  test("until stage 2 begins, a resumed run takes stage-2 options from the call; afterwards the recorded ones", async () => {
    const stage2 = { turns: 1, steps: 5, answerLr: 3e-4 };
    const whole = await trainShapes({ ...options(dir, "direct"), ...stage2 });
    assert.equal(whole.finished, true);
    // Stage 1 recorded with the other stage-2 options (turns 3, 4 steps, lr 1e-3), then resumed with these.
    await trainShapes({ ...options(dir, "changed"), pauseAfter: 2 });
    const lines: string[] = [];
    await trainShapes({ ...options(dir, "changed"), ...stage2, log: (l) => lines.push(l) });
    const a = weightsOf(path.join(dir, "direct-ckpt"));
    const b = weightsOf(path.join(dir, "changed-ckpt"));
    for (const [name, w] of a) assert.deepEqual(b.get(name), w, `${name} differs from the direct run`);
    assert.ok(
      lines.some((l) => l.includes("turns 3 → 1")),
      lines.join("\n"),
    );
    const record = JSON.parse(fs.readFileSync(path.join(dir, "changed-model", "training.json"), "utf8"));
    assert.deepEqual({ turns: record.turns, steps: record.steps, answerLr: record.answerLr }, stage2);

    // Paused one step into stage 2: the recorded options stay, so it ends like the run that never paused.
    await trainShapes({ ...options(dir, "late"), pauseAfter: 3 });
    await trainShapes({ ...options(dir, "late"), ...stage2 });
    const late = weightsOf(path.join(dir, "late-ckpt"));
    const straight = weightsOf(path.join(dir, "straight-ckpt"));
    for (const [name, w] of straight) assert.deepEqual(late.get(name), w, `${name}: recorded options lost`);
  });

  test("a finished run extended by a warm-restart cycle ends like a run that had the cycle from the start", async () => {
    const cycle = { steps: 2, lr: 4e-4 };
    const planned = await trainShapes({ ...options(dir, "planned"), extraCycles: [cycle] });
    assert.deepEqual([planned.finished, planned.step], [true, 6]);
    await trainShapes(options(dir, "extended"));
    const lines: string[] = [];
    // The first call exported into extended-model: replacing that export is asked for explicitly.
    const extended = await trainShapes({
      ...options(dir, "extended"),
      extraCycles: [cycle],
      overwrite: true,
      log: (l) => lines.push(l),
    });
    assert.deepEqual([extended.finished, extended.step], [true, 6]);
    assert.ok(
      lines.some((l) => l.includes("extending stage 2 by 2:0.0004")),
      lines.join("\n"),
    );
    const a = weightsOf(path.join(dir, "planned-ckpt"));
    const b = weightsOf(path.join(dir, "extended-ckpt"));
    const before = weightsOf(path.join(dir, "straight-ckpt"));
    let moved = 0;
    for (const [name, w] of a) {
      assert.deepEqual(b.get(name), w, `${name}: extended run differs from the planned one`);
      if (!w.every((v, i) => v === before.get(name)![i])) moved++;
    }
    assert.ok(moved > 5, `${moved} tensors moved in the extra cycle`);
    const record = JSON.parse(fs.readFileSync(path.join(dir, "extended-model", "training.json"), "utf8"));
    assert.deepEqual([record.extraCycles, record.steps_done], [[cycle], 6]);
    // A different cycle in place of the recorded one is refused, naming what the checkpoint has.
    await assert.rejects(
      trainShapes({ ...options(dir, "extended"), extraCycles: [{ steps: 3, lr: 4e-4 }], overwrite: true }),
      /has extra cycles 2:0.0004/,
    );
  });

  test("an exported model continues with an extra cycle, reproducibly from the export", async () => {
    // "straight" finished above: its export holds float16 weights and training.json, no optimizer state.
    const cycle = { steps: 2, lr: 4e-4 };
    const continued: Map<string, Float32Array>[] = [];
    for (const name of ["cont-a", "cont-b"]) {
      const ckpt = path.join(dir, `${name}-ckpt`);
      fs.cpSync(path.join(dir, "straight-model"), ckpt, { recursive: true });
      const lines: string[] = [];
      const result = await trainShapes({
        ...options(dir, name),
        extraCycles: [cycle],
        log: (l) => lines.push(l),
      });
      assert.deepEqual([result.finished, result.step], [true, 6]);
      assert.ok(
        lines.some((l) => l.includes("continuing the exported model") && l.includes("from step 4")),
        lines.join("\n"),
      );
      const record = JSON.parse(fs.readFileSync(path.join(dir, `${name}-model`, "training.json"), "utf8"));
      assert.deepEqual([record.extraCycles, record.steps_done, record.seed], [[cycle], 6, 5]);
      continued.push(weightsOf(path.join(dir, `${name}-model`)));
    }
    const start = weightsOf(path.join(dir, "straight-model"));
    let moved = 0;
    for (const [name, w] of continued[0]!) {
      assert.deepEqual(continued[1]!.get(name), w, `${name}: two continuations of one export differ`);
      if (!w.every((v, i) => v === start.get(name)![i])) moved++;
    }
    assert.ok(moved > 5, `${moved} tensors moved in the extra cycle`);
  });
});

describe("learning-rate schedule", () => {
  test("each stage and each extra cycle warms up to its own peak, then decays", () => {
    const o = {
      steps: 300,
      visionSteps: 100,
      warmup: 10,
      lr: 1e-3,
      answerLr: 5e-4,
      extraCycles: [{ steps: 50, lr: 2e-4 }],
    };
    assert.equal(totalSteps(o), 350);
    const peak = (from: number, to: number) =>
      Math.max(...Array.from({ length: to - from }, (_, i) => learningRate(o, from + i)));
    assert.equal(peak(0, 100), 1e-3);
    assert.equal(peak(100, 300), 5e-4);
    assert.equal(peak(300, 350), 2e-4);
    // Warm restart: the first step of the cycle starts low again.
    assert.ok(learningRate(o, 299) > learningRate(o, 300), "the extra cycle begins with a warm-up");
    assert.ok(learningRate(o, 349) < learningRate(o, 320));
    assert.throws(() => learningRate(o, 350), /past the run's end/);
  });
});
