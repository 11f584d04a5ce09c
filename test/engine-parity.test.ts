/**
 * Fixture parity of the whole engine, through the library API that the CLI and server use, with both kernel
 * implementations: ids, pixels, vision features, every step's logits, generated ids, every LLM and ViT
 * attention probability (tolerances from the fixture README, measured float32-vs-float64 differences).
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { FIXTURES, loadFixture } from "./fixture-utils.js";
import { assertLlmAttentions, KERNEL_IMPLS, traceFixture } from "./parity-utils.js";

for (const name of FIXTURES) {
  for (const impl of KERNEL_IMPLS) {
    describe(`${name} with ${impl} kernels`, async () => {
      const fx = loadFixture(name);
      after(() => fx.tensors.close());
      const e = fx.expected;
      const t = await traceFixture(fx.dir, impl, "parity");
      const { manifest, run } = t;

      test("prompt: chat text, input_ids and image span exact", () => {
        assert.equal(manifest.chat_text, e.prompt);
        assert.deepEqual(manifest.input_ids, e.input_ids);
        const positions = run.imageTokens().positions;
        assert.deepEqual(
          positions,
          Array.from({ length: e.image_token_count }, (_, i) => e.image_token_start + i),
        );
        assert.equal(manifest.image_layout.token_count, e.image_token_count);
        const grid = manifest.image_layout.segments[0];
        assert.ok(grid.kind === "grid");
        assert.deepEqual([grid.rows, grid.cols], e.patch_grid);
      });

      test("pixel_values within 1e-5 (Pillow bicubic reproduced)", () => {
        const px = run.tensor("pixel_values");
        assert.ok(maxAbsDiff(px.data, fx.tensors.readF32("pixel_values")) <= 1e-5);
      });

      test("vision features (projector output) within 1e-3", () => {
        const d = maxAbsDiff(run.tensor("vision_features").data, fx.tensors.readF32("projector_output"));
        assert.ok(d <= 1e-3, `max |Δ| = ${d}`);
      });

      test("generated ids exact, tokens decoded per id", () => {
        assert.deepEqual(manifest.generated_ids, e.generated_ids);
        assert.deepEqual(manifest.generated_tokens, e.generated_token_texts);
        assert.equal(manifest.seq_len, e.T_full);
      });

      test("every step's logits within 1e-3", () => {
        const got = run.tensor("logits");
        assert.deepEqual(got.shape, [e.generated_ids.length, 32064]);
        const d = maxAbsDiff(got.data, fx.tensors.readF32("llm.step_logits"));
        assert.ok(d <= 1e-3, `max |Δ| = ${d}`);
      });

      test("every LLM attention probability within 1e-4", () => {
        assertLlmAttentions(t, fx.tensors.readF32("llm.attentions_full"), 1e-4);
      });

      test("every ViT attention probability within 1e-4", () => {
        const ref = fx.tensors.readF32("vision.attentions");
        const L = manifest.model.vit_layers;
        const per = ref.length / L;
        for (let l = 0; l < L; l++) {
          const d = maxAbsDiff(run.vitAttention(l).data, ref.subarray(l * per, (l + 1) * per));
          assert.ok(d <= 1e-4, `vit layer ${l}: max |Δ| = ${d}`);
        }
      });
    });
  }
}
