/**
 * node dist/bench/causal.js [--heads 32] [--size 700] [--jobs N] [--serial] [--dense] [--json]
 *
 * CLEANN over every head of one synthetic LLaVA-1.5-sized layer (576 image tokens, S = 700, 50 image nodes per
 * head): time with worker threads (one per CPU by default) and, with --serial, in one thread for comparison.
 * --dense uses fewer, tighter token topics (more correlated rows, more higher-order CI tests).
 */
import * as os from "node:os";
import { contiguousLayout, DEFAULT_CLEANN_PARAMS } from "../src/interpret/causal/cleann.js";
import { explainLayer } from "../src/interpret/causal/explain-run.js";
import { syntheticLayer } from "./causal-synthetic.js";

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const num = (name: string, def: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : def;
};

const heads = num("--heads", 32);
const size = num("--size", 700);
const jobs = num("--jobs", os.availableParallelism());
const dense = flag("--dense");

const tGen = performance.now();
const layer = syntheticLayer({ heads, size, topics: dense ? 4 : 24, noise: dense ? 0.3 : 0.7 });
const genMs = performance.now() - tGen;
const x = size - 1;
const layout = contiguousLayout(layer.imageStart, layer.imageCount);
const all = Array.from({ length: heads }, (_, h) => h);

async function time(j: number) {
  const t0 = performance.now();
  const recs = await explainLayer(layer.data, [heads, size, size], x, layout, all, DEFAULT_CLEANN_PARAMS, j);
  return { ms: performance.now() - t0, recs };
}

const par = await time(jobs);
const serial = flag("--serial") ? await time(1) : null;
const recs = par.recs;
const mean = (f: (r: (typeof recs)[number]) => number) => recs.reduce((s, r) => s + f(r), 0) / recs.length;
const summary = {
  heads,
  size,
  image_tokens: layer.imageCount,
  dense,
  cpus: os.availableParallelism(),
  jobs,
  synth_ms: Math.round(genMs),
  parallel_ms: Math.round(par.ms),
  serial_ms: serial ? Math.round(serial.ms) : null,
  mean_nodes: mean((r) => r.nodes.length),
  mean_image_nodes: mean((r) => r.num_image_tokens),
  mean_edges: mean((r) => r.edges.length),
  mean_ci_tests: mean((r) => r.ci_tests.n_tests),
  max_head_ms: Math.round(Math.max(...recs.map((r) => r.timings_ms.structure + r.timings_ms.explanation))),
};
if (flag("--json")) {
  console.log(JSON.stringify(summary));
} else {
  console.log(
    `CLEANN, ${heads} heads, S=${size}, ${layer.imageCount} image tokens${dense ? " (dense)" : ""}: ` +
      `${summary.mean_nodes.toFixed(1)} nodes/head (${summary.mean_image_nodes.toFixed(1)} image), ` +
      `${summary.mean_edges.toFixed(1)} edges, ${summary.mean_ci_tests.toFixed(0)} CI tests`,
  );
  console.log(
    `  ${jobs} worker(s) on ${summary.cpus} CPU(s): ${(par.ms / 1000).toFixed(2)} s (slowest head ${summary.max_head_ms} ms)`,
  );
  if (serial) console.log(`  1 thread: ${(serial.ms / 1000).toFixed(2)} s`);
}
