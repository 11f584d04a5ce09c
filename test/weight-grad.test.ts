/**
 * Weight gradients of the training step (cross-entropy on answer tokens back through decoder, projector and
 * vision tower) against central finite differences of the loss, for entries of every parameter tensor; with
 * the tower frozen, the other gradients are unchanged and the tower gets none.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createKernels } from "../src/kernels/index.js";
import { WeightGradients } from "../src/models/gradients.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { trainingStep } from "../src/train/step.js";
import { gridLayout } from "./fixture-utils.js";
import { tinyInputIds, tinyPixelValues, writeTinyCheckpoint } from "./tiny-model.js";

const CASES = [
  { text: "llama", vision: "clip", untied: true },
  { text: "gemma", vision: "siglip", untied: false },
] as const;

for (const spec of CASES) {
  describe(`weight gradients: ${spec.text} + ${spec.vision}${spec.untied ? " (untied head)" : " (tied head)"}`, () => {
    test("every parameter tensor matches finite differences of the loss", async () => {
      const dir = writeTinyCheckpoint({
        text: spec.text,
        vision: spec.vision,
        untied: spec.untied,
        strategy: "default",
      });
      const model = LlavaModel.load(dir);
      const kernels = await createKernels("ts");
      const P = model.imageTokenCount;
      // Two question turns, so the loss spans two separate answers as in multi-turn training.
      const prompt = tinyInputIds(P);
      const T = prompt.length;
      const ex = {
        inputIds: [...prompt, 345, 678, 2, 101, 202, 303, 456, 2],
        answerSpans: [
          [T, T + 3],
          [T + 6, T + 8],
        ] as [number, number][],
        pixels: tinyPixelValues(),
        layout: gridLayout(model),
      };
      const grads = new WeightGradients();
      await trainingStep(model, kernels, ex, grads);
      const loss = async () => (await trainingStep(model, kernels, ex, null)).loss;
      const params = model.weights.loadedTensors();
      assert.ok(params.length > 30, "all tensors loaded");
      let checked = 0;
      for (const p of params) {
        // Tensors the loss does not reach (vision layers above the feature layer) get no gradient array: their
        // finite differences must then be zero too.
        const g = grads.get(p.data) ?? new Float32Array(p.data.length);
        let gmax = 0;
        for (const v of g) gmax = Math.max(gmax, Math.abs(v));
        // Three entries per tensor: the largest-gradient one and two spread indices.
        let big = 0;
        for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[big])) big = i;
        for (const i of [big, Math.floor(g.length / 3), g.length - 1]) {
          const w0 = p.data[i];
          const central = async (h: number) => {
            p.data[i] = Math.fround(w0 + h);
            const up = await loss();
            const hUp = p.data[i] - w0;
            p.data[i] = Math.fround(w0 - h);
            const down = await loss();
            const hDown = w0 - p.data[i];
            p.data[i] = w0;
            return (up - down) / (hUp + hDown);
          };
          // One Richardson step cancels the h² term; float32 loss noise (~1e-7) over 2h = 1e-2 stays ≪ tol.
          const fd = (4 * (await central(5e-3)) - (await central(1e-2))) / 3;
          const tol = 2e-3 * gmax + 2e-4;
          assert.ok(
            Math.abs(fd - g[i]) <= tol,
            `${p.name}[${i}]: analytic ${g[i]}, finite difference ${fd} (tol ${tol})`,
          );
          checked++;
        }
      }
      assert.ok(checked > 90);

      // A frozen tower: the same projector and language-model gradients, none for the tower.
      const frozen = new WeightGradients();
      await trainingStep(model, kernels, ex, frozen, 1, { trainVision: false });
      let tower = 0;
      for (const p of params) {
        const g = frozen.get(p.data);
        if (p.name.startsWith("vision.")) {
          tower++;
          assert.ok(!g || g.every((v) => v === 0), `${p.name} got a gradient with the tower frozen`);
        } else {
          assert.deepEqual(g, grads.get(p.data), `${p.name}: gradient changed by freezing the tower`);
        }
      }
      assert.ok(tower > 10, "the tower's tensors were checked");
      await kernels.dispose();
      model.close();
    });
  });
}
