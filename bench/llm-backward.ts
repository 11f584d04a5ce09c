/**
 * `node dist/bench/llm-backward.js`: the LLM backward passes relevancy runs per generated token, per-op (one
 * kernel call per matmul, element-wise work in TypeScript) against each decoder layer's backward as one
 * onnxruntime graph, interleaved in one process on one forward tape:
 *  - full: the backward of token 0 over every prompt position (what exact mode runs per token, and
 *    incremental mode for its first token);
 *  - single row: the one-position backward of a later token (incremental mode's per-token step).
 * Wall time, CPU time (user + system, all threads: less sensitive to other processes) and kernel calls per
 * backward; the image tower and the forward tape are built once and not measured.
 *
 *   node dist/bench/llm-backward.js --model DIR [--image FILE] [--prompt TEXT] [--tokens G] [--rounds R]
 *                                   [--kernels auto|ts|ort] [--json]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { decodeImage } from "../src/hf/image-decode.js";
import { createKernels, parseKernelChoice } from "../src/kernels/index.js";
import type { DecoderTape } from "../src/models/decoder.js";
import { loadModel } from "../src/models/registry.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { count, flag } from "./args.js";
import { NAMED_CONFIGS, writeRandomCheckpoint } from "./random-checkpoint.js";
import { TimedKernels } from "./timed-kernels.js";

const json = process.argv.includes("--json");
const tokens = count("--tokens", 8);
const rounds = count("--rounds", 2);
const log = (s: string) => {
  if (!json) console.log(s);
};
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const modelDir = flag("--model");
const dir = modelDir
  ? path.resolve(modelDir)
  : fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-bench-llm-backward-"));
if (!modelDir) {
  // No folder given: llava-1.5-7b shapes with 2 text layers, 1 vision layer, random BF16 weights.
  writeRandomCheckpoint(dir, NAMED_CONFIGS["llava-1.5-7b"], {
    layers: count("--layers", 2),
    visionLayers: 1,
    tokenizerFrom: path.join(root, "test/fixtures/llava-tiny-llama"),
  });
}
const cpuMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

try {
  const model = loadModel(dir);
  const inner = await createKernels(parseKernelChoice(flag("--kernels") ?? "auto"));
  const graph = new TimedKernels(inner, true);
  const perOp = new TimedKernels(inner, false);
  const imageFile = flag("--image") ?? path.join(root, "test/fixtures/llava-tiny-llama/image.png");
  const picture = await decodeImage(fs.readFileSync(imageFile), imageFile);
  const prepared = model.preprocess(picture, "default");
  const image = await model.encodeImage(graph, prepared.pixels, { layout: prepared.layout });
  const enc = model.text.encodePrompt(flag("--prompt") ?? "What color is the circle?", image.count);
  const T = enc.inputIds.length;
  const generated = Array.from({ length: tokens }, (_, i) => 1000 + 37 * i);
  const seq = [...enc.inputIds, ...generated.slice(0, tokens - 1)];
  const dec = model.decoder;
  const fwd = await dec.forward(
    graph,
    model.buildInputsEmbeds(seq, image),
    model.positionIds(seq, prepared.layout),
    dec.newCache(seq.length),
    { tape: true, logitRows: [seq.length - 1] },
  );
  const tape = fwd.tape as DecoderTape;
  log(
    `model: ${dir}\n${model.info.llmLayers} LLM layers, T = ${T}, ${tokens} tokens, ${os.cpus().length} CPUs`,
  );

  /** One backward of token t (full: from position 0; else from its own row only). */
  const backward = async (k: TimedKernels, t: number, full: boolean) => {
    const row = T + t - 1;
    k.reset();
    const c0 = cpuMs();
    const t0 = performance.now();
    const r = await dec.backward(k, tape, [{ row, tokenId: generated[t] }], { from: full ? 0 : row });
    return { wallMs: performance.now() - t0, cpuMs: cpuMs() - c0, calls: k.calls, grad: r.dInputsEmbeds };
  };
  type Stat = { wallMs: number[]; cpuMs: number[]; calls: number };
  const stats: Record<string, Stat> = {};
  const note = (key: string, r: { wallMs: number; cpuMs: number; calls: number }) => {
    stats[key] ??= { wallMs: [], cpuMs: [], calls: r.calls };
    stats[key].wallMs.push(r.wallMs);
    stats[key].cpuMs.push(r.cpuMs);
  };
  let maxRel = 0;
  const rel = (a: Float32Array, b: Float32Array) => {
    let s = 0;
    for (const v of b) s = Math.max(s, Math.abs(v));
    return maxAbsDiff(a, b) / s;
  };
  // Warm-up of both paths (sessions, transposed-weight caches), not measured.
  await backward(perOp, 1, false);
  await backward(graph, 1, false);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? ([perOp, graph] as const) : ([graph, perOp] as const);
    const full: Record<string, Float32Array> = {};
    for (const k of order) {
      const r = await backward(k, 0, true);
      const key = k === graph ? "graph" : "per-op";
      note(`full ${key}`, r);
      full[key] = r.grad;
    }
    maxRel = Math.max(maxRel, rel(full.graph, full["per-op"]));
    for (let t = 1; t < tokens; t++) {
      const single: Record<string, Float32Array> = {};
      for (const k of order) {
        const r = await backward(k, t, false);
        const key = k === graph ? "graph" : "per-op";
        note(`single row ${key}`, r);
        single[key] = r.grad;
      }
      maxRel = Math.max(maxRel, rel(single.graph, single["per-op"]));
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rows = Object.entries(stats).map(([name, s]) => ({
    name,
    runs: s.wallMs.length,
    wall_ms_median: Math.round(median(s.wallMs)),
    wall_ms_min: Math.round(Math.min(...s.wallMs)),
    cpu_ms_median: Math.round(median(s.cpuMs)),
    kernel_calls: s.calls,
  }));
  const result = {
    model: dir,
    llm_layers: model.info.llmLayers,
    prompt_tokens: T,
    tokens,
    rows,
    max_relative_diff_d_inputs_embeds: maxRel,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  if (json) console.log(JSON.stringify(result));
  else {
    log("| backward | runs | wall ms (median / min) | CPU ms (median) | kernel calls |");
    log("|---|---|---|---|---|");
    for (const r of rows)
      log(
        `| ${r.name} | ${r.runs} | ${r.wall_ms_median} / ${r.wall_ms_min} | ${r.cpu_ms_median} | ${r.kernel_calls} |`,
      );
    log(`graph vs per-op d(inputs_embeds): max |Δ| / max |value| = ${maxRel.toExponential(2)}`);
    log(`peak RSS: ${result.peak_rss_mb} MB`);
  }
  await inner.dispose();
  model.close();
} finally {
  if (!modelDir) fs.rmSync(dir, { recursive: true, force: true });
}
