/**
 * Whole-layer onnxruntime graphs (kernels/ort-blocks.ts) against the per-op path with the TypeScript
 * kernels: the fixture's CLIP layer, every block activation, f32/f16/bf16 weights, tape included. Also checks
 * that the ort kernels really take the one-graph path (and that a probabilities hook still gets the per-op
 * path it needs).
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { setWidenBlock } from "../src/kernels/graph-parts.js";
import { createKernels } from "../src/kernels/index.js";
import type { DecoderBlockInput, Kernels, VisionBlockInput, WeightMatrix } from "../src/kernels/types.js";
import { TextDecoder } from "../src/models/decoder.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { sequentialPositions } from "../src/models/positions.js";
import { loadModel } from "../src/models/registry.js";
import { VisionTower } from "../src/models/vision.js";
import { bf16ToF32Into, f16ToF32Into, f32ToBf16, f32ToF16 } from "../src/tensor/half.js";
import { activationFn } from "../src/tensor/ops.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { fixtureDir } from "./fixture-utils.js";

const loaded = loadModel(fixtureDir("llava-tiny-llama"));
assert.ok(loaded instanceof LlavaModel);
const model: LlavaModel = loaded;
const ts = await createKernels("ts");
const ort = await createKernels("ort");
after(async () => {
  model.close();
  await ts.dispose();
  await ort.dispose();
});

/** Counts the vision and decoder layers the block graphs actually ran. */
function countBlocks(k: Kernels): { hits: number; decoderHits: number } {
  const counter = { hits: 0, decoderHits: 0 };
  const blocks = k.blocks;
  assert.ok(blocks, `${k.name} kernels have no block graphs`);
  const vision = blocks.visionLayer.bind(blocks);
  blocks.visionLayer = async (a: VisionBlockInput) => {
    const r = await vision(a);
    if (r) counter.hits++;
    return r;
  };
  const decoder = blocks.decoderLayer.bind(blocks);
  blocks.decoderLayer = async (a: DecoderBlockInput) => {
    const r = await decoder(a);
    if (r) counter.decoderHits++;
    return r;
  };
  return counter;
}

const blockCounts = countBlocks(ort);

/**
 * Worst-element report of every named pair over its tolerance (empty = all within). Tolerances are relative
 * to the reference's largest magnitude (at least 1): float32 rounding scales with the values.
 */
function compare(pairs: [string, Float32Array, Float32Array, number][]): string[] {
  const worst: string[] = [];
  for (const [name, got, ref, tol] of pairs) {
    assert.equal(got.length, ref.length, `${name} length`);
    let scale = 1;
    for (const v of ref) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
    const d = maxAbsDiff(got, ref);
    if (!(d <= tol * scale)) worst.push(`${name}: max |Δ| = ${d} (largest |value| ${scale})`);
  }
  return worst;
}

function as16(w: WeightMatrix, dtype: "F16" | "BF16"): WeightMatrix {
  const enc = dtype === "BF16" ? f32ToBf16 : f32ToF16;
  // A fixture that stores bf16 (gemma) is widened first: its raw bits are not values.
  let f32 = w.data as Float32Array;
  if (w.dtype !== "F32") {
    f32 = new Float32Array(w.data.length);
    (w.dtype === "BF16" ? bf16ToF32Into : f16ToF32Into)(w.data as Uint16Array, f32);
  }
  return { ...w, dtype, data: Uint16Array.from(f32, enc) };
}

/** The fixture's tower with another activation and weight dtype (same weights, rounded to 16 bits). */
function towerWith(act: string, dtype: "F32" | "F16" | "BF16"): VisionTower {
  const base = model.vision;
  const t = Object.create(VisionTower.prototype) as VisionTower;
  Object.assign(t, base, { cfg: { ...base.cfg, hiddenAct: act }, act: activationFn(act) });
  if (dtype !== "F32") {
    Object.assign(t, {
      layers: base.layers.map((L) => ({
        ...L,
        q: as16(L.q, dtype),
        k: as16(L.k, dtype),
        v: as16(L.v, dtype),
        o: as16(L.o, dtype),
        fc1: as16(L.fc1, dtype),
        fc2: as16(L.fc2, dtype),
      })),
    });
  }
  return t;
}

const pixels = Float32Array.from(
  { length: 3 * model.vision.cfg.imageSize ** 2 },
  (_, i) => Math.sin(i * 0.37) * 1.5,
);

describe("vision encoder layer as one onnxruntime graph", () => {
  test("the ort kernels run every layer of the tower as one graph", async () => {
    const c = blockCounts;
    c.hits = 0;
    await model.vision.forward(ort, pixels);
    assert.equal(c.hits, model.vision.layers.length);
    // A probabilities hook must edit them before they weight the values: per-op path, no block.
    await model.vision.forward(ort, pixels, undefined, { probsHook: () => {} });
    assert.equal(c.hits, model.vision.layers.length);
  });

  const visionCases: [string, "F32" | "F16" | "BF16", number | null][] = [];
  for (const act of ["quick_gelu", "gelu", "gelu_pytorch_tanh"])
    for (const dtype of ["F32", "F16", "BF16"] as const) visionCases.push([act, dtype, null]);
  // 16-bit weights in row blocks (a 7B-size matrix is fed as several): 1000 elements leave a ragged last block.
  visionCases.push(["quick_gelu", "BF16", 1000], ["gelu", "F16", 1000]);
  for (const [act, dtype, block] of visionCases) {
    const blocks = block ? ` in blocks of ${block} elements` : "";
    test(`${act}, ${dtype} weights${blocks}: output, probabilities and tape match the per-op path`, async () => {
      const tower = towerWith(act, dtype);
      const h = await tower.embed(ts, pixels);
      const ref = await tower.layer(ts, 0, h, { keep: true });
      const previousBlock = block ? setWidenBlock(block) : null;
      try {
        const got = await tower.layer(ort, 0, h, { keep: true });
        assert.ok(ref.tape && got.tape);
        const rt = ref.tape;
        const gt = got.tape;
        const pairs: [string, Float32Array, Float32Array, number][] = [
          ["h", got.h, ref.h, 2e-5],
          ["probs", got.probs, ref.probs, 1e-6],
        ];
        for (const key of ["x", "q", "k", "v", "ctx", "h1", "x2", "u"] as const)
          pairs.push([key, gt[key], rt[key], 2e-5]);
        assert.equal(gt.hIn, h);
        assert.deepEqual(compare(pairs), []);
      } finally {
        if (previousBlock !== null) setWidenBlock(previousBlock);
      }
    });
  }
});

/** A fixture's decoder with another sliding window and weight dtype (same weights, rounded to 16 bits). */
function decoderWith(dec: TextDecoder, window: number | null, dtype: "F32" | "F16" | "BF16"): TextDecoder {
  const t = Object.create(TextDecoder.prototype) as TextDecoder;
  Object.assign(t, dec, { cfg: { ...dec.cfg, slidingWindow: window } });
  if (dtype !== "F32") {
    Object.assign(t, {
      layers: dec.layers.map((L) => {
        const c = { ...L };
        for (const m of ["q", "k", "v", "o", "gate", "up", "down"] as const) c[m] = as16(L[m], dtype);
        return c;
      }),
    });
  }
  return t;
}

describe("decoder layer prefill as one onnxruntime graph", () => {
  const cases: [string, number | null, "F32" | "F16" | "BF16", number?][] = [
    ["llava-tiny-llama", null, "F32"],
    ["llava-tiny-llama", 5, "BF16"],
    ["llava-tiny-gemma", null, "F16"],
    ["llava-onevision-tiny-qwen2", null, "F32"],
    // 16-bit weights in row blocks of 1000 elements (ragged last block); qwen2's q/k/v biases added after them.
    ["llava-tiny-llama", null, "BF16", 1000],
    ["llava-onevision-tiny-qwen2", null, "BF16", 1000],
  ];
  for (const [name, window, dtype, block] of cases) {
    const blocks = block ? ` in blocks of ${block} elements` : "";
    test(`${name}, window ${window}, ${dtype} weights${blocks}: output, probabilities, cache and tape match the per-op path`, async () => {
      const m = name === "llava-tiny-llama" ? model : loadModel(fixtureDir(name as "llava-tiny-llama"));
      const previousBlock = block ? setWidenBlock(block) : null;
      try {
        assert.ok(m.decoder instanceof TextDecoder);
        const dec = decoderWith(m.decoder, window, dtype);
        const D = dec.cfg.hiddenSize;
        const n = 13;
        const h = Float32Array.from({ length: n * D }, (_, i) => Math.cos(i * 0.71) * 0.8);
        const positions = sequentialPositions(0, n);
        const refCache = dec.newCache(n + 1);
        const gotCache = dec.newCache(n + 1);
        const before = blockCounts.decoderHits;
        const ref = await dec.layer(ts, 0, h, positions, refCache, { keep: true });
        const got = await dec.layer(ort, 0, h, positions, gotCache, { keep: true });
        assert.equal(blockCounts.decoderHits, before + 1, "the ort kernels ran the layer as one graph");
        assert.ok(ref.tape && got.tape);
        const rt = ref.tape;
        const gt = got.tape;
        const pairs: [string, Float32Array, Float32Array, number][] = [
          ["h", got.h, ref.h, 2e-5],
          ["probs", got.probs, ref.probs, 1e-6],
          ["cache k", gotCache.k[0], refCache.k[0], 1e-5],
          ["cache v", gotCache.v[0], refCache.v[0], 1e-5],
        ];
        for (const key of ["x", "q", "ctx", "h1", "x2", "gate", "up"] as const) {
          const [g, r] = [gt[key], rt[key]];
          assert.ok(g && r, `tape.${key}`);
          pairs.push([key, g, r, 2e-5]);
        }
        assert.equal(gt.hIn, h);
        assert.deepEqual(compare(pairs), []);
        // Masked entries are exactly 0, as the per-op softmax leaves them.
        for (let i = 0; i < got.probs.length; i++) if (ref.probs[i] === 0) assert.equal(got.probs[i], 0);
      } finally {
        if (previousBlock !== null) setWidenBlock(previousBlock);
        if (m !== model) m.close();
      }
    });
  }
});
