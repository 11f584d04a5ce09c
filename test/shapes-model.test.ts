/**
 * The embedded default model (models/llava-shapes, trained by `npm run train:shapes`) loads through the
 * ordinary loader, is the CLI's default, and answers freshly generated questions through the full trace
 * pipeline (PNG → processor → model) better than any image-blind guesser could.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { defaultModelDir } from "../src/cli/default-model.js";
import { encodePng } from "../src/hf/image-decode.js";
import { createKernels } from "../src/kernels/index.js";
import { loadModel } from "../src/models/registry.js";
import { sample } from "../src/shapes/dataset.js";
import { traceWithModel } from "../src/trace.js";
import { ROOT, tempDir } from "./fixture-utils.js";

const MODEL = path.join(ROOT, "models/llava-shapes");

describe("embedded default model", async () => {
  const model = loadModel(MODEL);
  const kernels = await createKernels("auto");
  const work = tempDir("shapes-model");
  after(async () => {
    await kernels.dispose();
    model.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test("is the default model, small, float16, llava-hf layout", () => {
    assert.equal(path.resolve(defaultModelDir()), path.resolve(MODEL));
    const bytes = fs.statSync(path.join(MODEL, "model.safetensors")).size;
    assert.ok(bytes <= 20 * 2 ** 20, `${bytes} bytes`);
    const cfg = JSON.parse(fs.readFileSync(path.join(MODEL, "config.json"), "utf8"));
    assert.equal(cfg.model_type, "llava");
    assert.equal(cfg.text_config.model_type, "llama");
    assert.equal(cfg.vision_config.model_type, "clip_vision_model");
  });

  test("answers fresh questions better than a blind guesser that knows the answer statistics", async (t) => {
    // A blind baseline: the most frequent training answer per question kind (what a model that ignores the
    // image can at best learn). The model must beat it on fresh questions (a seed used neither in training
    // nor in its evaluation), through the full trace pipeline.
    const counts = new Map<string, Map<string, number>>();
    for (let i = 0; i < 600; i++) {
      const { qa } = sample(1, i);
      const m = counts.get(qa.kind) ?? new Map<string, number>();
      m.set(qa.answer, (m.get(qa.answer) ?? 0) + 1);
      counts.set(qa.kind, m);
    }
    const blind = (kind: string) =>
      [...(counts.get(kind) ?? new Map<string, number>()).entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
    const N = 100;
    let correct = 0;
    let blindCorrect = 0;
    for (let i = 0; i < N; i++) {
      const s = sample(31337, i);
      const { manifest } = await traceWithModel(model, kernels, {
        image: { bytes: encodePng(s.scene.image), name: "scene.png" },
        prompt: s.qa.question,
        maxNewTokens: 4,
        temperature: 0,
        topP: 1,
        seed: 0,
        imageMode: "default",
        attnDtype: "f16",
        out: path.join(work, `run-${i}`),
      });
      assert.equal(manifest.generated_ids.at(-1), 2, "stops at </s>");
      if (manifest.answer === s.qa.answer) correct++;
      if (blind(s.qa.kind) === s.qa.answer) blindCorrect++;
    }
    t.diagnostic(`model ${correct}/${N}, blind guesser ${blindCorrect}/${N}`);
    // The shipped model scores 95 against the guesser's 31 here (94 % on held-out questions in training). +54
    // (85 needed) is about four standard errors (~2.3 points over 100 questions) below that: it fails a model
    // that lost much of what it learned and leaves room for small numeric differences between kernels.
    assert.ok(correct >= blindCorrect + 54, `model ${correct}/${N} vs blind ${blindCorrect}/${N}`);
  });
});
