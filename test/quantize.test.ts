/**
 * The opt-in int8 weights (`--weights int8`): the quantiser's rounding, onnxruntime's MatMulNBits against
 * the TypeScript product with the dequantised matrix (the only other rounding is MatMulNBits' int8
 * activations, bounded below), the backward through dequantised blocks, and loading a fixture that way.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { computeRelevancy } from "../src/interpret/relevancy/index.js";
import { AutoKernels, OrtKernels, TsKernels } from "../src/kernels/index.js";
import {
  dequantizeRowsInto,
  parseWeightFormat,
  Q8_BLOCK,
  q8Blocks,
  quantizeInt8,
  setQuantizeChunkElements,
} from "../src/kernels/quantize.js";
import type { WeightMatrix } from "../src/kernels/types.js";
import { TextDecoder } from "../src/models/decoder.js";
import { linearBackwardInput } from "../src/models/linear-grad.js";
import { prepareWeights } from "../src/models/prepare.js";
import { loadModel } from "../src/models/registry.js";
import { Run } from "../src/run/run-dir.js";
import { f32ToBf16 } from "../src/tensor/half.js";
import { traceWithModel } from "../src/trace.js";
import { fixtureDir, tempDir } from "./fixture-utils.js";
import { greedyTrace } from "./parity-utils.js";
import { writeTinyCheckpoint } from "./tiny-model.js";

/** Deterministic values in (−scale, scale). */
function values(n: number, seed: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin((i + 1) * 12.9898 + seed * 78.233) * scale;
  return a;
}

function dense(w: WeightMatrix): Float32Array {
  const out = new Float32Array(w.rows * w.cols);
  dequantizeRowsInto(w, 0, w.rows, out);
  return out;
}

/**
 * |y_ort − y_exact| bound for MatMulNBits at accuracy level 4: each activation block of Q8_BLOCK is rounded
 * to int8 with scale max|x|/127, an error of at most half a step per element, weighted by |w̃|; plus float
 * accumulation (a relative 1e-5 of Σ|w̃·x|).
 */
function activationBound(
  x: Float32Array,
  m: number,
  w: Float32Array,
  rows: number,
  cols: number,
): Float32Array {
  const bound = new Float32Array(m * rows);
  for (let i = 0; i < m; i++) {
    const step = new Float32Array(cols);
    for (let c0 = 0; c0 < cols; c0 += Q8_BLOCK) {
      let amax = 0;
      for (let c = c0; c < Math.min(cols, c0 + Q8_BLOCK); c++)
        amax = Math.max(amax, Math.abs(x[i * cols + c]));
      for (let c = c0; c < Math.min(cols, c0 + Q8_BLOCK); c++) step[c] = amax / 127;
    }
    for (let r = 0; r < rows; r++) {
      let b = 0;
      let mag = 0;
      for (let c = 0; c < cols; c++) {
        const a = Math.abs(w[r * cols + c]);
        b += (a * step[c]) / 2;
        mag += a * Math.abs(x[i * cols + c]);
      }
      bound[i * rows + r] = b + 1e-5 * mag + 1e-7;
    }
  }
  return bound;
}

describe("int8 weights", () => {
  const ort = new OrtKernels({ threads: 1 });
  const ts = new TsKernels();
  after(() => ort.dispose());

  test("quantiser: per-block scale max|w|/127, error ≤ half a step, zeros exact, a ragged last block", () => {
    for (const cols of [64, 70]) {
      const rows = 5;
      const f = values(rows * cols, 1, 0.3);
      f[3] = 0;
      const q = quantizeInt8({ rows, cols, dtype: "F32", data: f });
      assert.equal(q.dtype, "Q8");
      assert.equal(q.data.length, rows * q8Blocks(cols) * Q8_BLOCK);
      assert.equal(q.scales?.length, rows * q8Blocks(cols));
      const d = dense(q);
      assert.equal(d[3], 0);
      for (let r = 0; r < rows; r++)
        for (let b = 0; b < q8Blocks(cols); b++) {
          const s: number = q.scales![r * q8Blocks(cols) + b];
          let amax = 0;
          for (let c = b * Q8_BLOCK; c < Math.min(cols, (b + 1) * Q8_BLOCK); c++) {
            amax = Math.max(amax, Math.abs(f[r * cols + c]));
            assert.ok(Math.abs(d[r * cols + c] - f[r * cols + c]) <= s / 2 + 1e-9, `row ${r} col ${c}`);
          }
          assert.equal(s, Math.fround(amax / 127));
        }
    }
  });

  test("bf16 weights quantise from their bf16 values", () => {
    const f = values(4 * 32, 2, 0.2);
    const bits = Uint16Array.from(f, f32ToBf16);
    const widened = new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer);
    const a = dense(quantizeInt8({ rows: 4, cols: 32, dtype: "BF16", data: bits }));
    const b = dense(quantizeInt8({ rows: 4, cols: 32, dtype: "F32", data: widened }));
    assert.deepEqual(a, b);
  });

  for (const [m, cols, bias] of [
    [1, 64, false],
    [6, 96, true],
    [3, 70, false],
  ] as const) {
    test(`MatMulNBits (onnxruntime) = x·dequant(W)ᵀ within the int8-activation bound: m ${m}, in ${cols}${bias ? ", bias" : ""}`, async () => {
      const rows = 48;
      const w = quantizeInt8({ rows, cols, dtype: "F32", data: values(rows * cols, 3, 0.05) });
      const x = values(m * cols, 4, 1);
      const b = bias ? values(rows, 5, 0.1) : null;
      const exact = await ts.linear(x, m, w, b);
      const got = await ort.linear(x, m, w, b);
      const bound = activationBound(x, m, dense(w), rows, cols);
      let worst = 0;
      for (let i = 0; i < exact.length; i++) {
        const e = Math.abs(got[i] - exact[i]);
        assert.ok(e <= bound[i], `element ${i}: |${got[i]} − ${exact[i]}| = ${e} > ${bound[i]}`);
        worst = Math.max(worst, e);
      }
      // The activations really are rounded (else the bound above would test nothing about them).
      assert.ok(worst > 0);
    });
  }

  test("auto kernels send an int8 product to onnxruntime however small", async () => {
    const auto = new AutoKernels(ts, ort);
    const w = quantizeInt8({ rows: 4, cols: 32, dtype: "F32", data: values(128, 6, 0.1) });
    const x = values(32, 7, 1);
    assert.deepEqual(await auto.linear(x, 1, w), await ort.linear(x, 1, w));
  });

  test("backward through an int8 weight is dy·dequant(W)", async () => {
    const rows = 40;
    const cols = 70;
    const w = quantizeInt8({ rows, cols, dtype: "F32", data: values(rows * cols, 8, 0.05) });
    const dy = values(3 * rows, 9, 1);
    const got = await linearBackwardInput(ts, dy, 3, w);
    const d = dense(w);
    for (let i = 0; i < 3; i++)
      for (let c = 0; c < cols; c++) {
        let s = 0;
        for (let r = 0; r < rows; r++) s += dy[i * rows + r] * d[r * cols + c];
        assert.ok(Math.abs(got[i * cols + c] - s) <= 1e-5 * (1 + Math.abs(s)));
      }
  });

  test("prepareWeights readies every int8 matrix once, and nothing for weights as stored", async () => {
    const readied: WeightMatrix[] = [];
    const spy = Object.assign(new TsKernels(), { prepare: async (w: WeightMatrix) => void readied.push(w) });
    const model = loadModel(fixtureDir("llava-tiny-llama"), { weights: "int8" });
    await prepareWeights(model, spy);
    const layers = model.info.llmLayers;
    // Seven projections per layer, and the LM head unless it is the embedding matrix.
    const decoder = model.decoder as unknown as { lmHead: WeightMatrix; embedTokens: WeightMatrix };
    const head = decoder.lmHead === decoder.embedTokens ? 0 : 1;
    assert.equal(readied.length, 7 * layers + head);
    assert.ok(readied.every((w) => w.dtype === "Q8"));
    assert.equal(new Set(readied).size, readied.length);
    readied.length = 0;
    await prepareWeights(loadModel(fixtureDir("llava-tiny-llama")), spy);
    assert.equal(readied.length, 0);
  });

  test("forward only: the TypeScript codes are freed once onnxruntime holds them, and the backward refuses", async () => {
    const model = loadModel(fixtureDir("llava-tiny-llama"), { weights: "int8" });
    const auto = new AutoKernels(new TsKernels(), new OrtKernels({ threads: 1 }));
    try {
      const w = model.weights.quantisedMatrices()[0];
      const x = values(w.cols, 10, 1);
      const before = await auto.linear(x, 1, w);
      await prepareWeights(model, auto, { forwardOnly: true });
      assert.ok(model.weights.quantisedMatrices().every((m) => m.data.length === 0));
      // The product is onnxruntime's pre-packed one, as before.
      assert.deepEqual(await auto.linear(x, 1, w), before);
      await assert.rejects(
        linearBackwardInput(auto, values(w.rows, 11, 1), 1, w),
        /loaded for forward passes only .* load the model again to compute relevancy/,
      );
    } finally {
      await auto.dispose();
      model.close();
    }
  });

  for (const dtype of ["F32", "BF16", "F16"] as const) {
    test(`an ${dtype} checkpoint quantised as it is read (chunks of 3 rows and a ragged last one) equals its matrices quantised after reading`, () => {
      const dir = writeTinyCheckpoint({ text: "llama", vision: "clip", dtype, untied: true });
      const stored = loadModel(dir);
      // 50 elements: 3 rows of 16 (or 2 of 24) per chunk, so every matrix is read in several.
      const previous = setQuantizeChunkElements(50);
      const int8 = loadModel(dir, { weights: "int8" });
      setQuantizeChunkElements(previous);
      try {
        assert.ok(stored.decoder instanceof TextDecoder && int8.decoder instanceof TextDecoder);
        const a = stored.decoder;
        const b = int8.decoder;
        const pairs: [WeightMatrix, WeightMatrix][] = [[a.lmHead, b.lmHead]];
        for (const [i, L] of a.layers.entries())
          for (const m of ["q", "k", "v", "o", "gate", "up", "down"] as const)
            pairs.push([L[m], b.layers[i][m]]);
        assert.equal(pairs.length, b.layers.length * 7 + 1);
        for (const [w, q] of pairs) {
          assert.equal(w.dtype, dtype);
          const want = quantizeInt8(w);
          assert.equal(q.dtype, "Q8");
          assert.deepEqual(q.data, want.data);
          assert.deepEqual(q.scales, want.scales);
        }
      } finally {
        stored.close();
        int8.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test("a fixture loaded with int8 weights: the LLM's matrices quantised, the tower as stored", () => {
    assert.equal(parseWeightFormat("INT8"), "int8");
    assert.throws(() => parseWeightFormat("int4"), /expected one of: stored, int8/);
    const model = loadModel(fixtureDir("llava-tiny-llama"), { weights: "int8" });
    assert.equal(model.info.weights, "int8");
    assert.equal(loadModel(fixtureDir("llava-tiny-llama")).info.weights, "stored");
    const llava = model as unknown as {
      decoder: {
        layers: { q: WeightMatrix; down: WeightMatrix }[];
        lmHead: WeightMatrix;
        embedTokens: WeightMatrix;
      };
      vision: { layers: { q: WeightMatrix }[] };
    };
    assert.equal(llava.decoder.layers[0].q.dtype, "Q8");
    assert.equal(llava.decoder.layers.at(-1)?.down.dtype, "Q8");
    assert.notEqual(llava.decoder.embedTokens.dtype, "Q8");
    assert.notEqual(llava.vision.layers[0].q.dtype, "Q8");
  });
});

describe("a run traced with int8 weights", () => {
  const dir = fixtureDir("llava-tiny-llama");
  const work = tempDir("int8-run");
  const trace = async (weights: "stored" | "int8") => {
    const model = loadModel(dir, { weights });
    const kernels = new AutoKernels(new TsKernels(), new OrtKernels({ threads: 1 }));
    try {
      const out = path.join(work, weights);
      await traceWithModel(
        model,
        kernels,
        greedyTrace(path.join(dir, "image.png"), "What is in the picture?", 3, out),
      );
      return out;
    } finally {
      model.close();
      await kernels.dispose();
    }
  };
  let int8Run = "";
  let storedRun = "";
  before(async () => {
    int8Run = await trace("int8");
    storedRun = await trace("stored");
  });
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  test("the manifest records the weights (and a run as stored has no field)", () => {
    assert.equal(Run.open(int8Run).manifest.model.weights, "int8");
    assert.equal(Run.open(storedRun).manifest.model.weights, undefined);
    // The quantised model computed other numbers (the option is not a no-op).
    const a = Run.open(int8Run).tensor("logits").data;
    const b = Run.open(storedRun).tensor("logits").data;
    assert.ok(a.some((v, i) => v !== b[i]));
  });

  test("relevancy loads the model with the run's weights, and refuses a model loaded otherwise", async () => {
    const r = await computeRelevancy(int8Run, { mode: "exact", tokens: [0], kernels: "auto" });
    assert.deepEqual(r.tokens, [0]);
    const stored = loadModel(dir);
    try {
      await assert.rejects(
        computeRelevancy(int8Run, { mode: "exact", tokens: [0], model: stored, kernels: "ts" }),
        /traced with int8 weights but the model is loaded with stored weights \(load it with --weights int8\)/,
      );
    } finally {
      stored.close();
    }
  });
});
