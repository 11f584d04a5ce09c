/**
 * Fixture parity of LLaVA-NeXT and LLaVA-OneVision through the public API (loadModel via the registry, then
 * trace), with both kernel sets: chat text and ids, pixel_values [tiles, 3, S, S], packed image features with
 * the newline rows, every step's logits and generated ids, every LLM attention, every tower attention per tile,
 * image-token positions and boxes in original pixels, and the exact LLM relevancy rows (tolerances from the
 * fixture README).
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { SafetensorsFile } from "../src/hf/safetensors.js";
import { computeRelevancy } from "../src/interpret/relevancy/index.js";
import { Run } from "../src/run/run-dir.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { ROOT } from "./fixture-utils.js";
import { assertLlmAttentions, assertRelevancyRows, KERNEL_IMPLS, traceFixture } from "./parity-utils.js";

const ANYRES_FIXTURES = ["llava-next-tiny-clip-llama", "llava-onevision-tiny-qwen2"] as const;

for (const name of ANYRES_FIXTURES) {
  for (const impl of KERNEL_IMPLS) {
    describe(`${name} with ${impl} kernels`, async () => {
      const dir = path.join(ROOT, "test/fixtures", name);
      const t = await traceFixture(dir, impl, "anyres-parity");
      const { e, model, kernels, out, manifest, run } = t;
      const ref = SafetensorsFile.open(path.join(dir, "expected.safetensors"));
      after(() => ref.close());

      test("model type from the registry, chat template rendered, input_ids exact", () => {
        assert.equal(manifest.model.model_type, e.model_type);
        assert.equal(manifest.chat_text, e.prompt);
        assert.deepEqual(manifest.input_ids, e.input_ids);
        assert.equal(manifest.image_layout.token_count, e.image_token_count);
        assert.equal(manifest.image_layout.token_count, e.processor_num_image_tokens);
      });

      test("pixel_values [tiles, 3, S, S] within 1e-5", () => {
        const px = run.tensor("pixel_values");
        assert.deepEqual(px.shape, ref.info("pixel_values").shape);
        const d = maxAbsDiff(px.data, ref.readF32("pixel_values"));
        assert.ok(d <= 1e-5, `max |Δ| = ${d}`);
      });

      test("packed image features (base, rows, newlines) within 1e-3", () => {
        const got = run.tensor("vision_features");
        assert.deepEqual(got.shape, ref.info("image_features.packed").shape);
        const d = maxAbsDiff(got.data, ref.readF32("image_features.packed"));
        assert.ok(d <= 1e-3, `max |Δ| = ${d}`);
      });

      test("generated ids exact, every step's logits within 1e-3", () => {
        assert.deepEqual(manifest.generated_ids, e.generated_ids);
        assert.deepEqual(manifest.generated_tokens, e.generated_token_texts);
        const got = run.tensor("logits");
        assert.deepEqual(got.shape, ref.info("llm.step_logits").shape);
        const d = maxAbsDiff(got.data, ref.readF32("llm.step_logits"));
        assert.ok(d <= 1e-3, `max |Δ| = ${d}`);
      });

      test("every LLM attention probability within 1e-4", () => {
        assertLlmAttentions(t, ref.readF32("llm.attentions_full"), 1e-4);
      });

      test("every tower attention [tiles, H, Sv, Sv] within 1e-4", () => {
        // The reference is tile-major [n, Lv, H, Sv, Sv]; the run stores one tensor per layer.
        const [n, Lv, H, Sv] = ref.info("vision.attentions").shape;
        const all = ref.readF32("vision.attentions");
        const block = H * Sv * Sv;
        for (let l = 0; l < Lv; l++) {
          const a = run.vitAttention(l);
          assert.deepEqual(a.shape, [n, H, Sv, Sv]);
          const want = new Float32Array(n * block);
          for (let t = 0; t < n; t++)
            want.set(all.subarray((t * Lv + l) * block, (t * Lv + l + 1) * block), t * block);
          const d = maxAbsDiff(a.data, want);
          assert.ok(d <= 1e-4, `vit layer ${l}: max |Δ| = ${d}`);
        }
      });

      test("image token positions exact, boxes in original pixels within 0.01 px (NaN for newlines)", () => {
        const tok = run.imageTokens();
        assert.deepEqual(tok.positions, e.image_token_positions);
        const want = ref.readF32("image_layout.box_xyxy");
        assert.equal(tok.boxes.length, want.length);
        let worst = 0;
        for (let i = 0; i < want.length; i++) {
          if (Number.isNaN(want[i])) assert.ok(Number.isNaN(tok.boxes[i]), `box value ${i} should be NaN`);
          else worst = Math.max(worst, Math.abs(tok.boxes[i] - want[i]));
        }
        assert.ok(worst <= 0.01, `max |Δ| = ${worst} px`);
      });

      test("LLM relevancy (exact) rows within 1e-4·max; incremental computes", async () => {
        await computeRelevancy(out, { mode: "exact", tokens: "all", kernels, model });
        await computeRelevancy(out, { mode: "incremental", tokens: "all", kernels, model });
        const r = Run.open(out);
        try {
          const rel = r.tensor("rel.llm.exact");
          const S = e.T_full;
          assert.deepEqual(rel.shape, [e.generated_ids.length, S]);
          assertRelevancyRows(rel, ref, e.generated_ids.length, 1e-4);
          const inc = r.tensor("rel.llm.incremental");
          assert.deepEqual(inc.shape, [e.generated_ids.length, S]);
          assert.ok(inc.data.every(Number.isFinite));
        } finally {
          r.close();
        }
      });
    });
  }
}
