/**
 * int8 decoder layers as one onnxruntime graph each (kernels/ort-blocks.ts, `cached` graphs with the weights
 * baked in as MatMulNBits initializers) against the per-op path on the same int8 weights (the same
 * MatMulNBits products, one session per matrix, element-wise work in TypeScript): prefill, then rows after a
 * cache, for llama (with and without a sliding window), gemma and qwen2 (biases); and loading: one session per
 * layer, the codes freed for forward-only use, the same trace either way.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { OrtKernels } from "../src/kernels/index.js";
import type { DecoderBlockInput, Kernels, WeightMatrix } from "../src/kernels/types.js";
import { TextDecoder } from "../src/models/decoder.js";
import { sequentialPositions } from "../src/models/positions.js";
import { prepareWeights } from "../src/models/prepare.js";
import { loadModel } from "../src/models/registry.js";
import { Run } from "../src/run/run-dir.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { traceWithModel } from "../src/trace.js";
import { fixtureDir, tempDir } from "./fixture-utils.js";
import { greedyTrace } from "./parity-utils.js";

/** onnxruntime's products without its block graphs: the per-op path. */
function perOp(k: OrtKernels): Kernels {
  return {
    name: "ort",
    linear: k.linear.bind(k),
    bmm: k.bmm.bind(k),
    matmulTransA: k.matmulTransA.bind(k),
    dispose: async () => {},
  };
}

/** Counts the decoder layers that ran as one graph. */
function countDecoderBlocks(k: OrtKernels): { hits: number } {
  const counter = { hits: 0 };
  const run = k.blocks.decoderLayer.bind(k.blocks);
  k.blocks.decoderLayer = async (a: DecoderBlockInput) => {
    const r = await run(a);
    if (r) counter.hits++;
    return r;
  };
  return counter;
}

/** Worst elements over tolerance (relative to the reference's largest magnitude, at least 1); [] = all within. */
function compare(pairs: [string, Float32Array, Float32Array, number][]): string[] {
  const worst: string[] = [];
  for (const [name, got, ref, tol] of pairs) {
    assert.equal(got.length, ref.length, `${name} length`);
    let scale = 1;
    for (const v of ref) scale = Math.max(scale, Math.abs(v));
    const d = maxAbsDiff(got, ref);
    if (!(d <= tol * scale)) worst.push(`${name}: max |Δ| = ${d} (largest |value| ${scale})`);
  }
  return worst;
}

const work = tempDir("int8-blocks");
after(() => fs.rmSync(work, { recursive: true, force: true }));

describe("int8 decoder layers as one graph", () => {
  const cases: [string, number | null][] = [
    ["llava-tiny-llama", null],
    ["llava-tiny-llama", 5],
    ["llava-tiny-gemma", null],
    ["llava-onevision-tiny-qwen2", null],
  ];
  for (const [name, window] of cases) {
    test(`${name}, window ${window}: prefill, then rows after the cache, match the per-op path`, async () => {
      const m = loadModel(fixtureDir(name as "llava-tiny-llama"), { weights: "int8" });
      const ort = new OrtKernels({ threads: 1 });
      const count = countDecoderBlocks(ort);
      try {
        assert.ok(m.decoder instanceof TextDecoder);
        const dec = Object.create(TextDecoder.prototype) as TextDecoder;
        Object.assign(dec, m.decoder, { cfg: { ...m.decoder.cfg, slidingWindow: window } });
        assert.equal(dec.layers[0].q.dtype, "Q8");
        const D = dec.cfg.hiddenSize;
        const rows = (n: number, seed: number) =>
          Float32Array.from({ length: n * D }, (_, i) => Math.cos(i * 0.71 + seed) * 0.8);
        const gotCache = dec.newCache(20);
        const refCache = dec.newCache(20);
        // A prefill of 13 rows with the tape, then 2 rows and 1 row after the cache.
        for (const [past, n, keep] of [
          [0, 13, true],
          [13, 2, false],
          [15, 1, true],
        ] as const) {
          const h = rows(n, past);
          const positions = sequentialPositions(past, n);
          const before = count.hits;
          const got = await dec.layer(ort, 0, h, positions, gotCache, { keep });
          const ref = await dec.layer(perOp(ort), 0, h, positions, refCache, { keep });
          assert.equal(count.hits, before + 1, "the layer ran as one graph");
          const pairs: [string, Float32Array, Float32Array, number][] = [
            ["h", got.h, ref.h, 2e-5],
            ["probs", got.probs, ref.probs, 1e-6],
            ["cache k", gotCache.k[0], refCache.k[0], 1e-5],
            ["cache v", gotCache.v[0], refCache.v[0], 1e-5],
          ];
          assert.equal(got.probs.length, dec.cfg.numHeads * n * (past + n));
          if (keep) {
            assert.ok(got.tape && ref.tape);
            for (const key of ["x", "q", "ctx", "h1", "x2", "gate", "up"] as const) {
              const [g, r] = [got.tape[key], ref.tape[key]];
              assert.ok(g && r, `tape.${key}`);
              pairs.push([key, g, r, 2e-5]);
            }
          } else assert.equal(got.tape, undefined);
          assert.deepEqual(compare(pairs), [], `past ${past}, ${n} rows`);
          // Keys the mask hides (later positions, outside the window) get exactly 0.
          for (let i = 0; i < got.probs.length; i++) if (ref.probs[i] === 0) assert.equal(got.probs[i], 0);
          gotCache.length = refCache.length = past + n;
        }
      } finally {
        await ort.dispose();
        m.close();
      }
    });
  }
});

describe("loading int8 layers", () => {
  const dir = fixtureDir("llava-tiny-llama");
  const trace = async (forwardOnly: boolean | null) => {
    const model = loadModel(dir, { weights: "int8" });
    const ort = new OrtKernels({ threads: 1 });
    const count = countDecoderBlocks(ort);
    const prepared: WeightMatrix[] = [];
    const prepare = ort.prepare.bind(ort);
    ort.prepare = async (w: WeightMatrix) => {
      prepared.push(w);
      await prepare(w);
    };
    try {
      if (forwardOnly !== null) await prepareWeights(model, ort, { forwardOnly });
      const out = path.join(work, `trace-${forwardOnly}`);
      await traceWithModel(
        model,
        ort,
        greedyTrace(path.join(dir, "image.png"), "What is in the picture?", 4, out),
      );
      const quantised = model.weights.quantisedMatrices();
      return {
        out,
        prepared,
        head: model.decoder as unknown as { lmHead: WeightMatrix; embedTokens: WeightMatrix },
        layers: model.info.llmLayers,
        blocks: count.hits,
        quantised: quantised.length,
        freed: quantised.filter((w) => w.data.length === 0).length,
      };
    } finally {
      await ort.dispose();
      model.close();
    }
  };

  test("one session per layer holds its seven matrices; only the head is readied on its own", async () => {
    const { prepared, head } = await trace(false);
    assert.deepEqual(prepared, head.lmHead === head.embedTokens ? [] : [head.lmHead]);
  });

  test("forward only frees every code and traces exactly as a model that keeps them, every layer as one graph", async () => {
    const kept = await trace(null);
    const freed = await trace(true);
    assert.equal(kept.freed, 0);
    assert.ok(freed.quantised > 0);
    assert.equal(freed.freed, freed.quantised);
    // The prefill and the 3 decode steps after it (the last token is not run): each layer once per forward.
    assert.equal(freed.blocks, 4 * freed.layers);
    assert.equal(kept.blocks, freed.blocks);
    const a = Run.open(freed.out);
    const b = Run.open(kept.out);
    assert.deepEqual(a.manifest.generated_ids, b.manifest.generated_ids);
    assert.deepEqual(a.tensor("logits").data, b.tensor("logits").data);
  });
});
