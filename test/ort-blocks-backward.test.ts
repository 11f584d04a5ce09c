/**
 * The decoder layer's backward as one onnxruntime graph (kernels/ort-backward-decoder.ts) against the per-op
 * path with the TypeScript kernels (models/decoder.ts `layerBackward`, the reference): dIn and dProbs of
 * every layer over f32/f16/bf16 weights, GQA and MQA, gemma's (1+w) norm, qwen2's biases, M-RoPE position
 * ids, several activations, and partial row windows (from > 0, the single-row step, to short of the tape,
 * a cache larger than the sequence). Then whole relevancy runs with and without the graph give the same
 * maps.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { relevancyMaps } from "../src/interpret/relevancy/index.js";
import { setWidenBlock } from "../src/kernels/graph-parts.js";
import { createKernels } from "../src/kernels/index.js";
import { quantizeInt8 } from "../src/kernels/quantize.js";
import type { DecoderBackwardBlockInput, Kernels, WeightMatrix } from "../src/kernels/types.js";
import { TextDecoder } from "../src/models/decoder.js";
import { WeightGradients } from "../src/models/gradients.js";
import { LlavaModel } from "../src/models/llava/model.js";
import type { PositionIds } from "../src/models/positions.js";
import { loadModel } from "../src/models/registry.js";
import { matrixRow } from "../src/models/weights.js";
import { bf16ToF32Into, f16ToF32Into, f32ToBf16, f32ToF16 } from "../src/tensor/half.js";
import { activationFn, activationGradFn, rmsNormBackward } from "../src/tensor/ops.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { fixtureDir, fixturePixels, gridLayout, loadFixture } from "./fixture-utils.js";

const ts = await createKernels("ts");
const ort = await createKernels("ort");
after(async () => {
  await ts.dispose();
  await ort.dispose();
});

/** Counts the layer backwards the graph actually ran. */
const hits = { backward: 0 };
{
  const blocks = ort.blocks;
  assert.ok(blocks, "ort kernels have no block graphs");
  const inner = blocks.decoderLayerBackward.bind(blocks);
  blocks.decoderLayerBackward = async (a: DecoderBackwardBlockInput) => {
    const r = await inner(a);
    if (r) hits.backward++;
    return r;
  };
}

/** Largest |got − ref| over the reference's largest magnitude (at least 1). */
function relDiff(got: Float32Array, ref: Float32Array): number {
  assert.equal(got.length, ref.length);
  let scale = 1;
  for (const v of ref) scale = Math.max(scale, Math.abs(v));
  return maxAbsDiff(got, ref) / scale;
}

/** The weight in another storage dtype (widened from 16 bits first where the fixture stores them so). */
function withDtype(w: WeightMatrix, dtype: WeightMatrix["dtype"]): WeightMatrix {
  let f32 = w.data as Float32Array;
  if (w.dtype !== "F32") {
    f32 = new Float32Array(w.data.length);
    (w.dtype === "BF16" ? bf16ToF32Into : f16ToF32Into)(w.data as Uint16Array, f32);
  }
  if (dtype === "F32") return { ...w, dtype, data: f32 };
  if (dtype === "Q8") return quantizeInt8({ ...w, dtype: "F32", data: f32 });
  return { ...w, dtype, data: Uint16Array.from(f32, dtype === "BF16" ? f32ToBf16 : f32ToF16) };
}

/** A fixture's decoder with another activation and weight dtype (the same weights, rounded to the dtype). */
function decoderWith(dec: TextDecoder, act: string | null, dtype: WeightMatrix["dtype"]): TextDecoder {
  const t = Object.create(TextDecoder.prototype) as TextDecoder;
  Object.assign(t, dec);
  if (act)
    Object.assign(t, {
      cfg: { ...dec.cfg, hiddenAct: act },
      act: activationFn(act),
      actGrad: activationGradFn(act),
    });
  Object.assign(t, {
    layers: dec.layers.map((L) => {
      const c = { ...L };
      for (const m of ["q", "k", "v", "o", "gate", "up", "down"] as const) c[m] = withDtype(L[m], dtype);
      return c;
    }),
  });
  return t;
}

/** Position ids of n rows; three distinct axes (t, h, w as M-RoPE reads an image) for a 3-axis model. */
function positionsFor(axes: number, n: number): PositionIds {
  const data = new Int32Array(axes * n);
  for (let r = 0; r < n; r++) {
    data[r] = r;
    if (axes === 3) {
      data[n + r] = r < 3 ? r : 3 + Math.floor((r - 3) / 4);
      data[2 * n + r] = r < 3 ? r : 3 + ((r - 3) % 4);
    }
  }
  return { axes, n, data };
}

/** Row windows [from, to) over a 13-row tape: all, from > 0, the single newest row, to short of the end. */
const N = 13;
const WINDOWS: [number, number][] = [
  [0, N],
  [5, N],
  [N - 1, N],
  [3, 9],
  [8, 9],
];

describe("decoder layer backward as one onnxruntime graph", () => {
  // [fixture, activation (null: the config's), weight dtype, elements per widened block of 16-bit weights
  // (small: several row blocks with a ragged tail, as 7B-sized matrices get)]
  const cases: [string, string | null, WeightMatrix["dtype"], number?][] = [
    ["llava-tiny-llama", null, "F32"],
    ["llava-tiny-llama", null, "F16"],
    ["llava-tiny-llama", null, "BF16"],
    ["llava-tiny-llama", null, "BF16", 1000],
    ["llava-tiny-llama", null, "F16", 3000],
    ["llava-tiny-llama", "gelu", "F32"],
    ["llava-tiny-llama", "quick_gelu", "F32"],
    ["llava-tiny-gemma", null, "F32"],
    ["llava-tiny-gemma", null, "BF16"],
    ["llava-tiny-gemma", null, "F16"],
    ["llava-onevision-tiny-qwen2", null, "F32"],
    ["llava-onevision-tiny-qwen2", null, "BF16"],
    ["qwen2-vl-tiny", null, "F32"],
    ["qwen2-vl-tiny", null, "BF16"],
    ["qwen2-vl-tiny", null, "BF16", 1000],
    // int8 (--weights int8): codes and scales dequantised in-graph, whole and in row blocks.
    ["llava-tiny-llama", null, "Q8"],
    ["llava-tiny-llama", null, "Q8", 1000],
    ["llava-tiny-gemma", null, "Q8"],
    ["llava-onevision-tiny-qwen2", null, "Q8"],
    ["qwen2-vl-tiny", null, "Q8", 1000],
  ];
  for (const [name, act, dtype, block] of cases) {
    const blocks = block ? ` in blocks of ${block} elements` : "";
    test(`${name}, ${act ?? "own activation"}, ${dtype} weights${blocks}: dIn and dProbs of every layer and row window match the per-op path`, async () => {
      const model = loadModel(fixtureDir(name as "llava-tiny-llama"));
      const previousBlock = block ? setWidenBlock(block) : null;
      try {
        assert.ok(model.decoder instanceof TextDecoder);
        const dec = decoderWith(model.decoder, act, dtype);
        const D = dec.cfg.hiddenSize;
        const axes = dec.cfg.ropeScaling.mropeSection ? 3 : 1;
        const embeds = Float32Array.from({ length: N * D }, (_, i) => Math.cos(i * 0.71) * 0.8);
        // A cache longer than the sequence: the graph must read positions 0 … to−1 of [KV, capacity, hd].
        const fwd = await dec.forward(ts, embeds, positionsFor(axes, N), dec.newCache(N + 4), { tape: true });
        const tape = fwd.tape;
        assert.ok(tape);
        const worst = { dIn: 0, dProbs: 0 };
        for (const [from, to] of WINDOWS) {
          // Query rows (a gradient at the output): all the window's rows, its second half, its last row (the
          // top layer's form).
          for (const queryFrom of new Set([from, from + ((to - from) >> 1), to - 1])) {
            const mq = to - queryFrom;
            const dOut = Float32Array.from({ length: mq * D }, (_, i) => Math.sin(i * 0.37 + from) * 0.5);
            for (let l = 0; l < dec.layers.length; l++) {
              const before = hits.backward;
              const ref = await dec.layerBackward(ts, l, tape, dOut, from, to, undefined, queryFrom);
              const got = await dec.layerBackward(ort, l, tape, dOut, from, to, undefined, queryFrom);
              const rows = `rows ${from}…${to - 1}, queries from ${queryFrom}`;
              assert.equal(hits.backward, before + 1, `layer ${l} ${rows} ran as one graph`);
              assert.deepEqual(got.probs, ref.probs);
              assert.equal(got.dIn.length, (to - from) * D, rows);
              assert.equal(got.dProbs.length, dec.cfg.numHeads * mq * to, rows);
              worst.dIn = Math.max(worst.dIn, relDiff(got.dIn, ref.dIn));
              worst.dProbs = Math.max(worst.dProbs, relDiff(got.dProbs, ref.dProbs));
            }
          }
        }
        if (process.env.LVLM_BACKWARD_VERBOSE) console.log(name, act, dtype, worst);
        assert.ok(worst.dIn <= 5e-6 && worst.dProbs <= 5e-6, `worst relative |Δ| ${JSON.stringify(worst)}`);
      } finally {
        if (previousBlock !== null) setWidenBlock(previousBlock);
        model.close();
      }
    });
  }

  test("query rows only: the backward equals the full one fed zero gradients above them (inputs, dProbs, weight gradients)", async () => {
    const model = loadModel(fixtureDir("llava-tiny-llama"));
    try {
      assert.ok(model.decoder instanceof TextDecoder);
      const dec = model.decoder;
      const D = dec.cfg.hiddenSize;
      const H = dec.cfg.numHeads;
      const embeds = Float32Array.from({ length: N * D }, (_, i) => Math.cos(i * 0.71) * 0.8);
      const fwd = await dec.forward(ts, embeds, positionsFor(1, N), dec.newCache(N), { tape: true });
      assert.ok(fwd.tape);
      const [from, to, queryFrom] = [3, N, 10];
      const m = to - from;
      const first = queryFrom - from;
      const full = new Float32Array(m * D);
      for (let i = first * D; i < m * D; i++) full[i] = Math.sin(i * 0.37) * 0.5;
      const l = dec.layers.length - 1;
      const gradsFull = new WeightGradients();
      const gradsRows = new WeightGradients();
      const ref = await dec.layerBackward(ts, l, fwd.tape, full, from, to, gradsFull);
      const got = await dec.layerBackward(
        ts,
        l,
        fwd.tape,
        full.subarray(first * D),
        from,
        to,
        gradsRows,
        queryFrom,
      );
      assert.ok(relDiff(got.dIn, ref.dIn) <= 1e-6, `dIn ${relDiff(got.dIn, ref.dIn)}`);
      // dProbs of the rows above the queries are exactly zero in the full backward; the others agree.
      for (let h = 0; h < H; h++) {
        const refRows = ref.dProbs.subarray(h * m * to, (h + 1) * m * to);
        assert.ok(refRows.subarray(0, first * to).every((x) => x === 0));
        const gotRows = got.dProbs.subarray(h * (m - first) * to, (h + 1) * (m - first) * to);
        assert.ok(relDiff(gotRows, refRows.subarray(first * to)) <= 1e-6);
      }
      const L = dec.layers[l];
      for (const w of [L.q, L.k, L.v, L.o, L.gate, L.up, L.down, L.inputNorm, L.postNorm]) {
        const a = gradsRows.of(w);
        const b = gradsFull.of(w);
        assert.ok(
          b.some((x) => x !== 0),
          "the full backward has a gradient for every weight",
        );
        assert.ok(relDiff(a, b) <= 1e-6, `weight gradient ${relDiff(a, b)}`);
      }
      // The whole decoder backward (which runs its top layer this way) gives what every layer over all the
      // variable rows gives: the target row's lm_head row back through the final norm, then layer by layer.
      const tokenId = 7;
      const seen: Float32Array[] = [];
      const whole = await dec.backward(ts, fwd.tape, [{ row: N - 1, tokenId }], {
        from,
        onLayer: (_i, dp) => seen.push(dp),
      });
      const dNormed = new Float32Array(m * D);
      matrixRow(dec.lmHead, tokenId, dNormed.subarray((m - 1) * D));
      const hLast = fwd.tape.hFinal.subarray(from * D);
      let dh = rmsNormBackward(hLast, dNormed, m, D, dec.finalNorm, dec.cfg.rmsNormEps, false);
      const refProbs: Float32Array[] = [];
      for (let i = dec.layers.length - 1; i >= 0; i--) {
        const r = await dec.layerBackward(ts, i, fwd.tape, dh, from, to);
        refProbs.push(r.dProbs);
        dh = r.dIn;
      }
      assert.ok(
        relDiff(whole.dInputsEmbeds, dh) <= 1e-6,
        `d(inputs_embeds) ${relDiff(whole.dInputsEmbeds, dh)}`,
      );
      assert.equal(seen.length, refProbs.length);
      for (const [i, dp] of seen.entries())
        assert.ok(relDiff(dp, refProbs[i]) <= 1e-6, `dProbs of layer ${i} from the top`);
    } finally {
      model.close();
    }
  });

  test("weight gradients (training) keep the per-op path", async () => {
    const model = loadModel(fixtureDir("llava-tiny-llama"));
    try {
      assert.ok(model.decoder instanceof TextDecoder);
      const dec = model.decoder;
      const D = dec.cfg.hiddenSize;
      const embeds = Float32Array.from({ length: N * D }, (_, i) => Math.cos(i * 0.71) * 0.8);
      const fwd = await dec.forward(ort, embeds, positionsFor(1, N), dec.newCache(N), { tape: true });
      assert.ok(fwd.tape);
      const dOut = Float32Array.from({ length: N * D }, (_, i) => Math.sin(i * 0.37));
      const before = hits.backward;
      const grads = new WeightGradients();
      await dec.layerBackward(ort, 0, fwd.tape, dOut, 0, N, grads);
      assert.equal(hits.backward, before);
      assert.ok(grads.get(dec.layers[0].inputNorm)?.some((x) => x !== 0));
    } finally {
      model.close();
    }
  });
});

/** The same kernels with the backward graph switched off (every other block graph kept). */
function withoutBackwardGraph(k: Kernels): Kernels {
  const blocks = Object.create(k.blocks!);
  blocks.decoderLayerBackward = async () => null;
  const w = Object.create(k) as Kernels;
  Object.defineProperty(w, "blocks", { value: blocks });
  return w;
}

describe("relevancy with the decoder backward graph", () => {
  test("llava-tiny-llama: exact and incremental maps (LLM, vit, all, all_v2) equal those without it", async () => {
    const fx = loadFixture("llava-tiny-llama");
    const model = LlavaModel.load(fx.dir);
    try {
      const e = fx.expected;
      const inputs = {
        inputIds: e.input_ids,
        generatedIds: e.generated_ids,
        pixels: fixturePixels(fx),
        layout: gridLayout(model),
      };
      const perOp = withoutBackwardGraph(ort);
      for (const mode of ["exact", "incremental"] as const) {
        const opts = { mode, vision: ["vit", "all", "all_v2"] as ("vit" | "all" | "all_v2")[] };
        const before = hits.backward;
        const got = await relevancyMaps(model, ort, inputs, opts);
        assert.ok(hits.backward > before, `${mode}: the backward graph ran`);
        const afterGraph = hits.backward;
        const ref = await relevancyMaps(model, perOp, inputs, opts);
        assert.equal(hits.backward, afterGraph, `${mode}: the reference took the per-op path`);
        assert.equal(got.tokens.length, e.generated_ids.length);
        for (const [i, r] of got.tokens.entries()) {
          const f = ref.tokens[i];
          for (const key of ["llm", "vit", "all", "allV2"] as const) {
            const a = r[key];
            const b = f[key];
            assert.ok(a && b, `${mode} t${r.token} ${key}`);
            let scale = 0;
            for (const v of b) scale = Math.max(scale, Math.abs(v));
            const d = maxAbsDiff(a, b) / scale;
            if (process.env.LVLM_BACKWARD_VERBOSE) console.log(mode, r.token, key, d);
            assert.ok(d <= 2e-6, `${mode} t${r.token} ${key}: |Δ| ${d} of the largest |value|`);
          }
        }
      }
    } finally {
      model.close();
      fx.tensors.close();
    }
  });
});
