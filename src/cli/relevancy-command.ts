import { Command, InvalidArgumentError, Option } from "commander";
import { KERNEL_CHOICES } from "../contracts/lists.js";
import {
  computeRelevancy,
  RELEVANCY_MODES,
  type RelevancySummary,
  TAPE_MEMORY_BYTES,
  VISION_RELEVANCY_KINDS,
  type VisionRelevancyKind,
} from "../interpret/relevancy/index.js";
import { parseKernelChoice } from "../kernels/index.js";
import { modelOptionHelp } from "./default-model.js";
import { stderrProgress } from "./progress.js";

/** "all" or a comma list of indices and ranges ("0,3,5-7"). */
export function parseTokenList(v: string): number[] | "all" {
  const s = v.trim();
  if (s === "all") return "all";
  const out: number[] = [];
  for (const part of s.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new InvalidArgumentError(`--tokens must be "all" or indices like 0,3,5-7 (got "${v}")`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new InvalidArgumentError(`--tokens: empty range ${part.trim()}`);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

export function parseVisionList(v: string): VisionRelevancyKind[] {
  const out: VisionRelevancyKind[] = [];
  for (const part of v.split(",")) {
    const k = part.trim();
    if (!k) continue;
    if (!(VISION_RELEVANCY_KINDS as readonly string[]).includes(k)) {
      throw new InvalidArgumentError(
        `--vision: unknown map "${k}" (expected a comma list of ${VISION_RELEVANCY_KINDS.join(", ")})`,
      );
    }
    out.push(k as VisionRelevancyKind);
  }
  return out;
}

/** --tape-memory: GiB (a non-negative number) or "all". */
export function parseTapeMemory(v: string): number {
  const s = v.trim();
  if (s === "all") return Number.POSITIVE_INFINITY;
  const gib = Number(s);
  if (s === "" || !Number.isFinite(gib) || gib < 0)
    throw new InvalidArgumentError(`--tape-memory must be GiB (a number ≥ 0) or "all" (got "${v}")`);
  return gib * 2 ** 30;
}

export function relevancyCommand(): Command {
  return new Command("relevancy")
    .description("add Chefer-style relevancy maps (LLM and vision tower) to a run directory")
    .requiredOption("--run <dir>", "run directory written by `trace`")
    .addOption(
      new Option(
        "--mode <mode>",
        "exact (fresh gradients per token) | incremental (LVLM-Interpret's KV-cache scheme)",
      )
        .choices([...RELEVANCY_MODES])
        .default("exact"),
    )
    .option(
      "--vision <maps>",
      `vision-side maps, comma list of ${VISION_RELEVANCY_KINDS.join(", ")}`,
      parseVisionList,
      [],
    )
    .option("--tokens <list>", 'generated tokens: "all" or indices like 0,3,5-7', parseTokenList, "all")
    .addOption(
      new Option(
        "--vit-grads <kind>",
        "ViT gradients for vit/all/all_v2: fresh | accumulated (the original tool's)",
      ).choices(["fresh", "accumulated"]),
    )
    .option("--model <dir>", modelOptionHelp("the one recorded in the run"))
    .addOption(
      new Option("--kernels <impl>", "matmul kernels: auto (by size) | ts | ort")
        .choices([...KERNEL_CHOICES])
        .default("auto"),
    )
    .option(
      "--tape-memory <GiB>",
      `GiB of each backward tape (the LLM's, each tower pass's) kept in memory, the rest in an unlinked file under TMPDIR ("all": keep all; default ${TAPE_MEMORY_BYTES / 2 ** 30})`,
      parseTapeMemory,
    )
    .action(async (o) => {
      const progress = stderrProgress();
      const summary = await computeRelevancy(o.run, {
        mode: o.mode,
        vision: o.vision,
        tokens: o.tokens,
        vitGradients: o.vitGrads,
        modelDir: o.model,
        kernels: parseKernelChoice(o.kernels),
        tapeMemoryBytes: o.tapeMemory,
        onProgress: progress,
      });
      process.stdout.write(`${summary.tensorNames.join("\n")}\n`);
      process.stderr.write(relevancyDoneLine(summary));
    });
}

/** What was added, where and how fast: one line for stderr. */
export function relevancyDoneLine(summary: RelevancySummary): string {
  const n = summary.tokens.length;
  return `relevancy (${summary.mode}) for ${n} token${n === 1 ? "" : "s"} added to ${summary.file} in ${summary.seconds.toFixed(1)} s (${(summary.seconds / n).toFixed(2)} s/token)\n`;
}
