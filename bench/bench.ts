/**
 * `npm run bench`: kernel GFLOPS (ts vs ort) and full-model prefill/decode tokens/s on random weights with
 * the shapes of a named real LLaVA configuration.
 *
 *   npm run bench -- [--config llava-1.5-7b|llava-v1.6-mistral-7b|llava-interleave-qwen-0.5b|qwen2-vl-2b]
 *                    [--layers N] [--vision-layers N] [--model DIR] [--image FILE] [--prompt TEXT]
 *                    [--decode N] [--kernels auto|ts|ort] [--no-blocks] [--skip-kernels] [--quick] [--relevancy]
 *                    [--pipeline] [--torch TORCH.json] [--weights stored|int8] [--json]
 *
 * `--model DIR` measures an existing checkpoint folder (e.g. one written by ../shared/torch-baseline's
 * make_bench_model.py, to compare with PyTorch on the same weights) instead of writing a random one; `--image`
 * and `--prompt` then choose the input (default: a synthetic picture and a fixed question). Every stage is
 * split into time inside native kernel calls and the rest (element-wise work, copies in JS). `--no-blocks`
 * times the per-op path (one kernel call per matmul) instead of whole layers as one onnxruntime graph.
 * `--relevancy` also times exact relevancy of the first generated token (the LLM map, and the chain map
 * through the vision tower where the model has one), forward with the tape included. `--pipeline` times
 * what LVLM-Interpret does for one question after the forward: incremental relevancy of every generated token
 * with vit, all and all_v2 (chain on a tower without CLS), seconds per token included. `--torch FILE` reads the
 * JSON of ../shared/torch-baseline's bench_torch.py on the same folder and adds the ratios (project / PyTorch).
 * `--weights int8` loads the language model's matrices quantised to int8 (the opt-in path; load time includes
 * quantising, and the first call of each matrix builds its onnxruntime session). Like the CLI, the bench
 * runs in a child with glibc's huge-page tunable where it applies (`huge_pages` in the JSON;
 * `LVLM_INTERPRET_HUGEPAGES=0` measures without).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { relaunchWithHugePages } from "../src/cli/huge-pages.js";
import { generate } from "../src/generate/generate.js";
import { decodeImage } from "../src/hf/image-decode.js";
import { relevancyMaps } from "../src/interpret/relevancy/index.js";
import type { VisionRelevancyKind } from "../src/interpret/relevancy/types.js";
import { createKernels, parseKernelChoice } from "../src/kernels/index.js";
import { parseWeightFormat } from "../src/kernels/quantize.js";
import { prepareWeights } from "../src/models/prepare.js";
import { loadModel } from "../src/models/registry.js";
import { flag } from "./args.js";
import { benchKernels, type KernelBenchRow } from "./kernels.js";
import { NAMED_CONFIGS, writeRandomCheckpoint } from "./random-checkpoint.js";
import { writeRandomQwenCheckpoint } from "./random-qwen-checkpoint.js";
import { TimedKernels } from "./timed-kernels.js";

// Measured as the CLI runs (src/cli/huge-pages.ts); this process only waits for the child then.
await relaunchWithHugePages();

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
const withPipeline = process.argv.includes("--pipeline");
const torchFile = flag("--torch");
const kernelChoice = parseKernelChoice(flag("--kernels") ?? "auto");
const weightFormat = oneLineOrExit(() => parseWeightFormat(flag("--weights") ?? "stored"));
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
const modelDir = flag("--model");
const dir = modelDir ? path.resolve(modelDir) : fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-bench-"));
try {
  const torchBench = torchFile ? oneLineOrExit(() => readTorchBench(torchFile, dir)) : null;
  if (modelDir) log(`\nmodel: ${dir}`);
  else if (cfg.qwen2vl) {
    log(`\nmodel: ${cfg.name} shapes, ${layers} text layers, random BF16 weights (writing to ${dir})`);
    writeRandomQwenCheckpoint(dir, cfg, {
      layers,
      visionLayers,
      fixture: path.join(root, "test/fixtures/qwen2-vl-tiny"),
    });
  } else {
    log(`\nmodel: ${cfg.name} shapes, ${layers} text layers, random BF16 weights (writing to ${dir})`);
    writeRandomCheckpoint(dir, cfg, {
      layers,
      visionLayers,
      tokenizerFrom: path.join(root, "test/fixtures/llava-tiny-llama"),
    });
  }
  let t0 = performance.now();
  const model = loadModel(dir, { weights: weightFormat });
  const loadMs = performance.now() - t0;
  const kernels = new TimedKernels(await createKernels(kernelChoice), !process.argv.includes("--no-blocks"));
  // int8: onnxruntime pre-packs each matrix into its session here, timed apart from the load and the prefill.
  t0 = performance.now();
  await prepareWeights(model, kernels);
  const prepareMs = performance.now() - t0;
  const imageFile = flag("--image");
  let picture: { width: number; height: number; data: Uint8Array };
  if (imageFile) picture = await decodeImage(fs.readFileSync(imageFile), imageFile);
  else {
    // Any-resolution models get a 4:3 picture (what users upload); LLaVA its square.
    const S = cfg.vision.imageSize;
    const [pw, ph] = cfg.anyresPinpoints || cfg.qwen2vl ? [800, 600] : [S, S];
    picture = { width: pw, height: ph, data: new Uint8Array(3 * pw * ph).map((_, i) => (i * 37) & 255) };
  }
  const prepared = model.preprocess(picture, "default");
  const geometry = model.towerGeometry(prepared.layout);
  const chain = geometry !== null;
  // LVLM-Interpret's maps where the tower has a CLS token; chain, ours, where it has none.
  const pipelineVision: VisionRelevancyKind[] =
    geometry === null ? [] : geometry.cls >= 0 ? ["vit", "all", "all_v2"] : ["chain"];
  const cpuMs = () => {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  };
  let c0 = cpuMs();
  t0 = performance.now();
  const image = await model.encodeImage(kernels, prepared.pixels, { layout: prepared.layout });
  const visionMs = performance.now() - t0;
  const visionCpuMs = cpuMs() - c0;
  const visionMatmulMs = kernels.ms;
  const visionCalls = kernels.calls;
  const enc = model.text.encodePrompt(
    flag("--prompt") ?? "What is shown in this image? Describe it in detail.",
    image.count,
  );
  kernels.reset();
  let prefillMatmulMs = 0;
  let prefillCalls = 0;
  let prefillCpuMs = 0;
  c0 = cpuMs();
  const trace = await generate(model, kernels, enc.inputIds, image, prepared.layout, {
    maxNewTokens: decodeTokens + 1,
    temperature: 0,
    topP: 1,
    seed: 0,
    stopIds: [],
    onProgress: (stage, done, total) => {
      if (stage === "prefill" && done === total) {
        prefillMatmulMs = kernels.ms;
        prefillCalls = kernels.calls;
        prefillCpuMs = cpuMs() - c0;
        c0 = cpuMs();
        kernels.reset();
      }
    },
  });
  const decodeCpuMs = cpuMs() - c0;
  const decodeMatmulMs = kernels.ms;
  // The forward's attention is not written here: let it go before relevancy (1.4 GB at full 7B depth).
  trace.llmAttn.dispose();
  const T = enc.inputIds.length;
  const steps = trace.generatedIds.length - 1;
  const round = (x: number) => Math.round(x);
  let relevancyMs: number | null = null;
  const relevancyInputs = {
    inputIds: enc.inputIds,
    generatedIds: trace.generatedIds,
    pixels: prepared.pixels,
    layout: prepared.layout,
  };
  if (withRelevancy) {
    t0 = performance.now();
    await relevancyMaps(model, kernels, relevancyInputs, {
      mode: "exact",
      tokens: [0],
      vision: chain ? ["chain"] : [],
    });
    relevancyMs = performance.now() - t0;
  }
  const pipeline = withPipeline ? await timePipeline(model, kernels, relevancyInputs, pipelineVision) : null;
  const result = {
    config: modelDir ? dir : cfg.name,
    layers: model.info.llmLayers,
    vision_layers: model.info.vitLayers,
    kernels: kernelChoice,
    weights: weightFormat,
    blocks: kernels.blocks !== undefined,
    prompt_tokens: T,
    image_tokens: image.count,
    load_ms: round(loadMs),
    prepare_ms: round(prepareMs),
    vision_ms: round(visionMs),
    vision_matmul_ms: round(visionMatmulMs),
    vision_kernel_calls: visionCalls,
    vision_cpu_ms: round(visionCpuMs),
    prefill_ms: round(trace.timingsMs.prefill),
    prefill_matmul_ms: round(prefillMatmulMs),
    prefill_kernel_calls: prefillCalls,
    prefill_cpu_ms: round(prefillCpuMs),
    decode_ms_per_token: round(trace.timingsMs.decode / steps),
    decode_matmul_ms_per_token: round(decodeMatmulMs / steps),
    decode_cpu_ms_per_token: round(decodeCpuMs / steps),
    forward_ms: round(visionMs + trace.timingsMs.prefill + trace.timingsMs.decode),
    prefill_tokens_per_s: T / (trace.timingsMs.prefill / 1000),
    decode_tokens_per_s: steps / (trace.timingsMs.decode / 1000),
    generated_ids: trace.generatedIds,
    relevancy_ms: relevancyMs === null ? null : round(relevancyMs),
    pipeline,
    pipeline_ms: pipeline
      ? round(visionMs + trace.timingsMs.prefill + trace.timingsMs.decode + pipeline.total_ms)
      : null,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
    process_cpu_ms: round(cpuMs()),
    huge_pages: process.env.GLIBC_TUNABLES?.includes("glibc.malloc.hugetlb=1") ?? false,
  };
  await kernels.dispose();
  model.close();
  const ratios = torchBench ? torchRatios(torchBench, result) : null;
  if (json) console.log(JSON.stringify({ kernels: kernelRows, model: result, torch_ratios: ratios }));
  else {
    log(
      `vision tower: ${result.vision_ms} ms (${result.vision_matmul_ms} ms in ${visionCalls} kernel calls)`,
    );
    log(
      `prefill: ${T} tokens in ${result.prefill_ms} ms, ${result.prefill_tokens_per_s.toFixed(1)} tokens/s (${result.prefill_matmul_ms} ms in ${prefillCalls} kernel calls; ${result.prefill_cpu_ms} ms CPU)`,
    );
    log(
      `decode: ${result.decode_ms_per_token} ms/token, ${result.decode_tokens_per_s.toFixed(2)} tokens/s (${result.decode_matmul_ms_per_token} ms/token in kernel calls; ${result.decode_cpu_ms_per_token} ms CPU/token)`,
    );
    log(`forward (vision + prefill + decode): ${result.forward_ms} ms`);
    if (result.relevancy_ms !== null)
      log(`relevancy (exact, first token${chain ? ", chain" : ""}): ${result.relevancy_ms} ms`);
    if (pipeline) {
      log(
        `relevancy (incremental, ${pipeline.vision.join(", ")}, ${pipeline.per_token_ms.length} tokens): ${pipeline.total_ms} ms, per token ${pipeline.per_token_ms.join(" ")} ms`,
      );
      log(`pipeline (forward + relevancy): ${result.pipeline_ms} ms`);
    }
    log(`peak RSS: ${result.peak_rss_mb} MB`);
    if (ratios) for (const [k, v] of Object.entries(ratios)) log(`${k}: ${v}`);
  }
} finally {
  if (!modelDir) fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * LVLM-Interpret's per-question relevancy after the forward: incremental mode, every generated token, the
 * CLS-row maps (chain where the tower has no CLS). The time includes the tape's forward, as the CLI's
 * `relevancy` command pays it.
 */
async function timePipeline(
  model: ReturnType<typeof loadModel>,
  kernels: TimedKernels,
  inputs: Parameters<typeof relevancyMaps>[2],
  vision: VisionRelevancyKind[],
): Promise<{ vision: string[]; total_ms: number; forward_ms: number; per_token_ms: number[] }> {
  const marks: number[] = [];
  let forwardMs = 0;
  const t0 = performance.now();
  await relevancyMaps(model, kernels, inputs, {
    mode: "incremental",
    vision,
    onProgress: (stage, done) => {
      if (stage === "forward" && done === 1) forwardMs = performance.now() - t0;
      if (stage === "backward") marks.push(performance.now());
    },
  });
  const total = performance.now() - t0;
  const perToken = marks.slice(1).map((m, i) => Math.round(m - marks[i]));
  return { vision, total_ms: Math.round(total), forward_ms: Math.round(forwardMs), per_token_ms: perToken };
}

/** f(), or its error as one line and exit status 1 (a bad flag is the user's to fix, not a stack trace). */
function oneLineOrExit<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    process.exit(1);
  }
}

/** What bench_torch.py's JSON (../shared/torch-baseline) holds that the ratios read. */
interface TorchBench {
  timings_s?: Record<string, unknown>;
  lvlm_total_s?: number;
  peak_rss_mb?: number;
  cpu_accounting_total?: { own_cpu_s?: number };
  preset?: { model_dir?: string };
  inputs?: { T?: number };
  generated_ids?: number[];
}

/** bench_torch.py's JSON, read before the long run so a wrong file or folder fails at once. */
function readTorchBench(file: string, modelDir: string): TorchBench {
  let t: TorchBench;
  try {
    t = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(
      `--torch ${file}: not bench_torch.py JSON (${(e as Error).message.replace(/\s+/g, " ")}); run it with --json --out FILE`,
    );
  }
  // Ratios mean something only on the same folder (and, checked after the run, the same prompt).
  const theirDir = t.preset?.model_dir ? path.resolve(t.preset.model_dir) : null;
  if (theirDir !== modelDir) {
    throw new Error(
      `--torch ${file}: measured ${theirDir ?? "an unknown folder"}, not ${modelDir}; run both on the same --model`,
    );
  }
  return t;
}

/** Project / PyTorch ratios on the same folder (README of the torch baseline). */
function torchRatios(
  t: TorchBench,
  ours: {
    forward_ms: number;
    vision_ms: number;
    prefill_ms: number;
    decode_ms_per_token: number;
    pipeline_ms: number | null;
    peak_rss_mb: number;
    process_cpu_ms: number;
    prompt_tokens: number;
    generated_ids: number[];
  },
): Record<string, number | null> {
  if (t.inputs?.T !== ours.prompt_tokens) {
    throw new Error(
      `--torch: PyTorch's prompt had ${t.inputs?.T ?? "?"} tokens, this run's ${ours.prompt_tokens}; use the same --image and --prompt`,
    );
  }
  const tm = t.timings_s ?? {};
  // decode_per_step is a list of steps in bench_torch.py's JSON: their mean.
  const sec = (k: string) => {
    const v = tm[k];
    if (Array.isArray(v) && v.length > 0) return v.reduce((a: number, b: number) => a + b, 0) / v.length;
    return typeof v === "number" ? v : null;
  };
  const ratio = (a: number | null, b: number | null) =>
    a === null || b === null || b === 0 ? null : Math.round((a / b) * 1000) / 1000;
  const torchForward = sec("generate_total");
  const torchPipeline =
    torchForward !== null && typeof t.lvlm_total_s === "number" ? torchForward + t.lvlm_total_s : null;
  return {
    same_generated_ids: Number(JSON.stringify(t.generated_ids) === JSON.stringify(ours.generated_ids)),
    vision_ratio: ratio(ours.vision_ms / 1000, sec("vision_tower")),
    prefill_ratio: ratio(ours.prefill_ms / 1000, sec("prefill")),
    decode_per_token_ratio: ratio(ours.decode_ms_per_token / 1000, sec("decode_per_step")),
    forward_ratio: ratio(ours.forward_ms / 1000, torchForward),
    pipeline_ratio: ratio(ours.pipeline_ms === null ? null : ours.pipeline_ms / 1000, torchPipeline),
    peak_rss_ratio: ratio(ours.peak_rss_mb, t.peak_rss_mb ?? null),
    // Whole processes' CPU seconds (all threads): far less sensitive to other load than wall time.
    process_cpu_ratio: ratio(ours.process_cpu_ms / 1000, t.cpu_accounting_total?.own_cpu_s ?? null),
  };
}
