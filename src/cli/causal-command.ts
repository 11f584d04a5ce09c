/** `lvlm-interpret causal`: CLEANN causal explanation of a generated token, written into the run. */
import { Command, InvalidArgumentError } from "commander";
import { CausalError, DEFAULT_CLEANN_PARAMS, explainRun, parseHeads } from "../interpret/causal/index.js";
import { Run } from "../run/run-dir.js";

function intArg(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };
}

function numArg(name: string, min: number, max: number, openMin = false) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n) || n > max || (openMin ? n <= min : n < min)) {
      throw new InvalidArgumentError(`${name} must be a number in ${openMin ? "(" : "["}${min}, ${max}]`);
    }
    return n;
  };
}

const HELP = `
How it works (CLEANN, Rohekar et al. NeurIPS 2023; node choice as in LVLM-Interpret):
  The explained position is x = len(input_ids) - 1 + k, the position whose output predicts generated
  token k. With w = A[x, :] of one head of the layer, the graph nodes are the top-k image tokens by w
  (k = min(max(2, #{j: w_j > att-th}), max-image-tokens)), the text tokens after the image with
  w_j > att-th, and x itself. Ordered ICD learns a partial ancestral graph over them (token position =
  causal order) with a partial-correlation CI test on corr(A·Aᵀ); the explanation of x is every node of
  its possible-d-separation tree within --radius. Heads are independent and run in parallel.

Output: <run>/causal/<k>.json (format: docs/trace-format.md, section "causal/<k>.json").`;

export function causalCommand(): Command {
  const d = DEFAULT_CLEANN_PARAMS;
  return new Command("causal")
    .description(
      "explain a generated token causally (CLEANN over one layer's attention); writes <run>/causal/<k>.json",
    )
    .requiredOption("--run <dir>", "run directory written by `lvlm-interpret trace`")
    .option(
      "--token <k>",
      "0-based index of the generated token to explain (default: the last)",
      intArg("--token", 0),
    )
    .option("--layer <L>", "LLM layer whose attention is used (default: the last)", intArg("--layer", 0))
    .option("--heads <list>", 'heads to analyse: "all", or a list/ranges such as "0,3,8-11"', "all")
    .option(
      "--alpha <p>",
      "p-value threshold of the conditional-independence test: two tokens are judged independent when p > alpha " +
        "(smaller alpha keeps more edges)",
      numArg("--alpha", 0, 1, true),
      d.alpha,
    )
    .option(
      "--att-th <w>",
      "attention threshold: text tokens after the image with attention above it become nodes, and the count of " +
        "tokens above it sets how many image tokens are used",
      numArg("--att-th", 0, 1),
      d.attTh,
    )
    .option(
      "--radius <r>",
      "search radius: depth of the possible-d-separation tree around the explained token (explanation nodes are " +
        "at most this many steps away)",
      intArg("--radius", 1),
      d.maxRange,
    )
    .option(
      "--max-image-tokens <n>",
      "cap on the number of image-token nodes per head",
      intArg("--max-image-tokens", 1),
      d.maxImageTokens,
    )
    .option(
      "--dof <n>",
      "sample size of Fisher's z in the CI test (num_samples): the statistic scales with sqrt(dof - |Z| - 3); " +
        "larger values make more pairs dependent",
      intArg("--dof", 4),
      d.numSamples,
    )
    .option("--jobs <n>", "worker threads (default: one per CPU, at most one per head)", intArg("--jobs", 1))
    .option("--quiet", "no progress lines on stderr")
    .addHelpText("after", HELP)
    .action(async (o) => {
      let headCount: number;
      try {
        const run = Run.open(o.run);
        headCount = run.manifest.model.llm_heads;
        run.close();
      } catch (e) {
        throw new CausalError((e as Error).message);
      }
      const heads = parseHeads(o.heads, headCount);
      const started = performance.now();
      const { file, doc } = await explainRun(o.run, {
        token: o.token,
        layer: o.layer,
        heads,
        jobs: o.jobs,
        params: {
          alpha: o.alpha,
          attTh: o.attTh,
          maxRange: o.radius,
          maxImageTokens: o.maxImageTokens,
          numSamples: o.dof,
        },
        onHead: o.quiet
          ? undefined
          : (r, done, total) => {
              const ms = r.timings_ms.structure + r.timings_ms.explanation;
              process.stderr.write(
                `[causal] head ${r.head} (${done}/${total}): ${r.nodes.length} nodes, ${r.edges.length} edges, ` +
                  `explanation ${r.explanation.length} (${r.explanation_image_patches.length} patches), ${ms.toFixed(0)} ms\n`,
              );
            },
      });
      if (!o.quiet) {
        process.stderr.write(
          `[causal] token ${doc.token_index} (position ${doc.token_to_explain}), layer ${doc.layer}: ` +
            `${doc.heads.length} heads in ${((performance.now() - started) / 1000).toFixed(2)} s -> ${file}\n`,
        );
      }
    });
}
