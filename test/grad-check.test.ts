/**
 * Finite-difference checks of every hand-written backward pass: each op on random inputs, the Linear
 * input gradient for every weight dtype, attention (GQA, causal offset, sliding window), and whole-model
 * d(logit)/d(attention probabilities) of every LLM and ViT layer, d(logit)/d(inputs_embeds) and
 * d(logit)/d(pixel_values), on llama-, gemma-, mistral- and qwen2-style decoders with CLIP and SigLIP towers,
 * with both kernel implementations.
 *
 * Precision. The forward passes run in float32, so a finite difference carries rounding noise of about
 * ε_f32·|f|·√(ops) / h. We use central differences with one Richardson step,
 * D = (4·D(h/2) − D(h)) / 3 with D(h) = (f(x+h) − f(x−h)) / (2h), which cancels the h² truncation term, so h
 * can stay large (1e-2 relative to unit-scale inputs) and the noise small: for |f| ≲ 10 the noise is
 * ≲ 1e-6·10/1e-2 = 1e-3 absolute in the worst case, typically 1e-5 (measured). The steps actually applied
 * are the float32-rounded ones. Tolerance: |FD − analytic| ≤ 2e-3·max|analytic| + 2e-4 (ops on unit-scale
 * data) — a wrong term in a backward pass shows up as an O(1) relative error, far above it. Every check also
 * asserts that the analytic gradient it compares is not trivially zero.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, describe, test } from "node:test";
import { createKernels } from "../src/kernels/index.js";
import type { WeightMatrix } from "../src/kernels/types.js";
import { attention, attentionBackward } from "../src/models/attention.js";
import {
  backwardWeightCacheUsage,
  linearBackwardInput,
  setBackwardWeightCacheBudget,
} from "../src/models/linear-grad.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { type PositionIds, sequentialPositions } from "../src/models/positions.js";
import {
  applyRope,
  applyRopeBackward,
  ropeFrequencyAxes,
  ropeInverseFrequencies,
} from "../src/models/rope.js";
import { f32ToBf16, f32ToF16 } from "../src/tensor/half.js";
import {
  activationBackward,
  activationFn,
  activationGradFn,
  gatedActivation,
  gatedActivationBackward,
  layerNorm,
  layerNormBackward,
  rmsNorm,
  rmsNormBackward,
  SUPPORTED_ACTIVATIONS,
  softmaxRows,
  softmaxRowsBackward,
} from "../src/tensor/ops.js";
import { compare, dot, fdAt, fdAtAsync, fdProbs, pickIndices, rand } from "./finite-diff.js";
import { TINY, type TinySpec, tinyInputIds, tinyPixels, writeTinyCheckpoint } from "./tiny-model.js";

describe("op backward passes vs finite differences", () => {
  test("layerNorm", () => {
    const rows = 3;
    const dim = 7;
    const x = rand(rows * dim, 1, 1.5, 0.3);
    const w = rand(dim, 2, 0.5, 1);
    const b = rand(dim, 3, 0.2);
    const c = rand(rows * dim, 4);
    const loss = () => dot(layerNorm(x, rows, dim, w, b, 1e-5), c);
    const g = layerNormBackward(x, c, rows, dim, w, 1e-5);
    const idx = pickIndices(g, rows * dim);
    compare(
      "layerNorm",
      g,
      idx,
      idx.map((i) => fdAt(x, i, 1e-2, loss)),
    );
  });

  for (const unit of [false, true]) {
    test(`rmsNorm (${unit ? "gemma (1 + w)" : "llama w"})`, () => {
      const rows = 3;
      const dim = 8;
      const x = rand(rows * dim, 5, 1.2, 0.2);
      const w = rand(dim, 6, 0.5, unit ? 0 : 1);
      const c = rand(rows * dim, 7);
      const loss = () => dot(rmsNorm(x, rows, dim, w, 1e-5, unit), c);
      const g = rmsNormBackward(x, c, rows, dim, w, 1e-5, unit);
      const idx = pickIndices(g, rows * dim);
      compare(
        "rmsNorm",
        g,
        idx,
        idx.map((i) => fdAt(x, i, 1e-2, loss)),
      );
    });
  }

  for (const name of SUPPORTED_ACTIVATIONS) {
    test(`activation ${name}: derivative in float64`, () => {
      const act = activationFn(name);
      const grad = activationGradFn(name);
      // float64 central differences on a grid avoiding relu's kink.
      for (let x = -4.05; x <= 4; x += 0.1) {
        const h = 1e-5;
        const fd = (act(x + h) - act(x - h)) / (2 * h);
        assert.ok(Math.abs(fd - grad(x)) <= 1e-7, `${name}'(${x}): ${grad(x)} vs ${fd}`);
      }
    });
  }

  test("activationBackward and gated MLP (silu, gelu_pytorch_tanh)", () => {
    for (const name of ["silu", "gelu_pytorch_tanh"]) {
      const act = activationFn(name);
      const grad = activationGradFn(name);
      const n = 12;
      const gate = rand(n, 8, 1.5);
      const up = rand(n, 9, 1.5);
      const c = rand(n, 10);
      const loss = () => dot(gatedActivation(gate, up, act), c);
      const { dGate, dUp, product } = gatedActivationBackward(gate, up, c, act, grad);
      assert.deepEqual(
        product,
        gatedActivation(gate, up, act),
        `${name}: the returned product is the forward's`,
      );
      const idx = pickIndices(dGate, n);
      compare(
        `${name} dGate`,
        dGate,
        idx,
        idx.map((i) => fdAt(gate, i, 1e-2, loss)),
      );
      compare(
        `${name} dUp`,
        dUp,
        idx,
        idx.map((i) => fdAt(up, i, 1e-2, loss)),
      );
      const da = activationBackward(gate, c, grad);
      const loss2 = () => dot(Float32Array.from(gate, act), c);
      compare(
        `${name} activation`,
        da,
        idx,
        idx.map((i) => fdAt(gate, i, 1e-2, loss2)),
      );
    }
  });

  test("softmax rows (with masked entries)", () => {
    const rows = 3;
    const n = 6;
    const s = rand(rows * n, 11, 2);
    const c = rand(rows * n, 12);
    const valid = (r: number) => 3 + r;
    const probs = () => {
      const p = s.slice();
      softmaxRows(p, rows, n, () => 0, valid);
      return p;
    };
    const loss = () => dot(probs(), c);
    const g = softmaxRowsBackward(probs(), c, rows, n);
    const masked = (i: number) => i % n >= valid(Math.floor(i / n));
    for (let i = 0; i < g.length; i++) if (masked(i)) assert.ok(g[i] === 0, `masked entry ${i}: ${g[i]}`);
    const idx = pickIndices(g, 10, (i) => !masked(i));
    compare(
      "softmax",
      g,
      idx,
      idx.map((i) => fdAt(s, i, 1e-2, loss)),
    );
  });

  test("RoPE backward is the transpose of RoPE (rotation by −angle)", () => {
    const rows = 4;
    const heads = 2;
    const hd = 8;
    const inv = ropeInverseFrequencies(hd, 10000, { type: "default", factor: 1 });
    const positions: PositionIds = { axes: 1, n: rows, data: Int32Array.from([3, 17, 250, 1024]) };
    const x = rand(rows * heads * hd, 13);
    const c = rand(rows * heads * hd, 14);
    const loss = () => {
      const y = x.slice();
      applyRope(y, rows, heads, hd, positions, inv);
      return dot(y, c);
    };
    const g = c.slice();
    applyRopeBackward(g, rows, heads, hd, positions, inv);
    const idx = pickIndices(g, 20);
    compare(
      "rope",
      g,
      idx,
      idx.map((i) => fdAt(x, i, 1e-2, loss)),
    );
  });

  test("multi-axis RoPE (M-RoPE sections): the transpose too, and plain RoPE when every axis is equal", () => {
    const rows = 4;
    const heads = 2;
    const hd = 16;
    const inv = ropeInverseFrequencies(hd, 10000, { type: "default", factor: 1 });
    const axes = ropeFrequencyAxes(hd, [2, 3, 3]);
    assert.deepEqual(Array.from(axes), [0, 0, 1, 1, 1, 2, 2, 2]);
    // t, h, w rows as Qwen2-VL gives an image's tokens (h and w differ per token).
    const pos3: PositionIds = {
      axes: 3,
      n: rows,
      // t: 5 5 5 9, h: 5 5 6 9, w: 5 6 5 9 (three image cells, then a text token).
      data: Int32Array.from([5, 5, 5, 9, 5, 5, 6, 9, 5, 6, 5, 9]),
    };
    const x = rand(rows * heads * hd, 23);
    const c = rand(rows * heads * hd, 24);
    const loss = () => {
      const y = x.slice();
      applyRope(y, rows, heads, hd, pos3, inv, axes);
      return dot(y, c);
    };
    const g = c.slice();
    applyRopeBackward(g, rows, heads, hd, pos3, inv, axes);
    const idx = pickIndices(g, 20);
    compare(
      "mrope",
      g,
      idx,
      idx.map((i) => fdAt(x, i, 1e-2, loss)),
    );
    // Equal rows: bit-identical to 1-D RoPE.
    const one = sequentialPositions(7, rows);
    const same: PositionIds = {
      axes: 3,
      n: rows,
      data: Int32Array.from([...one.data, ...one.data, ...one.data]),
    };
    const a = x.slice();
    const b = x.slice();
    applyRope(a, rows, heads, hd, one, inv);
    applyRope(b, rows, heads, hd, same, inv, axes);
    assert.deepEqual(a, b);
    assert.throws(() => ropeFrequencyAxes(hd, [2, 3, 2]), /sums to 7, not headDim\/2 = 8/);
  });
});

for (const impl of ["ts", "ort"] as const) {
  describe(`kernel-backed backward passes (${impl} kernels)`, async () => {
    const kernels = await createKernels(impl);
    after(() => kernels.dispose());

    test("Linear input gradient dy·W for F32, BF16 and F16 weights (against a float64 product)", async () => {
      const m = 3;
      const out = 37;
      const inp = 11;
      const w32 = rand(out * inp, 15, 0.5);
      const dy = rand(m * out, 16);
      const mats: WeightMatrix[] = [
        { rows: out, cols: inp, dtype: "F32", data: w32 },
        { rows: out, cols: inp, dtype: "BF16", data: Uint16Array.from(w32, (v) => f32ToBf16(v)) },
        { rows: out, cols: inp, dtype: "F16", data: Uint16Array.from(w32, (v) => f32ToF16(v)) },
      ];
      // Both 16-bit paths: widened row blocks through `bmm` (cache budget 0), and a cached transposed copy
      // through `linear`.
      const { budgetBytes } = backwardWeightCacheUsage();
      for (const [budget, w] of [0, budgetBytes].flatMap((b) => mats.map((mat) => [b, mat] as const))) {
        setBackwardWeightCacheBudget(budget);
        // The weights as the kernels see them (16-bit widened): linear(e_j) gives column j of W.
        const wf = new Float32Array(out * inp);
        const cols = await kernels.linear(eye(inp), inp, w);
        for (let j = 0; j < inp; j++) for (let o = 0; o < out; o++) wf[o * inp + j] = cols[j * out + o];
        const used = backwardWeightCacheUsage().usedBytes;
        const dx = await linearBackwardInput(kernels, dy, m, w);
        if (w.dtype !== "F32") assert.equal(backwardWeightCacheUsage().usedBytes > used, budget > 0);
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < inp; j++) {
            let s = 0;
            for (let o = 0; o < out; o++) s += dy[i * out + o] * wf[o * inp + j];
            assert.ok(
              Math.abs(dx[i * inp + j] - s) <= 1e-5 * (1 + Math.abs(s)),
              `${w.dtype} (cache budget ${budget}) dx[${i},${j}] ${dx[i * inp + j]} vs ${s}`,
            );
          }
        }
      }
      setBackwardWeightCacheBudget(budgetBytes);
    });

    test("attention backward: dQ, dK, dV and dProbs (GQA, causal with offset, sliding window)", async () => {
      const n = 3;
      const len = 7;
      const heads = 4;
      const kvHeads = 2;
      const hd = 4;
      const q = rand(n * heads * hd, 17, 1.2);
      const k = rand(kvHeads * len * hd, 18, 1.2);
      const v = rand(kvHeads * len * hd, 19);
      const c = rand(n * heads * hd, 20);
      for (const window of [null, 3]) {
        const run = async (hook?: (p: Float32Array, g: number) => void) =>
          attention(kernels, {
            q,
            k,
            v,
            kvStride: len * hd,
            n,
            len,
            heads,
            kvHeads,
            headDim: hd,
            scale: hd ** -0.5,
            queryOffset: len - n,
            window,
            onProbs: hook,
          });
        const fwd = await run();
        const loss = async () => dot((await run()).out, c);
        const b = await attentionBackward(kernels, {
          q,
          k,
          v,
          kvStride: len * hd,
          probs: fwd.probs,
          dOut: c,
          m: n,
          len,
          heads,
          kvHeads,
          headDim: hd,
          scale: hd ** -0.5,
        });
        for (const [name, x, g] of [
          ["dQ", q, b.dq],
          ["dK", k, b.dk],
          ["dV", v, b.dv],
        ] as const) {
          const idx = pickIndices(g, 12);
          const fd: number[] = [];
          for (const i of idx) fd.push(await fdAtAsync(x, i, 1e-2, loss));
          compare(`window ${window} ${name}`, g, idx, fd);
        }
        // dProbs: perturb probability (h, i, j) after the softmax through the hook.
        const rep = heads / kvHeads;
        const idx = pickIndices(b.dProbs, 12);
        const fd: number[] = [];
        for (const e of idx) {
          const h = Math.floor(e / (n * len));
          const g = Math.floor(h / rep);
          const local = (h - g * rep) * n * len + (e % (n * len));
          fd.push(await fdProbs(async (hook) => dot((await run(hook)).out, c), g, local, 1e-2));
        }
        compare(`window ${window} dProbs`, b.dProbs, idx, fd);
      }
    });
  });
}

function eye(n: number): Float32Array {
  const e = new Float32Array(n * n);
  for (let i = 0; i < n; i++) e[i * n + i] = 1;
  return e;
}

/** Richardson central difference of `value(hook)` w.r.t. one probability, perturbed inside the forward. */

// ------------------------------------------------------------------------------------------------------
// Whole model: d(logit)/d(attention probabilities) for every LLM and ViT layer, d/d(inputs_embeds), d/d(pixels).
// ------------------------------------------------------------------------------------------------------

const MODELS: { label: string; spec: TinySpec }[] = [
  { label: "llama + CLIP (GQA, untied lm_head, F32)", spec: { text: "llama", vision: "clip", untied: true } },
  {
    label: "gemma + CLIP (MQA, head_dim ≠ D/H, BF16)",
    spec: { text: "gemma", vision: "clip", dtype: "BF16" },
  },
  {
    label: "mistral + SigLIP (sliding window, two feature layers, F16)",
    spec: { text: "mistral", vision: "siglip", dtype: "F16", featureLayer: [-3, -1] },
  },
  { label: "qwen2 + SigLIP (q/k/v biases)", spec: { text: "qwen2", vision: "siglip", featureLayer: -2 } },
];

for (const { label, spec } of MODELS) {
  for (const impl of ["ts", "ort"] as const) {
    describe(`whole-model gradients: ${label}, ${impl} kernels`, async () => {
      const dir = writeTinyCheckpoint(spec);
      const model = LlavaModel.load(dir);
      const kernels = await createKernels(impl);
      after(async () => {
        model.close();
        await kernels.dispose();
        fs.rmSync(dir, { recursive: true, force: true });
      });
      const P = model.imageTokenCount;
      const ids = tinyInputIds(P);
      const n = ids.length;
      // Target: a logit of the second-to-last position (so the backward runs on a prefix of the tape).
      const row = n - 2;
      const tokenId = 777;
      const pixels = { data: tinyPixels(), shape: [3, TINY.imageSize, TINY.imageSize] };
      const dec = model.decoder;
      const Dh = model.config.text.hiddenSize;

      const logit = async (
        opts: {
          vitHook?: (l: number, p: Float32Array, g: number) => void;
          llmHook?: (l: number, p: Float32Array, g: number) => void;
          embeds?: Float32Array;
        } = {},
      ) => {
        let embeds = opts.embeds;
        if (!embeds) {
          const enc = await model.encodeImage(kernels, pixels, { probsHook: opts.vitHook });
          embeds = model.buildInputsEmbeds(ids, enc);
        }
        const out = await dec.forward(kernels, embeds, sequentialPositions(0, n), dec.newCache(n), {
          logitRows: [row],
          probsHook: opts.llmHook,
        });
        return out.logits[tokenId];
      };

      const enc = await model.encodeImage(kernels, pixels, { tape: true });
      const embeds = model.buildInputsEmbeds(ids, enc);
      const fwd = await dec.forward(kernels, embeds, sequentialPositions(0, n), dec.newCache(n), {
        tape: true,
        logitRows: [row],
      });
      const llmDProbs: Float32Array[] = [];
      const bw = await dec.backward(kernels, fwd.tape!, [{ row, tokenId }], {
        onLayer: (l, dP) => {
          llmDProbs[l] = dP;
        },
      });
      const vitDProbs: Float32Array[] = [];
      const dFeat = model.imageFeaturesGrad(ids, bw.dInputsEmbeds, bw.from);
      const vb = await model.imageBackward(kernels, enc, dFeat, {
        pixels: true,
        onLayer: (l, dP) => {
          vitDProbs[l] = dP;
        },
      });

      test("backward covers the target's prefix only", () => {
        assert.equal(bw.from, 0);
        assert.equal(bw.to, row + 1);
        assert.equal(bw.dInputsEmbeds.length, (row + 1) * Dh);
      });

      test("d logit / d inputs_embeds", async () => {
        const e = embeds.slice();
        const idx = pickIndices(bw.dInputsEmbeds, 10);
        const fd: number[] = [];
        for (const i of idx) fd.push(await fdAtAsync(e, i, 1e-2, () => logit({ embeds: e })));
        compare("dEmbeds", bw.dInputsEmbeds, idx, fd);
      });

      test("d logit / d attention probabilities, every LLM layer", async () => {
        const { numHeads: H, numKvHeads: KV } = model.config.text;
        const rep = H / KV;
        const m = row + 1;
        for (let l = 0; l < dec.layers.length; l++) {
          const g = llmDProbs[l];
          assert.equal(g.length, H * m * m);
          // Entries of the causal region (and a few above the diagonal, where A = 0 but the derivative exists).
          const idx = pickIndices(g, 8);
          const fd: number[] = [];
          for (const e of idx) {
            const h = Math.floor(e / (m * m));
            const i = Math.floor(e / m) % m;
            const j = e % m;
            const grp = Math.floor(h / rep);
            // Forward probabilities are [rep, n, n] per group over the full sequence.
            const local = ((h - grp * rep) * n + i) * n + j;
            fd.push(
              await fdProbs(
                (hook) => logit({ llmHook: (ll, p, gg) => ll === l && hook(p, gg) }),
                grp,
                local,
                1e-2,
              ),
            );
          }
          compare(`LLM layer ${l} dProbs`, g, idx, fd);
        }
      });

      test("d logit / d attention probabilities, every ViT layer that feeds the features (others untouched)", async () => {
        const Hv = model.config.vision.numHeads;
        const S = model.vision.seqLen;
        const top = Math.max(...model.visionFeatureHiddenIndices);
        for (let l = 0; l < model.config.vision.numLayers; l++) {
          if (l >= top) {
            assert.equal(vitDProbs[l], undefined, `layer ${l} does not feed the features`);
            // And indeed perturbing it does not move the logit.
            const d = await fdProbs(
              (hook) => logit({ vitHook: (ll, p, gg) => ll === l && hook(p, gg) }),
              0,
              1,
              1e-2,
            );
            assert.equal(d, 0);
            continue;
          }
          const g = vitDProbs[l];
          assert.equal(g.length, Hv * S * S);
          const idx = pickIndices(g, 8);
          const fd: number[] = [];
          for (const e of idx) {
            const h = Math.floor(e / (S * S));
            fd.push(
              await fdProbs(
                (hook) => logit({ vitHook: (ll, p, gg) => ll === l && hook(p, gg) }),
                h,
                e % (S * S),
                1e-2,
              ),
            );
          }
          compare(`ViT layer ${l} dProbs`, g, idx, fd);
        }
      });

      test("projector backward (linear_2 ∘ gelu ∘ linear_1)", async () => {
        const x = enc.preProjector.slice();
        const c = rand(enc.count * Dh, 21);
        const g = await model.projector.backward(kernels, x, enc.count, c);
        const idx = pickIndices(g, 10);
        const fd: number[] = [];
        for (const i of idx)
          fd.push(
            await fdAtAsync(x, i, 1e-2, async () =>
              dot(await model.projector.forward(kernels, x, enc.count), c),
            ),
          );
        compare("projector", g, idx, fd);
      });

      test("d logit / d pixel_values", async () => {
        const px = pixels.data.slice();
        const g = vb.dPixels!;
        const idx = pickIndices(g, 6);
        const fd: number[] = [];
        const value = async () => {
          const e2 = await model.encodeImage(kernels, { data: px, shape: pixels.shape });
          return logit({ embeds: model.buildInputsEmbeds(ids, e2) });
        };
        for (const i of idx) fd.push(await fdAtAsync(px, i, 2e-2, value));
        compare("dPixels", g, idx, fd);
      });

      test("single-position backward (KV-cache step) gives the last row of the full backward", async () => {
        const fromRow = row;
        const rows: Float32Array[] = [];
        await dec.backward(kernels, fwd.tape!, [{ row, tokenId }], {
          from: fromRow,
          onLayer: (l, dP, _p, from, to) => {
            assert.equal(from, row);
            assert.equal(to, row + 1);
            rows[l] = dP;
          },
        });
        const { numHeads: H } = model.config.text;
        const m = row + 1;
        for (let l = 0; l < dec.layers.length; l++) {
          for (let h = 0; h < H; h++) {
            for (let j = 0; j < m; j++) {
              const full = llmDProbs[l][(h * m + row) * m + j];
              const single = rows[l][h * m + j];
              assert.ok(
                Math.abs(full - single) <= 1e-5 * (1 + Math.abs(full)),
                `layer ${l} head ${h} col ${j}: ${single} vs ${full}`,
              );
            }
          }
        }
      });
    });
  }
}
