/**
 * Stepwise KV-cache decoding equals a full re-run over the final sequence: logits of every step and every
 * attention row. Also the prefill hidden states and vision hidden states against the fixture.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { generate } from "../src/generate/generate.js";
import { createKernels } from "../src/kernels/index.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { sequentialPositions } from "../src/models/positions.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { FIXTURES, fixturePixels, gridLayout, loadFixture } from "./fixture-utils.js";

for (const name of FIXTURES) {
  describe(`${name}: KV cache`, async () => {
    const fx = loadFixture(name);
    const e = fx.expected;
    const model = LlavaModel.load(fx.dir);
    const kernels = await createKernels("ts");
    after(async () => {
      model.close();
      fx.tensors.close();
      await kernels.dispose();
    });
    const image = await model.encodeImage(kernels, fixturePixels(fx));
    const steps = await generate(model, kernels, e.input_ids, image, gridLayout(model), {
      maxNewTokens: 8,
      temperature: 0,
      topP: 1,
      seed: 0,
      stopIds: [],
    });
    const S = steps.seqLen;
    const stepAttn = steps.llmAttn.takeAll();
    const seq = [...e.input_ids, ...steps.generatedIds].slice(0, S);
    const T = e.input_ids.length;
    const rows = Array.from({ length: steps.generatedIds.length }, (_, k) => T - 1 + k);
    const full = await model.decoder.forward(
      kernels,
      model.buildInputsEmbeds(seq, image),
      sequentialPositions(0, S),
      model.decoder.newCache(S),
      {
        logitRows: rows,
      },
    );
    const V = model.config.text.vocabSize;

    test("logits of every step equal the full forward's rows", () => {
      steps.stepLogits.forEach((l, k) => {
        const d = maxAbsDiff(l, full.logits.subarray(k * V, (k + 1) * V));
        assert.ok(d <= 1e-4, `step ${k}: max |Δ| = ${d}`);
      });
    });

    test("stepwise attention rows equal the full forward's causal attention", () => {
      full.attentions.forEach((a, l) => {
        const d = maxAbsDiff(stepAttn[l], a);
        assert.ok(d <= 1e-5, `layer ${l}: max |Δ| = ${d}`);
      });
    });

    test("vision hidden states and prefill hidden states match the fixture", async () => {
      const vh = fx.tensors.readF32("vision.hidden_states");
      const per = vh.length / image.vision.hiddenStates.length;
      image.vision.hiddenStates.forEach((h, i) => {
        assert.ok(maxAbsDiff(h, vh.subarray(i * per, (i + 1) * per)) <= 1e-3, `vision hidden state ${i}`);
      });
      const pre = await model.decoder.forward(
        kernels,
        model.buildInputsEmbeds(e.input_ids, image),
        sequentialPositions(0, T),
        model.decoder.newCache(T),
        {
          collectHidden: true,
        },
      );
      const ref = fx.tensors.readF32("llm.prefill_hidden_states");
      const hs = pre.hiddenStates!;
      const per2 = ref.length / hs.length;
      assert.equal(hs.length, model.config.text.numLayers + 1);
      hs.forEach((h, i) => {
        const d = maxAbsDiff(h, ref.subarray(i * per2, (i + 1) * per2));
        assert.ok(d <= 1e-3, `prefill hidden state ${i}: max |Δ| = ${d}`);
      });
    });
  });
}
