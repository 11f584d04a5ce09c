/**
 * `npm run bench`: kernel GFLOPS (ts vs ort) and full-model prefill/decode tokens/s on random weights with
 * the shapes of a named real LLaVA configuration.
 *
 *   npm run bench -- [--config llava-1.5-7b|llava-v1.6-mistral-7b|llava-interleave-qwen-0.5b|qwen2-vl-2b]
 *                    [--layers N] [--vision-layers N]
 *                    [--decode N] [--kernels auto|ts|ort] [--skip-kernels] [--quick] [--relevancy] [--json]
 *
 * `--relevancy` also times exact relevancy of the first generated token (the LLM map, and the chain map
 * through the vision tower where the model has one), forward with the tape included.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { generate } from "../src/generate/generate.js";
import { relevancyMaps } from "../src/interpret/relevancy/index.js";
import { createKernels, parseKernelChoice } from "../src/kernels/index.js";
import { loadModel } from "../src/models/registry.js";
import { flag } from "./args.js";
import { benchKernels, type KernelBenchRow } from "./kernels.js";
import { NAMED_CONFIGS, writeRandomCheckpoint } from "./random-checkpoint.js";
import { writeRandomQwenCheckpoint } from "./random-qwen-checkpoint.js";

const json = process.argv.includes("--json");
const quick = process.argv.includes("--quick");
const configName = flag("--config") ?? "llava-1.5-7b";
const cfg = NAMED_CONFIGS[configName];
if (!cfg) {
  console.error(`error: unknown --config "${configName}" (known: ${Object.keys(NAMED_CONFIGS).join(", ")})`);
  process.exit(1);
}
const layers = Number(flag("--layers") ?? 2);
const visionLayers = flag("--vision-layers") ? Number(flag("--vision-layers")) : undefined;
const decodeTokens = Number(flag("--decode") ?? 8);
const withRelevancy = process.argv.includes("--relevancy");
const kernelChoice = parseKernelChoice(flag("--kernels") ?? "auto");
const log = (s: string) => {
  if (!json) console.log(s);
};

let kernelRows: KernelBenchRow[] = [];
if (!process.argv.includes("--skip-kernels")) {
  log("kernels: linear y = x·Wᵀ");
  log("impl            m      k      n   GFLOPS");
  kernelRows = await benchKernels({
    quick,
    onRow: (r) =>
      log(
        `${r.impl.padEnd(10)} ${String(r.m).padStart(6)} ${String(r.k).padStart(6)} ${String(r.n).padStart(6)} ${r.gflops.toFixed(2).padStart(8)}`,
      ),
  });
}

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-bench-"));
try {
  log(`\nmodel: ${cfg.name} shapes, ${layers} text layers, random BF16 weights (writing to ${dir})`);
  if (cfg.qwen2vl)
    writeRandomQwenCheckpoint(dir, cfg, {
      layers,
      visionLayers,
      fixture: path.join(root, "test/fixtures/qwen2-vl-tiny"),
    });
  else
    writeRandomCheckpoint(dir, cfg, {
      layers,
      visionLayers,
      tokenizerFrom: path.join(root, "test/fixtures/llava-tiny-llama"),
    });
  const model = loadModel(dir);
  const kernels = await createKernels(kernelChoice);
  // Any-resolution models get a 4:3 picture (what users upload); LLaVA its square.
  const S = cfg.vision.imageSize;
  const [pw, ph] = cfg.anyresPinpoints || cfg.qwen2vl ? [800, 600] : [S, S];
  const picture = { width: pw, height: ph, data: new Uint8Array(3 * pw * ph).map((_, i) => (i * 37) & 255) };
  const prepared = model.preprocess(picture, "default");
  const chain = model.towerGeometry(prepared.layout) !== null;
  let t0 = performance.now();
  const image = await model.encodeImage(kernels, prepared.pixels, { layout: prepared.layout });
  const visionMs = performance.now() - t0;
  const enc = model.text.encodePrompt("What is shown in this image? Describe it in detail.", image.count);
  t0 = performance.now();
  const trace = await generate(model, kernels, enc.inputIds, image, prepared.layout, {
    maxNewTokens: decodeTokens + 1,
    temperature: 0,
    topP: 1,
    seed: 0,
    stopIds: [],
  });
  const T = enc.inputIds.length;
  let relevancyMs: number | null = null;
  if (withRelevancy) {
    t0 = performance.now();
    await relevancyMaps(
      model,
      kernels,
      {
        inputIds: enc.inputIds,
        generatedIds: trace.generatedIds,
        pixels: prepared.pixels,
        layout: prepared.layout,
      },
      { mode: "exact", tokens: [0], vision: chain ? ["chain"] : [] },
    );
    relevancyMs = performance.now() - t0;
  }
  const result = {
    config: cfg.name,
    layers,
    vision_layers: visionLayers ?? cfg.vision.layers,
    kernels: kernelChoice,
    prompt_tokens: T,
    image_tokens: image.count,
    vision_ms: Math.round(visionMs),
    prefill_tokens_per_s: T / (trace.timingsMs.prefill / 1000),
    decode_tokens_per_s: (trace.generatedIds.length - 1) / (trace.timingsMs.decode / 1000),
    relevancy_ms: relevancyMs === null ? null : Math.round(relevancyMs),
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  await kernels.dispose();
  model.close();
  if (json) console.log(JSON.stringify({ kernels: kernelRows, model: result }));
  else {
    log(`vision tower: ${result.vision_ms} ms`);
    log(`prefill: ${T} tokens at ${result.prefill_tokens_per_s.toFixed(1)} tokens/s`);
    log(`decode: ${result.decode_tokens_per_s.toFixed(2)} tokens/s`);
    if (result.relevancy_ms !== null)
      log(`relevancy (exact, first token${chain ? ", chain" : ""}): ${result.relevancy_ms} ms`);
    log(`peak RSS: ${result.peak_rss_mb} MB`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
