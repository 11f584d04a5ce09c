/**
 * Vision-side relevancy on Qwen2-VL / Qwen2.5-VL (both public fixtures, both kernel sets): the chain map over
 * the tower's N patches through computeRelevancy (exact and incremental), checked against an independent
 * computation (the test's own LLM backward → tower backward → CAMs → full rollout matrix, read through each
 * merged token's m² patches); vit / all / all_v2 refused (no class token, as for SigLIP); the stored sources
 * and the view that puts the map on the image tokens' boxes; the packed store of windowed blocks' attention.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { describe, test } from "node:test";
import { loadImageFile } from "../src/hf/image-decode.js";
import {
  camFromGrad,
  computeRelevancy,
  relevancyMaps,
  rolloutMatrix,
} from "../src/interpret/relevancy/index.js";
import { relevancyImageMaps } from "../src/interpret/views/relevancy-panels.js";
import { IMAGE_GRID_TENSOR, Run, vitWindowTensorName } from "../src/run/run-dir.js";
import { packedWidth } from "../src/run/window-attention.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { ROOT } from "./fixture-utils.js";
import { KERNEL_IMPLS, traceFixture } from "./parity-utils.js";

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

for (const name of ["qwen2-vl-tiny", "qwen2.5-vl-tiny"] as const) {
  for (const impl of KERNEL_IMPLS) {
    describe(`${name} vision relevancy, ${impl} kernels`, async () => {
      const dir = path.join(ROOT, "test/fixtures", name);
      const { e, model, kernels, out, manifest } = await traceFixture(dir, impl, "qwen-rel");
      const P = manifest.image_layout.token_count;
      const N = e.num_patches as number;
      const mm = N / P;
      const G = manifest.generated_ids.length;

      test("the tower geometry: one pass of N patches, no class token, m² patches of weight 1/m² per token", () => {
        const g = model.towerGeometry(manifest.image_layout)!;
        assert.deepEqual([g.passes, g.seqLen, g.cls, mm], [1, N, -1, 4]);
        assert.deepEqual(
          g.featureLayers,
          Array.from({ length: model.info.vitLayers }, (_, l) => l),
        );
        assert.deepEqual(
          g.sourcesOf(1),
          [4, 5, 6, 7].map((token) => ({ pass: 0, token, weight: 0.25 })),
        );
        assert.deepEqual(g.sourcesOf(P), []);
      });

      test("vit_attn: windowed blocks stored as their windows [H, N, w] and rebuilt exactly; full blocks dense", async () => {
        const enc = await model.encodeImage(
          kernels,
          model.preprocess(await loadImageFile(path.join(dir, "image.png")), "default").pixels,
        );
        const run = Run.open(out);
        try {
          const H = model.info.vitHeads;
          let packed = 0;
          for (let l = 0; l < model.info.vitLayers; l++) {
            const windows = enc.towerWindows?.[l] ?? null;
            const stored = run.info(`vit_attn.${l}`).shape;
            if (windows) {
              packed++;
              const w = packedWidth(windows);
              assert.ok(w < N, `block ${l}: window of ${w} patches`);
              assert.deepEqual(stored, [H, N, w]);
              assert.deepEqual(run.ints(vitWindowTensorName(l)), Array.from(windows));
            } else {
              assert.deepEqual(stored, [H, N, N]);
              assert.equal(run.has(vitWindowTensorName(l)), false);
            }
            const a = run.vitAttention(l);
            assert.deepEqual(a.shape, [H, N, N]);
            assert.deepEqual(a.data, enc.towerAttentions[l].data, `block ${l}`);
          }
          // Qwen2.5-VL's fixture: full attention in blocks 1 and 3 only; Qwen2-VL attends fully everywhere.
          assert.equal(packed, name.startsWith("qwen2.5") ? model.info.vitLayers - 2 : 0);
        } finally {
          run.close();
        }
      });

      test("vit / all / all_v2 refused in one line (no class token), as for SigLIP", async () => {
        for (const kind of ["vit", "all", "all_v2"] as const) {
          await assert.rejects(
            computeRelevancy(out, { mode: "exact", vision: [kind], model, kernels }),
            (err: Error) =>
              /needs a vision tower with a CLS token \(this one has none\); use "chain"/.test(err.message) &&
              !err.message.includes("\n"),
          );
        }
      });

      test("chain through computeRelevancy (exact, incremental): [G, N] rows, finite and non-trivial; sources stored", async () => {
        for (const mode of ["exact", "incremental"] as const) {
          const s = await computeRelevancy(out, { mode, vision: ["chain"], model, kernels });
          assert.deepEqual(
            s.record.computed.chain,
            Array.from({ length: G }, (_, t) => t),
          );
          assert.deepEqual(s.record.tower, { passes: 1, seq_len: N, cls: -1 });
          const run = Run.open(out);
          try {
            const chain = run.tensor(`rel.chain.${mode}`);
            assert.deepEqual(chain.shape, [G, N]);
            assert.ok(chain.data.every(Number.isFinite));
            for (let t = 0; t < G; t++)
              assert.ok(maxAbs(chain.data.subarray(t * N, (t + 1) * N)) > 0, `${mode} t${t}`);
            const src = run.tensor(`rel.sources.${mode}`);
            assert.deepEqual(src.shape, [P, mm, 3]);
            assert.deepEqual(Array.from(src.data.subarray(0, 6)), [0, 0, 0.25, 0, 1, 0.25]);
          } finally {
            run.close();
          }
        }
      });

      test("chain = r_img · M · R_v, R_v from the test's own backward passes and rollout matrix", async () => {
        const run = Run.open(out);
        const px = run.tensor("pixel_values");
        const inputs = {
          inputIds: manifest.input_ids,
          generatedIds: manifest.generated_ids,
          pixels: { data: px.data, shape: px.shape, grid: run.ints(IMAGE_GRID_TENSOR) },
          layout: manifest.image_layout,
        };
        run.close();
        const res = await relevancyMaps(model, kernels, inputs, {
          mode: "exact",
          vision: ["chain"],
          keepMatrices: true,
        });
        const img = res.imagePositions;
        const enc = await model.encodeImage(kernels, inputs.pixels, { tape: true });
        const dec = model.decoder;
        const H = model.info.vitHeads;
        for (const r of res.tokens) {
          // Independent: the LLM backward of this token's logit, the tower backward, CAMs, the full rollout.
          const seq = [...inputs.inputIds, ...inputs.generatedIds.slice(0, r.token)];
          const fwd = await dec.forward(
            kernels,
            model.buildInputsEmbeds(seq, enc),
            model.positionIds(seq, inputs.layout),
            dec.newCache(seq.length),
            { tape: true, logitRows: [r.position] },
          );
          const bw = await dec.backward(kernels, fwd.tape!, [
            { row: r.position, tokenId: inputs.generatedIds[r.token] },
          ]);
          const cams: { data: Float32Array; stride: number }[] = [];
          await model.imageBackward(kernels, enc, model.imageFeaturesGrad(seq, bw.dInputsEmbeds, bw.from), {
            onLayer: (l, dP, pr) => {
              cams[l] = { data: camFromGrad(dP, pr, H, N, N), stride: N };
            },
          });
          const Rv = await rolloutMatrix(kernels, cams, N);
          assert.ok(maxAbsDiff(Rv, r.matrices!.chainVitR!) <= 1e-5 * maxAbs(Rv));
          const want = new Float32Array(N);
          img.forEach((p, i) => {
            for (let k = 0; k < mm; k++)
              for (let j = 0; j < N; j++) want[j] += (r.llm[p] / mm) * Rv[(i * mm + k) * N + j];
          });
          assert.ok(maxAbs(want) > 0);
          const d = maxAbsDiff(r.chain!, want);
          assert.ok(d <= 1e-4 * maxAbs(want), `token ${r.token}: max |Δ| ${d} (max ${maxAbs(want)})`);
        }
      });

      test("the chain view: one value per merged token (the mean of its m² patches), every token on a box", () => {
        const run = Run.open(out);
        try {
          const view = relevancyImageMaps(run, "exact", "chain", "token", false);
          const chain = run.tensor("rel.chain.exact");
          const boxes = run.imageTokens().boxes;
          assert.equal(view.items.length, G);
          for (const it of view.items) {
            const t = it.tokens[0];
            assert.equal(it.map.length, P);
            it.map.forEach((v, i) => {
              let mean = 0;
              for (let k = 0; k < mm; k++) mean += chain.data[t * N + i * mm + k] / mm;
              assert.ok(v !== null && Math.abs(v - mean) <= 1e-6 * (1 + Math.abs(mean)), `t${t} token ${i}`);
              const [x0, y0, x1, y1] = boxes.subarray(i * 4, i * 4 + 4);
              assert.ok(x1 > x0 && y1 > y0, `token ${i} box`);
            });
            assert.ok(it.max > it.min, "a flat map");
          }
        } finally {
          run.close();
        }
      });
    });
  }
}
