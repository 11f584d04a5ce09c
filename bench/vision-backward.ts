/**
 * `node dist/bench/vision-backward.js`: the vision tower's backward (what relevancy's vit/all/all_v2/chain maps
 * run once per answer token) per-op vs one onnxruntime graph per layer, interleaved in one process so both
 * see the same machine load. Only the tower of the checkpoint is loaded.
 *
 *   node dist/bench/vision-backward.js [--model DIR] [--layers N] [--rounds R] [--kernels auto|ort] [--json]
 *
 * Without `--model`, a random llava-1.5-7b-shaped checkpoint (CLIP-L/336 tower, bf16) is written to a temp
 * folder. The forward (with the tape) runs once; then each round runs the backward from a gradient at the
 * last hidden state down to hidden_states[0], per-op then graph. Reported per path: wall and CPU seconds
 * (user + system, all threads), kernel calls and the time inside them, and the largest difference between
 * the two paths' input gradients and dProbs.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createKernels, parseKernelChoice } from "../src/kernels/index.js";
import { readLlavaConfig } from "../src/models/llava/config.js";
import { LLAVA_WEIGHT_NAMINGS } from "../src/models/llava/model.js";
import { type VisionTape, VisionTower } from "../src/models/vision.js";
import { ModelWeights } from "../src/models/weights.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { count, flag } from "./args.js";
import { NAMED_CONFIGS, writeRandomCheckpoint } from "./random-checkpoint.js";
import { TimedKernels } from "./timed-kernels.js";

const json = process.argv.includes("--json");
const rounds = count("--rounds", 2);
const kernelChoice = parseKernelChoice(flag("--kernels") ?? "auto");
const log = (s: string) => {
  if (!json) console.log(s);
};

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const modelDir = flag("--model");
const dir = modelDir ? path.resolve(modelDir) : fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-vbw-"));
if (!modelDir) {
  const layers = count("--layers", 24);
  log(`writing a random llava-1.5-7b-shaped checkpoint (${layers} tower layers, bf16) to ${dir}`);
  writeRandomCheckpoint(dir, NAMED_CONFIGS["llava-1.5-7b"], {
    layers: 1,
    visionLayers: layers,
    tokenizerFrom: path.join(root, "test/fixtures/llava-tiny-llama"),
  });
}
const config = readLlavaConfig(dir);
const weights = ModelWeights.open(dir, LLAVA_WEIGHT_NAMINGS);
const inner = await createKernels(kernelChoice);
try {
  const tower = new VisionTower(config.vision, weights);
  const L = Math.min(count("--layers", tower.layers.length), tower.layers.length);
  const { hiddenSize: D, numHeads: H, imageSize: S } = tower.cfg;
  const n = tower.seqLen;
  log(`tower: ${L} of ${tower.layers.length} layers, D=${D}, ${H} heads, n=${n}, ${tower.layers[0].q.dtype}`);
  const pixels = Float32Array.from({ length: 3 * S * S }, (_, i) => Math.sin(i * 0.37) * 1.5);
  const t0 = performance.now();
  const fwd = await tower.forward(inner, pixels, undefined, { tape: true });
  const tape = fwd.tape as VisionTape;
  log(`forward with tape: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const dHidden: (Float32Array | null)[] = Array.from({ length: tower.layers.length + 1 }, () => null);
  dHidden[L] = Float32Array.from({ length: n * D }, (_, i) => Math.cos(i * 0.53) * 0.01);

  const paths = { perOp: new TimedKernels(inner, false), graph: new TimedKernels(inner, true) };
  const results: Record<string, { wall: number[]; cpu: number[]; calls: number; kernelS: number[] }> = {
    perOp: { wall: [], cpu: [], calls: 0, kernelS: [] },
    graph: { wall: [], cpu: [], calls: 0, kernelS: [] },
  };
  const last: Record<string, { d0: Float32Array; dProbs: Float32Array[] }> = {};
  for (let r = 0; r < rounds; r++) {
    for (const name of ["perOp", "graph"] as const) {
      const k = paths[name];
      k.reset();
      const dProbs: Float32Array[] = [];
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      const res = await tower.backward(k, tape, dHidden, { onLayer: (i, dp) => (dProbs[i] = dp) });
      const wall = (performance.now() - w0) / 1000;
      const c = process.cpuUsage(c0);
      const out = results[name];
      out.wall.push(wall);
      out.cpu.push((c.user + c.system) / 1e6);
      out.calls = k.calls;
      out.kernelS.push(k.ms / 1000);
      last[name] = { d0: res.dHidden0, dProbs };
      log(
        `round ${r + 1} ${name.padEnd(5)}: ${wall.toFixed(2)} s wall, ${out.cpu.at(-1)?.toFixed(2)} s CPU, ` +
          `${k.calls} kernel calls (${(k.ms / 1000).toFixed(2)} s inside)`,
      );
    }
  }
  let dProbsDiff = 0;
  for (let i = 0; i < L; i++)
    dProbsDiff = Math.max(dProbsDiff, maxAbsDiff(last.graph.dProbs[i], last.perOp.dProbs[i]));
  const summary = {
    model: modelDir ? dir : "random llava-1.5-7b shapes (bf16)",
    layers: L,
    n,
    dim: D,
    heads: H,
    dtype: tower.layers[0].q.dtype,
    rounds,
    ...results,
    maxAbsDiff: { dHidden0: maxAbsDiff(last.graph.d0, last.perOp.d0), dProbs: dProbsDiff },
    loadAverage: os.loadavg(),
  };
  if (json) console.log(JSON.stringify(summary));
  else log(`largest |Δ| graph vs per-op: dHidden0 ${summary.maxAbsDiff.dHidden0}, dProbs ${dProbsDiff}`);
} finally {
  weights.close();
  await inner.dispose();
  if (!modelDir) fs.rmSync(dir, { recursive: true, force: true });
}
