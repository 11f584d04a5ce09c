/**
 * The ViT encoder layer's backward as one onnxruntime graph (kernels/ort-backward-vision.ts) against the
 * per-op path with the TypeScript kernels: input gradient and dProbs of every layer, the whole tower
 * backward (gradients at two hidden states, down to the pixels), every covered activation, f32/f16/bf16
 * weights, CLIP (class token, pre-LN) and SigLIP (no class token) towers, and LLaVA-NeXT's several passes.
 * Also checks that the graph really runs, and that weight gradients and uncovered activations still take
 * the per-op path.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { createKernels } from "../src/kernels/index.js";
import type { Kernels, VisionBlockBackwardInput, WeightMatrix } from "../src/kernels/types.js";
import { WeightGradients } from "../src/models/gradients.js";
import { loadModel } from "../src/models/registry.js";
import { type VisionTape, VisionTower } from "../src/models/vision.js";
import { bf16ToF32Into, f16ToF32Into, f32ToBf16, f32ToF16 } from "../src/tensor/half.js";
import { activationFn, activationGradFn } from "../src/tensor/ops.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { ROOT } from "./fixture-utils.js";

const FIXTURES = ["llava-tiny-llama", "llava-onevision-tiny-qwen2", "llava-next-tiny-clip-llama"] as const;
type Fixture = (typeof FIXTURES)[number];
const models = new Map(FIXTURES.map((f) => [f, loadModel(path.join(ROOT, "test/fixtures", f))]));
function towerOf(f: Fixture): VisionTower {
  const m = models.get(f) as { vision?: unknown } | undefined;
  assert.ok(m?.vision instanceof VisionTower, `${f} has a CLIP/SigLIP tower`);
  return m.vision;
}

const ts = await createKernels("ts");
const ort = await createKernels("ort");
after(async () => {
  for (const m of models.values()) m.close();
  await ts.dispose();
  await ort.dispose();
});

/** Counts the layer backwards the graph actually ran (null answers are not counted). */
const graphRuns = { count: 0 };
{
  const blocks = ort.blocks;
  assert.ok(blocks, "the ort kernels have block graphs");
  const backward = blocks.visionLayerBackward.bind(blocks);
  blocks.visionLayerBackward = async (a: VisionBlockBackwardInput) => {
    const r = await backward(a);
    if (r) graphRuns.count++;
    return r;
  };
}

/**
 * Worst-element report of every named pair over its tolerance (empty = all within). Tolerances are relative
 * to the reference's largest magnitude: float32 rounding scales with the values.
 */
function compare(pairs: [string, Float32Array, Float32Array, number][]): string[] {
  const worst: string[] = [];
  for (const [name, got, ref, tol] of pairs) {
    assert.equal(got.length, ref.length, `${name} length`);
    let scale = 0;
    for (const v of ref) scale = Math.max(scale, Math.abs(v));
    assert.ok(scale > 0, `${name}: the reference is all zero, so the comparison would prove nothing`);
    const d = maxAbsDiff(got, ref);
    if (!(d <= tol * scale)) worst.push(`${name}: max |Δ| = ${d} (largest |value| ${scale})`);
  }
  return worst;
}

/**
 * Float32 rounding between two orders of the same sums, relative to the largest value (the worst seen over
 * these cases is 7e-7; the per-op layer-norm backward keeps its row statistics in float64).
 */
const TOL = 2e-6;

/** A weight matrix in another storage dtype (16-bit sources widened exactly first, then rounded). */
function convert(w: WeightMatrix, dtype: WeightMatrix["dtype"]): WeightMatrix {
  if (w.dtype === dtype) return w;
  let f32 = w.data as Float32Array;
  if (w.dtype !== "F32") {
    f32 = new Float32Array(w.data.length);
    (w.dtype === "BF16" ? bf16ToF32Into : f16ToF32Into)(w.data as Uint16Array, f32);
  }
  if (dtype === "F32") return { ...w, dtype, data: f32 };
  const enc = dtype === "BF16" ? f32ToBf16 : f32ToF16;
  return { ...w, dtype, data: Uint16Array.from(f32, enc) };
}

/** A fixture's tower with another activation and weight dtype (same weights, rounded to 16 bits). */
function towerWith(base: VisionTower, act: string, dtype: WeightMatrix["dtype"]): VisionTower {
  const t = Object.create(VisionTower.prototype) as VisionTower;
  Object.assign(t, base, {
    cfg: { ...base.cfg, hiddenAct: act },
    act: activationFn(act),
    actGrad: activationGradFn(act),
    layers: base.layers.map((L) => {
      const c = { ...L };
      for (const m of ["q", "k", "v", "o", "fc1", "fc2"] as const) c[m] = convert(L[m], dtype);
      return c;
    }),
  });
  return t;
}

function pixelsFor(tower: VisionTower, seed: number): Float32Array {
  return Float32Array.from(
    { length: 3 * tower.cfg.imageSize ** 2 },
    (_, i) => Math.sin(i * 0.37 + seed) * 1.5,
  );
}

function gradient(len: number, seed: number): Float32Array {
  return Float32Array.from({ length: len }, (_, i) => Math.cos(i * 0.53 + seed) * 0.7);
}

/** The per-op forward's tape (the same activations feed both backward paths). */
async function tapeOf(tower: VisionTower, seed: number): Promise<VisionTape> {
  const out = await tower.forward(ts, pixelsFor(tower, seed), undefined, { tape: true });
  assert.ok(out.tape);
  return out.tape;
}

/** Gradients at the last hidden state and at one in the middle (LLaVA's multi-layer feature selection). */
function hiddenGrads(tower: VisionTower, seed: number): (Float32Array | null)[] {
  const L = tower.layers.length;
  const len = tower.seqLen * tower.cfg.hiddenSize;
  const d: (Float32Array | null)[] = Array.from({ length: L + 1 }, () => null);
  d[L] = gradient(len, seed);
  d[Math.floor(L / 2)] = gradient(len, seed + 1);
  return d;
}

/** The whole tower backward on kernels k: pixel gradient, hidden_states[0] gradient, dProbs and probs per layer. */
async function towerBackward(tower: VisionTower, k: Kernels, tapes: VisionTape[], opts = {}) {
  const layers: { dProbs: Float32Array; probs: Float32Array }[] = [];
  const res = await tower.backwardPasses(
    k,
    tapes,
    tapes.map((_, p) => hiddenGrads(tower, p)),
    {
      pixels: true,
      onLayer: (i, dProbs, probs) => {
        layers[i] = { dProbs, probs };
      },
      ...opts,
    },
  );
  return { res, layers };
}

async function checkTower(tower: VisionTower, passes: number): Promise<void> {
  const tapes = await Promise.all(Array.from({ length: passes }, (_, p) => tapeOf(tower, p)));
  const L = tower.layers.length;
  // Layer by layer, on the same tape and output gradient.
  const pairs: [string, Float32Array, Float32Array, number][] = [];
  for (let i = 0; i < L; i++) {
    const dOut = gradient(tower.seqLen * tower.cfg.hiddenSize, 10 + i);
    const ref = await tower.layerBackward(ts, i, tapes[0].layers.get(i), dOut);
    const before = graphRuns.count;
    const got = await tower.layerBackward(ort, i, tapes[0].layers.get(i), dOut);
    assert.equal(graphRuns.count, before + 1, `layer ${i} ran as one graph`);
    pairs.push([`layer ${i} dIn`, got.dIn, ref.dIn, TOL], [`layer ${i} dProbs`, got.dProbs, ref.dProbs, TOL]);
  }
  // The whole tower, every pass, down to the pixels; onLayer sees the same dProbs and the same probs.
  const ref = await towerBackward(tower, ts, tapes);
  const before = graphRuns.count;
  const got = await towerBackward(tower, ort, tapes);
  assert.equal(graphRuns.count, before + L * passes, "every layer of every pass ran as one graph");
  for (let p = 0; p < passes; p++) {
    pairs.push([`pass ${p} dHidden0`, got.res[p].dHidden0, ref.res[p].dHidden0, TOL]);
    pairs.push([`pass ${p} dPixels`, got.res[p].dPixels!, ref.res[p].dPixels!, TOL]);
  }
  assert.equal(got.layers.length, L);
  for (let i = 0; i < L; i++) {
    assert.equal(got.layers[i].dProbs.length, passes * tower.cfg.numHeads * tower.seqLen ** 2);
    assert.deepEqual(got.layers[i].probs, ref.layers[i].probs);
    pairs.push([`tower layer ${i} dProbs`, got.layers[i].dProbs, ref.layers[i].dProbs, TOL]);
  }
  assert.deepEqual(compare(pairs), []);
}

describe("vision encoder layer backward as one onnxruntime graph", () => {
  for (const act of ["quick_gelu", "gelu", "gelu_pytorch_tanh", "silu"]) {
    for (const dtype of ["F32", "F16", "BF16"] as const) {
      test(`CLIP (class token), ${act}, ${dtype} weights: dIn, dProbs, tower backward match the per-op path`, async () => {
        await checkTower(towerWith(towerOf("llava-tiny-llama"), act, dtype), 1);
      });
    }
  }

  for (const dtype of ["F32", "F16", "BF16"] as const) {
    test(`SigLIP (no class token, gelu_pytorch_tanh), ${dtype} weights: match the per-op path`, async () => {
      const tower = towerOf("llava-onevision-tiny-qwen2");
      assert.equal(tower.cfg.hasCls, false);
      assert.equal(tower.cfg.hiddenAct, "gelu_pytorch_tanh");
      assert.equal(tower.layers[0].q.dtype, "BF16", "the fixture's own weights are bf16");
      await checkTower(towerWith(tower, tower.cfg.hiddenAct, dtype), 1);
    });
  }

  test("LLaVA-NeXT's several tower passes (backwardPasses): match the per-op path", async () => {
    await checkTower(towerOf("llava-next-tiny-clip-llama"), 3);
  });

  test("weight gradients take the per-op path (same input gradients)", async () => {
    const tower = towerOf("llava-tiny-llama");
    const tapes = [await tapeOf(tower, 0)];
    const ref = await towerBackward(tower, ts, tapes, { grads: new WeightGradients() });
    const before = graphRuns.count;
    const got = await towerBackward(tower, ort, tapes, { grads: new WeightGradients() });
    assert.equal(graphRuns.count, before, "no graph with weight gradients");
    assert.deepEqual(compare([["dHidden0", got.res[0].dHidden0, ref.res[0].dHidden0, TOL]]), []);
  });

  test("an activation the graph does not spell out (relu) takes the per-op path", async () => {
    const tower = towerWith(towerOf("llava-tiny-llama"), "relu", "F32");
    const tapes = [await tapeOf(tower, 0)];
    const ref = await towerBackward(tower, ts, tapes);
    const before = graphRuns.count;
    const got = await towerBackward(tower, ort, tapes);
    assert.equal(graphRuns.count, before, "no graph for relu");
    assert.deepEqual(compare([["dHidden0", got.res[0].dHidden0, ref.res[0].dHidden0, TOL]]), []);
  });
});
