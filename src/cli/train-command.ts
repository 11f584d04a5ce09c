import * as os from "node:os";
import * as path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_SHAPES_DIMS, type ShapesModelDims } from "../train/shapes-model.js";
import { type StageCycle, trainShapes } from "../train/train.js";
import { PROJECT_ROOT } from "./default-model.js";

/**
 * Default export folder, beside (never onto) the shipped `models/llava-shapes`: a re-train must not silently
 * replace the model the CLI and the app use by default.
 */
export const DEFAULT_TRAIN_OUT = "models/llava-shapes-trained";

function num(name: string, integer: boolean) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))
      throw new InvalidArgumentError(`${name} must be a positive ${integer ? "integer" : "number"}`);
    return n;
  };
}

/** Parser for an integer ≥ 0. */
function count(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be an integer ≥ 0`);
    return n;
  };
}

/** "steps:lr,…", e.g. "1200:3e-4": further stage-2 cycles after --steps. */
function cycles(v: string): StageCycle[] {
  return v.split(",").map((part) => {
    const [steps, lr] = part.split(":").map((x) => Number(x.trim()));
    if (
      !(Number.isInteger(steps) && steps! >= 1 && Number.isFinite(lr) && lr! > 0) ||
      part.split(":").length !== 2
    )
      throw new InvalidArgumentError(
        `--extend takes steps:lr pairs separated by commas, e.g. 1200:3e-4 (got "${part}")`,
      );
    return { steps: steps!, lr: lr! };
  });
}

type TextDims = Pick<
  ShapesModelDims,
  "textHidden" | "textIntermediate" | "textLayers" | "textHeads" | "textKvHeads"
>;

const DEFAULT_TEXT_DIMS: TextDims = {
  textHidden: DEFAULT_SHAPES_DIMS.textHidden,
  textIntermediate: DEFAULT_SHAPES_DIMS.textIntermediate,
  textLayers: DEFAULT_SHAPES_DIMS.textLayers,
  textHeads: DEFAULT_SHAPES_DIMS.textHeads,
  textKvHeads: DEFAULT_SHAPES_DIMS.textKvHeads,
};

/** "hidden,mlp,layers,heads,kv", e.g. "128,352,3,4,2"; the heads must split the width and share the kv heads evenly. */
function textDims(v: string): TextDims {
  const parts = v.split(",").map((x) => Number(x.trim()));
  if (parts.length !== 5 || !parts.every((n) => Number.isInteger(n) && n >= 1))
    throw new InvalidArgumentError("--text-dims takes five positive integers: hidden,mlp,layers,heads,kv");
  const [textHidden, textIntermediate, textLayers, textHeads, textKvHeads] = parts as [
    number,
    number,
    number,
    number,
    number,
  ];
  if (textHidden % textHeads !== 0 || (textHidden / textHeads) % 2 !== 0)
    throw new InvalidArgumentError(
      `--text-dims: ${textHeads} heads must split the width ${textHidden} into even head sizes (RoPE)`,
    );
  if (textHeads % textKvHeads !== 0)
    throw new InvalidArgumentError(`--text-dims: ${textKvHeads} kv heads must divide the ${textHeads} heads`);
  return { textHidden, textIntermediate, textLayers, textHeads, textKvHeads };
}

export function trainCommand(): Command {
  return new Command("train")
    .description(
      "train the embedded default model (a small LLaVA) on synthetic shapes scenes; resumable. The defaults are the shipped model's recipe",
    )
    .option(
      "--checkpoint <dir>",
      "checkpoint folder (resumed when it holds a training state, with its recorded options; stage-2 options from this command until stage 2 begins; a copy of a finished export continues with --extend)",
      path.join(PROJECT_ROOT, ".train/shapes"),
    )
    .option(
      "--out <dir>",
      "where the trained float16 model is written: a new folder (an existing one only with --overwrite)",
      path.join(PROJECT_ROOT, DEFAULT_TRAIN_OUT),
    )
    .option(
      "--overwrite",
      "replace an existing --out folder, e.g. the shipped models/llava-shapes (checked before training starts)",
    )
    .option("--steps <n>", "optimizer steps, stage 1 included", num("--steps", true), 14400)
    .option(
      "--vision-steps <n>",
      "stage 1: first steps that train the vision tower on per-patch shape and colour labels",
      count("--vision-steps"),
      12000,
    )
    .option("--batch <n>", "stage 1's images per step", num("--batch", true), 16)
    .option(
      "--turns <n>",
      "stage 2's questions per training image (multi-turn, LLaVA-1.5 layout)",
      num("--turns", true),
      4,
    )
    .option(
      "--vision-easy-steps <n>",
      "the first stage-1 steps use easy scenes (one upright 40–50 px object, plain background)",
      count("--vision-easy-steps"),
      2300,
    )
    .option(
      "--vision-position-std <x>",
      "initial std of the vision position embeddings (new checkpoints only)",
      num("--vision-position-std", false),
      1,
    )
    .option(
      "--vision-qk-std <x>",
      "initial std of the vision q/k projections (new checkpoints only)",
      num("--vision-qk-std", false),
      0.2,
    )
    .addOption(
      new Option(
        "--text-dims <hidden,mlp,layers,heads,kv>",
        "language model size: hidden width, MLP width, layers, attention heads, key/value heads (new checkpoints only)",
      )
        .argParser(textDims)
        .default(DEFAULT_TEXT_DIMS, Object.values(DEFAULT_TEXT_DIMS).join(",")),
    )
    .option("--lr <x>", "stage 1's peak learning rate", num("--lr", false), 1e-3)
    .option("--answer-batch <n>", "stage 2's images per step", num("--answer-batch", true), 32)
    .option("--answer-lr <x>", "stage 2's peak learning rate", num("--answer-lr", false), 7e-4)
    .option(
      "--no-freeze-vision",
      "stage 2 also trains the vision tower (by default only the projector and the language model learn)",
    )
    .option(
      "--extend <steps:lr,...>",
      "further stage-2 cycles after --steps, each with its own warm-up and cosine decay from its peak lr (warm restarts); on a checkpoint that has some, list those first, then the new ones",
      cycles,
    )
    .option("--warmup <n>", "warm-up steps", num("--warmup", true), 50)
    .option("--weight-decay <x>", "AdamW weight decay", num("--weight-decay", false), 0.01)
    .option("--clip <x>", "gradient-norm clipping", num("--clip", false), 1)
    .option("--seed <n>", "data and initialisation seed", num("--seed", true), 1)
    .option(
      "--eval-seed <n>",
      "held-out data seed for the periodic evaluation",
      num("--eval-seed", true),
      9001,
    )
    .option("--eval-n <n>", "held-out questions per evaluation", num("--eval-n", true), 300)
    .option("--eval-every <n>", "steps between evaluations", num("--eval-every", true), 250)
    .option("--checkpoint-every <n>", "steps between checkpoints", num("--checkpoint-every", true), 100)
    .option(
      "--pause-after <step>",
      "stop after this step with a checkpoint (resume later with the same --checkpoint)",
      num("--pause-after", true),
    )
    .option(
      "--workers <n>",
      "gradient worker processes",
      num("--workers", true),
      Math.max(1, os.availableParallelism()),
    )
    .action(async (o) => {
      const r = await trainShapes({
        checkpoint: o.checkpoint,
        out: o.out,
        overwrite: Boolean(o.overwrite),
        steps: o.steps,
        batch: o.batch,
        turns: o.turns,
        visionSteps: o.visionSteps,
        visionEasySteps: o.visionEasySteps,
        dims: {
          ...DEFAULT_SHAPES_DIMS,
          ...o.textDims,
          visionPositionStd: o.visionPositionStd,
          visionQkStd: o.visionQkStd,
        },
        lr: o.lr,
        answerBatch: o.answerBatch,
        answerLr: o.answerLr,
        // Without stage 1 there is no trained tower to keep.
        freezeVision: o.freezeVision !== false && o.visionSteps > 0,
        extraCycles: o.extend,
        warmup: o.warmup,
        weightDecay: o.weightDecay,
        clip: o.clip,
        seed: o.seed,
        evalSeed: o.evalSeed,
        evalN: o.evalN,
        evalEvery: o.evalEvery,
        checkpointEvery: o.checkpointEvery,
        workers: o.workers,
        pauseAfter: o.pauseAfter,
      });
      if (!r.finished) return;
      process.stdout.write(
        `trained in ${Math.round(r.seconds)} s; held-out first-token accuracy ${(100 * r.finalEvalAccuracy).toFixed(1)}% → ${o.out}\n`,
      );
    });
}
