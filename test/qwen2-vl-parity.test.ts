/**
 * Qwen2-VL / Qwen2.5-VL fixture parity through the library API (loadModel via the registry, traceWithModel
 * writing a v2 run), both kernel sets: prompt ids, pixel_values, the vision tower (every hidden state and
 * attention in patch order, the merger output), M-RoPE positions, every step's logits with the KV cache and
 * rope deltas, generated ids, every LLM attention, image token positions and boxes. Tolerances from
 * ../shared/fixtures/README-qwen2-vl.md.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { loadImageFile } from "../src/hf/image-decode.js";
import { SafetensorsFile } from "../src/hf/safetensors.js";
import { explainRun } from "../src/interpret/causal/explain-run.js";
import { computeRelevancy } from "../src/interpret/relevancy/index.js";
import type { QwenImageEncoding } from "../src/models/qwen2_vl/model.js";
import { Run } from "../src/run/run-dir.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { ROOT } from "./fixture-utils.js";
import { assertLlmAttentions, assertRelevancyRows, KERNEL_IMPLS, traceFixture } from "./parity-utils.js";

export const QWEN_FIXTURES = ["qwen2-vl-tiny", "qwen2.5-vl-tiny"] as const;

for (const name of QWEN_FIXTURES) {
  for (const impl of KERNEL_IMPLS) {
    describe(`${name} with ${impl} kernels`, async () => {
      const dir = path.join(ROOT, "test/fixtures", name);
      const t = await traceFixture(dir, impl, "qwen-parity");
      const { e, model, kernels, out, manifest, run } = t;
      const ref = SafetensorsFile.open(path.join(dir, "expected.safetensors"));
      after(() => ref.close());

      test("model type from the registry", () => {
        const want = name.startsWith("qwen2.5") ? "qwen2_5_vl" : "qwen2_vl";
        assert.equal(model.info.modelType, want);
        assert.equal(manifest.model.model_type, want);
      });

      test("prompt: chat text, input_ids and image token positions exact", () => {
        assert.equal(manifest.chat_text, e.prompt);
        assert.deepEqual(manifest.input_ids, e.input_ids);
        assert.deepEqual(
          run.imageTokens().positions,
          Array.from({ length: e.image_token_count }, (_, i) => e.image_token_start + i),
        );
      });

      test("image token boxes in original pixels within 0.01 px, one grid of merged cells", () => {
        const grid = manifest.image_layout.segments[0];
        assert.ok(grid.kind === "grid");
        assert.deepEqual([grid.rows, grid.cols], [e.image_layout.rows, e.image_layout.cols]);
        const boxes = run.imageTokens().boxes;
        const want = (e.image_layout.token_boxes_original_xyxy as number[][]).flat();
        const d = maxAbsDiff(boxes, Float32Array.from(want));
        assert.ok(d <= 0.01, `max |Δ| = ${d}`);
      });

      test("pixel_values [N, 1176] within 1e-5", () => {
        const px = run.tensor("pixel_values");
        assert.deepEqual(px.shape, [e.num_patches, 1176]);
        const d = maxAbsDiff(px.data, ref.readF32("pixel_values"));
        assert.ok(d <= 1e-5, `max |Δ| = ${d}`);
      });

      test("vision features (merger output) within 1e-3", () => {
        const d = maxAbsDiff(run.tensor("vision_features").data, ref.readF32("vision.image_embeds"));
        assert.ok(d <= 1e-3, `max |Δ| = ${d}`);
      });

      test("every ViT attention [H, N, N] in patch order within 1e-4, exact zeros outside windows", () => {
        const want = ref.readF32("vision.attentions");
        const L = manifest.model.vit_layers;
        const per = want.length / L;
        for (let l = 0; l < L; l++) {
          const a = run.vitAttention(l);
          assert.deepEqual(a.shape, [e.vision.heads, e.num_patches, e.num_patches]);
          const w = want.subarray(l * per, (l + 1) * per);
          const d = maxAbsDiff(a.data, w);
          assert.ok(d <= 1e-4, `vit layer ${l}: max |Δ| = ${d}`);
          for (let i = 0; i < w.length; i++)
            if (w[i] === 0) assert.equal(a.data[i], 0, `vit layer ${l} entry ${i}`);
        }
      });

      test("vision hidden states after every block within 1e-3", async () => {
        const img = await loadImageFile(path.join(dir, "image.png"));
        const enc = (await model.encodeImage(
          kernels,
          model.preprocess(img, "default").pixels,
        )) as QwenImageEncoding;
        const want = ref.readF32("vision.hidden_states");
        const per = want.length / enc.hiddenStates.length;
        enc.hiddenStates.forEach((h, l) => {
          const d = maxAbsDiff(h, want.subarray(l * per, (l + 1) * per));
          assert.ok(d <= 1e-3, `hidden state ${l}: max |Δ| = ${d}`);
        });
      });

      test("M-RoPE position ids of the prompt and of the full sequence (decode deltas) exact", () => {
        const layout = manifest.image_layout;
        const p = model.positionIds(e.input_ids, layout);
        assert.equal(p.axes, 3);
        assert.deepEqual(Array.from(p.data), (e.position_ids as number[][]).flat());
        const seq = [...e.input_ids, ...e.generated_ids.slice(0, -1)];
        const tail = model.positionIds(seq, layout, e.T);
        const decode = e.decode_positions as number[];
        for (let k = 0; k < tail.n; k++)
          for (let a = 0; a < 3; a++) assert.equal(tail.data[a * tail.n + k], decode[k], `step ${k + 1}`);
      });

      test("generated ids exact", () => {
        assert.deepEqual(manifest.generated_ids, e.generated_ids);
        assert.equal(manifest.seq_len, e.T_full);
      });

      test("every step's logits within 1e-3", () => {
        const got = run.tensor("logits");
        const d = maxAbsDiff(got.data, ref.readF32("llm.step_logits"));
        assert.ok(d <= 1e-3, `max |Δ| = ${d}`);
      });

      test("rel.llm.exact rows within 1e-4·max|row| (pixels re-encoded from the run with its image_grid_thw)", async () => {
        assert.deepEqual(run.ints("image_grid_thw"), e.image_grid_thw.flat());
        await computeRelevancy(out, { mode: "exact", model, kernels });
        const again = Run.open(out);
        try {
          const rel = again.tensor("rel.llm.exact");
          assertRelevancyRows(rel, ref, e.generated_ids.length, 1e-4);
        } finally {
          again.close();
        }
      });

      test("causal explanation of the last token over the image tokens, on the merged grid", async () => {
        const { doc } = await explainRun(out, { jobs: 1 });
        assert.deepEqual(doc.patch_weights.grid, [e.image_layout.rows, e.image_layout.cols]);
        assert.equal(doc.image_token_start, e.image_token_start);
        assert.equal(doc.image_token_count, e.image_token_count);
      });

      test("every LLM attention probability within 1e-4", () => {
        assertLlmAttentions(t, ref.readF32("llm.attentions_full"), 1e-4);
      });
    });
  }
}
