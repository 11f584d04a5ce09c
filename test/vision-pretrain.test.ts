/**
 * Stage-1 vision training: per-patch labels follow the generator's masks, and the patch-classification loss's
 * gradients (head and every vision-tower tensor) match finite differences.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createKernels } from "../src/kernels/index.js";
import { WeightGradients } from "../src/models/gradients.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { objectPatchCoverage, sample } from "../src/shapes/dataset.js";
import { COLOR_NAMES, SHAPE_NAMES } from "../src/shapes/scene.js";
import {
  createPatchHead,
  PATCH_LABEL_MIN_COVERAGE,
  type PatchExample,
  patchLabels,
  patchPretrainStep,
} from "../src/train/vision-pretrain.js";
import { tinyPixelValues, writeTinyCheckpoint } from "./tiny-model.js";

describe("vision pretraining (stage 1)", () => {
  test("each patch is labelled with the object covering most of it, or background", () => {
    let objectPatches = 0;
    for (let i = 0; i < 60; i++) {
      const { scene } = sample(21, i);
      const labels = patchLabels(scene);
      const cover = scene.objects.map((_, k) => objectPatchCoverage(scene, k));
      for (let g = 0; g < labels.shape.length; g++) {
        const best = cover.reduce((b, c, k) => (b < 0 || c[g]! > cover[b]![g]! ? k : b), -1);
        if (best < 0 || cover[best]![g]! < PATCH_LABEL_MIN_COVERAGE) {
          assert.equal(labels.shape[g], 0);
          assert.equal(labels.color[g], 0);
          continue;
        }
        objectPatches++;
        const o = scene.objects[best]!;
        assert.equal(labels.shape[g], 1 + SHAPE_NAMES.indexOf(o.shape));
        assert.equal(labels.color[g], 1 + COLOR_NAMES.indexOf(o.color));
      }
    }
    assert.ok(objectPatches > 300, `${objectPatches} object patches`);
  });

  test("gradients of the head and of every vision tensor match finite differences", async () => {
    const model = LlavaModel.load(
      writeTinyCheckpoint({ text: "llama", vision: "clip", untied: true, featureLayer: -1 }),
    );
    const kernels = await createKernels("ts");
    const P = model.imageTokenCount;
    const ex: PatchExample = {
      pixels: tinyPixelValues(),
      shapeLabels: Uint8Array.from({ length: P }, (_, i) => (i * 7) % 5),
      colorLabels: Uint8Array.from({ length: P }, (_, i) => (i * 3) % 7),
    };
    const head = createPatchHead(model.config.vision.hiddenSize, 3);
    const grads = new WeightGradients();
    await patchPretrainStep(model, kernels, head, ex, grads);
    const loss = async () => (await patchPretrainStep(model, kernels, head, ex, null)).loss;
    const tensors = [
      ...model.weights.loadedTensors().filter((t) => t.name.startsWith("vision")),
      ...head.tensors,
    ];
    let checked = 0;
    for (const t of tensors) {
      const g = grads.get(t.data);
      if (t.name.includes("post_layernorm")) {
        assert.equal(g, undefined, `${t.name} is not on the loss's path`);
        continue;
      }
      assert.ok(g, `${t.name} has a gradient`);
      let norm = 0;
      for (const v of g) norm += v * v;
      norm = Math.sqrt(norm);
      // k biases cannot change a softmax over keys: their gradient is zero up to rounding.
      if (t.name.includes("k_proj.bias")) {
        assert.ok(norm < 1e-5, `${t.name}: ${norm}`);
        continue;
      }
      // Directional derivative along the gradient: (L(w + εu) − L(w − εu)) / 2ε must equal |g|.
      const eps = 1e-3 / norm;
      const saved = t.data.slice();
      const at = async (s: number) => {
        for (let i = 0; i < saved.length; i++) t.data[i] = saved[i]! + (s * eps * g[i]!) / norm;
        return loss();
      };
      const fd = ((await at(1)) - (await at(-1))) / (2 * eps);
      t.data.set(saved);
      assert.ok(Math.abs(fd - norm) <= 0.03 * norm, `${t.name}: analytic ${norm}, finite difference ${fd}`);
      checked++;
    }
    assert.ok(checked > 20, `${checked} tensors checked`);
    await kernels.dispose();
    model.close();
  });
});
