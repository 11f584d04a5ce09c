/**
 * Finite-difference checks of the Qwen2-VL / Qwen2.5-VL vision-tower backward (`imageBackward`) on both public
 * fixtures with both kernel sets: the loss is c · (merged image features) for a fixed random c; every block's
 * dProbs [H, N, N] (patch order; full-attention and windowed blocks, entries inside and outside the windows)
 * and the gradient at pixel_values are compared with Richardson central differences (test/finite-diff.ts).
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { loadImageFile } from "../src/hf/image-decode.js";
import { createKernels } from "../src/kernels/index.js";
import type { QwenVlModel } from "../src/models/qwen2_vl/model.js";
import { loadModel } from "../src/models/registry.js";
import { compare, dot, fdAtAsync, fdProbs, pickIndices, rand } from "./finite-diff.js";
import { ROOT } from "./fixture-utils.js";

for (const name of ["qwen2-vl-tiny", "qwen2.5-vl-tiny"] as const) {
  for (const impl of ["ts", "ort"] as const) {
    describe(`${name} vision-tower backward vs finite differences, ${impl} kernels`, async () => {
      const dir = path.join(ROOT, "test/fixtures", name);
      const model = loadModel(dir) as unknown as QwenVlModel;
      const kernels = await createKernels(impl);
      after(async () => {
        model.close();
        await kernels.dispose();
      });
      const { pixels } = model.preprocess(await loadImageFile(path.join(dir, "image.png")), "default");
      const H = model.info.vitHeads;
      const N = pixels.shape[0];
      const enc = await model.encodeImage(kernels, pixels, { tape: true });
      const c = rand(enc.features.length, 7);
      const loss = async (
        opts: { hook?: (l: number, p: Float32Array, head: number) => void; px?: Float32Array } = {},
      ) => {
        const e = await model.encodeImage(
          kernels,
          { ...pixels, data: opts.px ?? pixels.data },
          { probsHook: opts.hook },
        );
        return dot(e.features, c);
      };
      const dProbs: Float32Array[] = [];
      const probs: Float32Array[] = [];
      const order: number[] = [];
      const bw = await model.imageBackward(kernels, enc, c, {
        pixels: true,
        onLayer: (l, dP, p) => {
          order.push(l);
          dProbs[l] = dP;
          probs[l] = p;
        },
      });

      test("the tape changes nothing in the forward; onLayer visits every block from the top, with the run's vit_attn", async () => {
        const plain = await model.encodeImage(kernels, pixels);
        assert.deepEqual(enc.features, plain.features);
        const L = model.info.vitLayers;
        assert.deepEqual(
          order,
          Array.from({ length: L }, (_, i) => L - 1 - i),
        );
        for (let l = 0; l < L; l++) {
          assert.equal(dProbs[l].length, H * N * N);
          assert.deepEqual(probs[l], plain.towerAttentions[l].data);
        }
      });

      test("d loss / d attention probabilities, every block (inside and outside the attention windows)", async () => {
        let outside = 0;
        for (let l = 0; l < model.info.vitLayers; l++) {
          const g = dProbs[l];
          const masked = (i: number) => probs[l][i] === 0;
          // The largest and spread entries, and (windowed blocks) ones where the forward masked the key out:
          // there the probability is 0 but the derivative exists (dctx · v).
          const anyMasked = probs[l].some((p) => p === 0);
          const idx = [...new Set([...pickIndices(g, 6), ...(anyMasked ? pickIndices(g, 1, masked) : [])])];
          outside += idx.filter(masked).length;
          const fd: number[] = [];
          for (const e of idx) {
            const head = Math.floor(e / (N * N));
            fd.push(
              await fdProbs(
                (hook) => loss({ hook: (ll, p, hh) => ll === l && hook(p, hh) }),
                head,
                e % (N * N),
                1e-2,
              ),
            );
          }
          compare(`${name} block ${l} dProbs`, g, idx, fd);
        }
        // Qwen2.5-VL's windowed blocks mask keys; Qwen2-VL attends everywhere in its single frame.
        if (name.startsWith("qwen2.5")) assert.ok(outside > 0, "no masked entry checked");
        else assert.equal(outside, 0);
      });

      test("d loss / d pixel_values", async () => {
        const px = pixels.data.slice();
        const g = bw.dPixels!;
        assert.equal(g.length, px.length);
        const idx = pickIndices(g, 6);
        const fd: number[] = [];
        for (const i of idx) fd.push(await fdAtAsync(px, i, 2e-2, () => loss({ px })));
        compare(`${name} dPixels`, g, idx, fd);
      });

      test("refuses an encoding without a tape, and a gradient of the wrong size", async () => {
        const plain = await model.encodeImage(kernels, pixels);
        await assert.rejects(model.imageBackward(kernels, plain, c), /encoded without \{ tape: true \}/);
        await assert.rejects(model.imageBackward(kernels, enc, c.subarray(1)), /gradient of \d+ values/);
      });
    });
  }
}
