import * as fs from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { ATTN_DTYPES, IMAGE_MODES, KERNEL_CHOICES } from "../contracts/lists.js";
import {
  checkVisionMaps,
  computeRelevancy,
  RELEVANCY_MODES,
  TAPE_MEMORY_BYTES,
  VISION_RELEVANCY_KINDS,
} from "../interpret/relevancy/index.js";
import { createKernels, parseKernelChoice } from "../kernels/index.js";
import { prepareWeights } from "../models/prepare.js";
import { loadModel } from "../models/registry.js";
import { checkRunOut } from "../run/run-dir.js";
import { traceWithModel } from "../trace.js";
import { defaultModelDir, modelOptionHelp } from "./default-model.js";
import { stderrProgress } from "./progress.js";
import { parseTapeMemory, parseVisionList, relevancyDoneLine } from "./relevancy-command.js";
import { weightsOption } from "./weights-option.js";

function intArg(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };
}

function numArg(name: string, min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}]`);
    return n;
  };
}

export function traceCommand(): Command {
  return new Command("trace")
    .description(
      "answer a question about an image and write a run directory with every attention, logit and feature",
    )
    .option("--model <dir>", modelOptionHelp("the embedded default model"))
    .requiredOption("--image <file>", "PNG, JPEG or WebP image")
    .requiredOption("--prompt <text>", "the question")
    .requiredOption("--out <dir>", "run directory to create")
    .option("--max-new-tokens <n>", "most tokens to generate", intArg("--max-new-tokens", 1), 32)
    .option("--greedy", "greedy decoding (the default unless --temperature > 0)")
    .option("--temperature <t>", "sampling temperature; 0 = greedy", numArg("--temperature", 0, 100), 0)
    .option("--top-p <p>", "nucleus sampling mass", numArg("--top-p", 0, 1), 1)
    .option("--seed <n>", "random seed for sampling", intArg("--seed", 0), 0)
    .addOption(
      new Option(
        "--image-mode <mode>",
        "default | pad (to square, LVLM-Interpret background) | resize (to the tower's size)",
      )
        .choices([...IMAGE_MODES])
        .default("default"),
    )
    .addOption(
      new Option("--attn-dtype <dtype>", "dtype of stored attentions (f16 halves the run size)")
        .choices([...ATTN_DTYPES])
        .default("f32"),
    )
    .addOption(weightsOption())
    .addOption(
      new Option("--kernels <impl>", "matmul kernels: auto (by size) | ts | ort")
        .choices([...KERNEL_CHOICES])
        .default("auto"),
    )
    .option("--overwrite", "replace an existing run directory")
    .addOption(
      new Option(
        "--relevancy <mode>",
        "then add relevancy maps of every answer token, as `relevancy --mode` would, with the model still loaded",
      ).choices([...RELEVANCY_MODES]),
    )
    .option(
      "--vision <maps>",
      `with --relevancy: vision-side maps, comma list of ${VISION_RELEVANCY_KINDS.join(", ")}`,
      parseVisionList,
    )
    .option(
      "--tape-memory <GiB>",
      `with --relevancy: GiB of each backward tape kept in memory, the rest in an unlinked file under TMPDIR ("all": keep all; default ${TAPE_MEMORY_BYTES / 2 ** 30})`,
      parseTapeMemory,
    )
    .action(async (o) => {
      if (!o.relevancy && (o.vision !== undefined || o.tapeMemory !== undefined))
        throw new Error(
          `${o.vision !== undefined ? "--vision" : "--tape-memory"} applies to --relevancy, which was not given (add --relevancy exact or incremental)`,
        );
      // Before the model loads (minutes for a 7B): an --out that cannot be written fails now.
      checkRunOut(o.out, { overwrite: Boolean(o.overwrite) });
      const modelDir = o.model ?? defaultModelDir();
      let bytes: Uint8Array;
      try {
        bytes = fs.readFileSync(o.image);
      } catch (e) {
        throw new Error(`${o.image}: cannot read image (${(e as NodeJS.ErrnoException).code ?? e})`);
      }
      const progress = stderrProgress();
      progress("load", 0, 1);
      const model = loadModel(modelDir, { weights: o.weights });
      progress("load", 1, 1);
      const kernels = await createKernels(parseKernelChoice(o.kernels));
      try {
        // A trace alone only runs forward: the int8 codes can live in onnxruntime alone.
        await prepareWeights(model, kernels, { onProgress: progress, forwardOnly: !o.relevancy });
        const { runDir, manifest } = await traceWithModel(model, kernels, {
          image: { bytes, name: o.image },
          prompt: o.prompt,
          maxNewTokens: o.maxNewTokens,
          temperature: o.greedy ? 0 : o.temperature,
          topP: o.topP,
          seed: o.seed,
          imageMode: o.imageMode,
          attnDtype: o.attnDtype,
          out: o.out,
          overwrite: Boolean(o.overwrite),
          onProgress: progress,
          // Maps the model cannot give for this image are refused before the trace, not after it.
          check: o.relevancy ? (layout) => checkVisionMaps(model, layout, o.vision ?? []) : undefined,
        });
        process.stdout.write(`${manifest.answer}\n`);
        process.stderr.write(
          `run written to ${runDir} (${manifest.generated_ids.length} tokens, sequence ${manifest.seq_len})\n`,
        );
        if (o.relevancy) {
          const summary = await computeRelevancy(runDir, {
            mode: o.relevancy,
            vision: o.vision ?? [],
            model,
            kernels,
            tapeMemoryBytes: o.tapeMemory,
            onProgress: progress,
          });
          process.stderr.write(relevancyDoneLine(summary));
        }
      } finally {
        await kernels.dispose();
        model.close();
      }
    });
}
