import { Command, InvalidArgumentError, Option } from "commander";
import { runBatch } from "../batch/run-batch.js";
import { KERNEL_CHOICES } from "../contracts/lists.js";
import { RELEVANCY_MODES } from "../interpret/relevancy/index.js";
import { parseKernelChoice } from "../kernels/index.js";
import { defaultModelDir, modelOptionHelp } from "./default-model.js";
import { etaSeconds, formatDuration } from "./progress.js";
import { parseVisionList } from "./relevancy-command.js";
import { weightsOption } from "./weights-option.js";

function positiveInt(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

export function batchCommand(): Command {
  return new Command("batch")
    .description(
      "answer every question of a dataset (JSONL or MMVP folder) with one model load; write a run per item and report.json/report.md",
    )
    .requiredOption(
      "--dataset <file>",
      "JSONL file ({id, image, question, answer?, options?, pair?, box?}) or MMVP folder",
    )
    .requiredOption(
      "--out <dir>",
      "output folder (runs/<id>, report.json, report.md, plots/); re-running resumes",
    )
    .option("--model <dir>", modelOptionHelp("the embedded default model"))
    .addOption(
      new Option("--relevancy <mode>", "exact | incremental (LVLM-Interpret's KV-cache scheme)")
        .choices([...RELEVANCY_MODES])
        .default("exact"),
    )
    .option("--vision <maps>", "vision-side relevancy maps to add too (comma list)", parseVisionList, [])
    .option("--causal", "also write a causal explanation of each answer's first token")
    .option("--limit <n>", "only the first n items", positiveInt("--limit"))
    .option("--max-new-tokens <n>", "most tokens per answer", positiveInt("--max-new-tokens"), 16)
    .addOption(weightsOption())
    .addOption(
      new Option("--kernels <impl>", "matmul kernels: auto (by size) | ts | ort")
        .choices([...KERNEL_CHOICES])
        .default("auto"),
    )
    .action(async (o) => {
      let computedSeconds = 0;
      let computed = 0;
      const { report, skipped } = await runBatch({
        dataset: o.dataset,
        out: o.out,
        modelDir: o.model ?? defaultModelDir(),
        relevancy: o.relevancy,
        vision: o.vision,
        causal: Boolean(o.causal),
        limit: o.limit,
        maxNewTokens: o.maxNewTokens,
        kernels: parseKernelChoice(o.kernels),
        weights: o.weights,
        onItem: (r, done, total, wasSkipped) => {
          if (!wasSkipped) {
            computed++;
            computedSeconds += r.seconds;
          }
          const eta = etaSeconds(computedSeconds, computed, total - done);
          const verdict = r.error
            ? `failed: ${r.error}`
            : `${r.answer}${r.correct === null ? "" : r.correct ? " ✓" : " ✗"}`;
          process.stderr.write(
            `[batch] ${done}/${total} ${r.id}${wasSkipped ? " (done before)" : ""}: ${verdict}` +
              `${eta === null ? "" : ` · ETA ${formatDuration(eta)}`}\n`,
          );
        },
      });
      const a = report.aggregates;
      const pct = (v: number | null) => (v === null ? "–" : `${(100 * v).toFixed(1)} %`);
      process.stdout.write(
        `accuracy ${a.correct}/${a.with_expected} (${pct(a.accuracy)}), pairs both/one/none ${a.pairs.both}/${a.pairs.one}/${a.pairs.none}` +
          `${a.failed ? `, ${a.failed} failed` : ""}\n`,
      );
      process.stderr.write(
        `report written to ${o.out}/report.json and report.md (${skipped} item${skipped === 1 ? "" : "s"} done before, ${a.seconds_per_item?.toFixed(2) ?? "–"} s per item)\n`,
      );
    });
}
