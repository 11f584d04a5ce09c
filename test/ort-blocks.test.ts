/**
 * Whole-layer onnxruntime graphs (kernels/ort-blocks.ts) against the per-op path with the TypeScript
 * kernels: the fixture's CLIP layer, every block activation, f32/f16/bf16 weights, tape included. Also checks
 * that the ort kernels really take the one-graph path (and that a probabilities hook still gets the per-op
 * path it needs).
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { createKernels } from "../src/kernels/index.js";
import type { Kernels, VisionBlockInput, WeightMatrix } from "../src/kernels/types.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { loadModel } from "../src/models/registry.js";
import { VisionTower } from "../src/models/vision.js";
import { f32ToBf16, f32ToF16 } from "../src/tensor/half.js";
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

/** Counts the vision layers the block graphs actually ran. */
function countBlocks(k: Kernels): { hits: number } {
  const counter = { hits: 0 };
  const blocks = k.blocks;
  assert.ok(blocks, `${k.name} kernels have no block graphs`);
  const inner = blocks.visionLayer.bind(blocks);
  blocks.visionLayer = async (a: VisionBlockInput) => {
    const r = await inner(a);
    if (r) counter.hits++;
    return r;
  };
  return counter;
}

function as16(w: WeightMatrix, dtype: "F16" | "BF16"): WeightMatrix {
  const enc = dtype === "BF16" ? f32ToBf16 : f32ToF16;
  return { ...w, dtype, data: Uint16Array.from(w.data as Float32Array, enc) };
}

/** The fixture's tower with another activation and weight dtype (same weights, rounded to 16 bits). */
function towerWith(act: string, dtype: WeightMatrix["dtype"]): VisionTower {
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
    const c = countBlocks(ort);
    await model.vision.forward(ort, pixels);
    assert.equal(c.hits, model.vision.layers.length);
    // A probabilities hook must edit them before they weight the values: per-op path, no block.
    await model.vision.forward(ort, pixels, undefined, { probsHook: () => {} });
    assert.equal(c.hits, model.vision.layers.length);
  });

  for (const act of ["quick_gelu", "gelu", "gelu_pytorch_tanh"]) {
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      test(`${act}, ${dtype} weights: output, probabilities and tape match the per-op path`, async () => {
        const tower = towerWith(act, dtype);
        const h = await tower.embed(ts, pixels);
        const ref = await tower.layer(ts, 0, h, { keep: true });
        const got = await tower.layer(ort, 0, h, { keep: true });
        assert.ok(ref.tape && got.tape);
        const worst: string[] = [];
        const check = (name: string, a: Float32Array, b: Float32Array, tol: number) => {
          assert.equal(a.length, b.length, `${name} length`);
          const d = maxAbsDiff(a, b);
          if (!(d <= tol)) worst.push(`${name}: max |Δ| = ${d}`);
        };
        check("h", got.h, ref.h, 2e-5);
        check("probs", got.probs, ref.probs, 1e-6);
        for (const key of ["x", "q", "k", "v", "ctx", "h1", "x2", "u"] as const)
          check(key, got.tape[key], ref.tape[key], 2e-5);
        assert.equal(got.tape.hIn, h);
        assert.deepEqual(worst, []);
      });
    }
  }
});
