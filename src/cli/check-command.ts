/** `lvlm-interpret check`: the faithfulness check of a map (deletion / insertion curves against random). */
import { Command, InvalidArgumentError, Option } from "commander";
import {
  checkFaithfulness,
  DEFAULT_SEEDS,
  DEFAULT_STEPS,
  type FaithfulnessResult,
  MAP_SPEC_HELP,
  parseMapSpec,
} from "../interpret/faithfulness/index.js";
import { parseKernelChoice } from "../kernels/index.js";
import { stderrProgress } from "./progress.js";

function intArg(name: string, min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max} (got "${v}")`);
    return n;
  };
}

const HELP = `
Maps (--map), each one value per image token for answer token k:
  attn:L:H        raw attention of LLM layer L, head H, from the position that predicted token k
  attn:L:mean     the same, averaged over the layer's heads
  rollout         attention rollout over every LLM layer
  rel:MODE:KIND   relevancy stored in the run by \`lvlm-interpret relevancy\` (MODE exact | incremental;
                  KIND llm | vit | all | all_v2 | chain; vision kinds need --vision KIND there)
  causal          CLEANN patch weights from \`lvlm-interpret causal --token k\` (causal/<k>.json)

What it does: the image tokens are ranked by the map. Deletion: the top 0 %, 1/N, …, 100 % of them are
deleted — their boxes in the original picture painted with the processor's background colour int(mean·255),
which normalises to ≈ 0 (the same deletion as bench:grounding) — and the model is run again, teacher-forced
(the prompt and the answer tokens before k), reading token k's probability. Insertion: only the top tokens
are kept, the rest deleted. The same is done for --seeds random rankings (their mean is the baseline).
AUC: the mean of the curve over the steps (trapezoids). A faithful map has a deletion AUC below random
(the probability falls as soon as its top patches go) and an insertion AUC above random.

Output: <run>/faithfulness/<k>.<map with ":" as "-">.json (the app shows it), and a summary on stdout
(--json: the whole result).`;

function summary(r: FaithfulnessResult): string {
  const f = (v: number) => v.toFixed(3);
  return [
    `map ${r.map}, answer token ${r.token} (${JSON.stringify(r.token_text)}), p = ${f(r.run_probability)} as generated`,
    `deletion AUC  ${f(r.curves.deletion_auc)}  (random ${f(r.random.deletion_auc)}; lower = more faithful)`,
    `insertion AUC ${f(r.curves.insertion_auc)}  (random ${f(r.random.insertion_auc)}; higher = more faithful)`,
  ].join("\n");
}

export function checkCommand(): Command {
  return new Command("check")
    .description(
      "faithfulness check of a map: delete (or keep only) its top image patches, re-run the model, and compare the answer token's probability curve with a random map's",
    )
    .requiredOption("--run <dir>", "run directory written by `lvlm-interpret trace`")
    .requiredOption("--token <k>", "0-based index of the answer token", intArg("--token", 0, 1e9))
    .requiredOption("--map <spec>", MAP_SPEC_HELP, (v: string) => {
      try {
        parseMapSpec(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
      return v;
    })
    .option("--steps <n>", "steps from 0 % to 100 %", intArg("--steps", 1, 100), DEFAULT_STEPS)
    .option("--seeds <n>", "random maps averaged for the baseline", intArg("--seeds", 1, 20), DEFAULT_SEEDS)
    .option("--json", "print the whole result as JSON")
    .option("--model <dir>", "checkpoint folder (default: the one recorded in the run)")
    .addOption(
      new Option("--kernels <impl>", "matmul kernels: auto (by size) | ts | ort")
        .choices(["auto", "ts", "ort"])
        .default("auto"),
    )
    .option("--quiet", "no progress lines on stderr")
    .addHelpText("after", HELP)
    .action(async (o) => {
      const { file, result } = await checkFaithfulness(o.run, {
        token: o.token,
        map: o.map,
        steps: o.steps,
        seeds: o.seeds,
        modelDir: o.model,
        kernels: parseKernelChoice(o.kernels),
        onProgress: o.quiet ? undefined : stderrProgress(),
      });
      process.stdout.write(o.json ? `${JSON.stringify(result, null, 1)}\n` : `${summary(result)}\n`);
      if (!o.quiet) process.stderr.write(`written to ${file} in the run (${result.seconds.toFixed(1)} s)\n`);
    });
}
