/**
 * `bench:relevancy`: seconds per generated token of the relevancy modes — `exact` (one full backward per
 * token) vs `incremental` (one prefill backward + one single-position backward per token) — on the two
 * reference fixtures and on a 7B-shaped stack (llava-1.5-7b shapes, random BF16 weights, a few text layers,
 * a CLIP-L-shaped tower with a few layers, the real 576 image tokens).
 *
 *   node dist/bench/relevancy.js [--layers N] [--vision-layers N] [--tokens G] [--kernels auto|ts|ort]
 *                                [--skip-7b] [--json]
 *
 * Reported per mode: the one forward pass with the tape (seconds), the backward work of the first token (in
 * `incremental` mode that is the prefill backward), the backward work per later token, and the total per
 * token (everything amortised over the tokens). Model loading and the one-time transposed-weight cache
 * (built by an unmeasured warm-up) are excluded.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { decodeImage } from "../src/hf/image-decode.js";
import {
  type RelevancyMode,
  relevancyMaps,
  type VisionRelevancyKind,
} from "../src/interpret/relevancy/index.js";
import { createKernels, parseKernelChoice } from "../src/kernels/index.js";
import type { Kernels } from "../src/kernels/types.js";
import { loadModel } from "../src/models/registry.js";
import type { PreparedImage, VisionLanguageModel } from "../src/models/types.js";
import { flag } from "./args.js";
import { NAMED_CONFIGS, writeRandomCheckpoint } from "./random-checkpoint.js";

const json = process.argv.includes("--json");
const layers = Number(flag("--layers") ?? 2);
const visionLayers = Number(flag("--vision-layers") ?? 2);
const bigTokens = Number(flag("--tokens") ?? 4);
const kernelChoice = parseKernelChoice(flag("--kernels") ?? "auto");
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const log = (s: string) => {
  if (!json) console.log(s);
};

interface Row {
  model: string;
  mode: RelevancyMode;
  vision: string;
  tokens: number;
  seqLen: number;
  forwardSeconds: number;
  firstTokenSeconds: number;
  laterSecondsPerToken: number;
  secondsPerToken: number;
}
const rows: Row[] = [];

async function measure(
  label: string,
  model: VisionLanguageModel,
  kernels: Kernels,
  inputIds: number[],
  generatedIds: number[],
  image: PreparedImage,
  vision: VisionRelevancyKind[],
): Promise<void> {
  for (const mode of ["exact", "incremental"] as const) {
    const t0 = performance.now();
    let tf = t0;
    let t1 = t0;
    await relevancyMaps(
      model,
      kernels,
      { inputIds, generatedIds, pixels: image.pixels, layout: image.layout },
      {
        mode,
        vision,
        onProgress: (stage, done) => {
          if (stage === "forward" && done === 1) tf = performance.now();
          if (stage === "backward" && done === 1) t1 = performance.now();
        },
      },
    );
    const total = (performance.now() - t0) / 1000;
    const fwd = (tf - t0) / 1000;
    const G = generatedIds.length;
    const s = total / G;
    const row = {
      model: label,
      mode,
      vision: vision.join(",") || "-",
      tokens: generatedIds.length,
      seqLen: inputIds.length + generatedIds.length - 1,
      forwardSeconds: fwd,
      firstTokenSeconds: (t1 - tf) / 1000,
      laterSecondsPerToken: G > 1 ? (total - (t1 - t0) / 1000) / (G - 1) : 0,
      secondsPerToken: s,
    };
    rows.push(row);
    log(
      `${label.padEnd(28)} ${mode.padEnd(12)} ${row.vision.padEnd(22)} ${String(row.tokens).padStart(3)} ${String(row.seqLen).padStart(5)} ${fwd.toFixed(3).padStart(8)} ${row.firstTokenSeconds.toFixed(3).padStart(8)} ${row.laterSecondsPerToken.toFixed(3).padStart(8)} ${s.toFixed(3).padStart(8)}`,
    );
  }
}

const kernels = await createKernels(kernelChoice);
log(`kernels: ${kernelChoice}, ${os.cpus().length} CPUs`);
log(
  `${"model".padEnd(28)} ${"mode".padEnd(12)} ${"vision".padEnd(22)} tok   seq    fwd s   tok0 s  later/t  total/t`,
);
try {
  for (const name of ["llava-tiny-llama", "llava-tiny-gemma"]) {
    const dir = path.join(root, "test/fixtures", name);
    const e = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8"));
    const model = loadModel(dir);
    const px = model.preprocess(
      await decodeImage(fs.readFileSync(path.join(dir, "image.png")), "image.png"),
      "default",
    );
    try {
      // Warm-up (JIT, ORT sessions), not measured.
      await relevancyMaps(
        model,
        kernels,
        { inputIds: e.input_ids, generatedIds: e.generated_ids, pixels: px.pixels, layout: px.layout },
        { mode: "exact", vision: ["vit", "all", "all_v2", "chain"] },
      );
      await measure(name, model, kernels, e.input_ids, e.generated_ids, px, []);
      await measure(name, model, kernels, e.input_ids, e.generated_ids, px, [
        "vit",
        "all",
        "all_v2",
        "chain",
      ]);
    } finally {
      model.close();
    }
  }

  if (!process.argv.includes("--skip-7b")) {
    const cfg = NAMED_CONFIGS["llava-1.5-7b"];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lvlm-bench-rel-"));
    try {
      log(
        `\nwriting llava-1.5-7b-shaped checkpoint (${layers} text / ${visionLayers} vision layers, BF16) to ${dir}`,
      );
      writeRandomCheckpoint(dir, cfg, {
        layers,
        visionLayers,
        tokenizerFrom: path.join(root, "test/fixtures/llava-tiny-llama"),
      });
      const model = loadModel(dir);
      try {
        const S = cfg.vision.imageSize;
        let s = 1;
        const picture = {
          width: S,
          height: S,
          data: Uint8Array.from({ length: 3 * S * S }, () => {
            s = (s * 48271) % 2147483647;
            return s & 255;
          }),
        };
        const px = model.preprocess(picture, "default");
        const enc = model.text.encodePrompt(
          "What is shown in the top left corner of this picture?",
          px.layout.token_count,
        );
        const generated = Array.from({ length: bigTokens }, (_, i) => 1000 + 37 * i);
        const label = `7b-shaped L=${layers} Lv=${visionLayers}`;
        // Warm-up: builds the transposed 16-bit weight cache of every matrix the backward passes use.
        await relevancyMaps(
          model,
          kernels,
          {
            inputIds: enc.inputIds,
            generatedIds: generated.slice(0, 1),
            pixels: px.pixels,
            layout: px.layout,
          },
          { mode: "incremental", vision: ["chain"] },
        );
        await measure(label, model, kernels, enc.inputIds, generated, px, []);
        await measure(label, model, kernels, enc.inputIds, generated, px, ["vit", "chain"]);
      } finally {
        model.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  await kernels.dispose();
}
if (json) console.log(JSON.stringify(rows, null, 2));
