/**
 * LLaVA-NeXT / OneVision beyond the fixture's default path: newer transformers' weight names, the image modes
 * (pad, resize) through trace with layouts that map back to the picture, the layout a run stores driving the
 * encoder again, clear refusals (no layout, a layout from elsewhere), the image-side backward against finite
 * differences, and causal nodes without separators.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { seededRandom } from "../src/generate/sampling.js";
import { decodeImage } from "../src/hf/image-decode.js";
import { SafetensorsFile, writeSafetensors } from "../src/hf/safetensors.js";
import { explainRun } from "../src/interpret/causal/explain-run.js";
import { createKernels } from "../src/kernels/index.js";
import { layoutBoxes, layoutProblem, separatorTokens } from "../src/models/image-layout.js";
import { loadModel, loadTextProcessor, readModelSummary } from "../src/models/registry.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { traceWithModel } from "../src/trace.js";
import { ROOT, tempDir } from "./fixture-utils.js";
import { greedyTrace } from "./parity-utils.js";

const NEXT = path.join(ROOT, "test/fixtures/llava-next-tiny-clip-llama");
const OV = path.join(ROOT, "test/fixtures/llava-onevision-tiny-qwen2");

/** A copy of a checkpoint folder with its tensors renamed to newer transformers' `model.*` names. */
function withNewNames(src: string): string {
  const dir = tempDir("anyres-names");
  for (const f of fs.readdirSync(src))
    if (f !== "model.safetensors") fs.copyFileSync(path.join(src, f), path.join(dir, f));
  const st = SafetensorsFile.open(path.join(src, "model.safetensors"));
  const rename = (n: string) =>
    n === "image_newline"
      ? "model.image_newline"
      : n === "language_model.lm_head.weight"
        ? "lm_head.weight"
        : n
            .replace(/^language_model\.model\./, "model.language_model.")
            .replace(/^(vision_tower|multi_modal_projector)\./, "model.$1.");
  const tensors = [...st.tensors.values()].map((t) => ({
    name: rename(t.name),
    dtype: t.dtype,
    shape: t.shape,
    data: new Uint8Array(st.readBytes(t.name)),
  }));
  st.close();
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  return dir;
}

describe("any-resolution models", async () => {
  const kernels = await createKernels("ts");
  const ref = SafetensorsFile.open(path.join(OV, "expected.safetensors"));
  const dirs: string[] = [];
  after(async () => {
    ref.close();
    await kernels.dispose();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  test("config summaries and the text processor without weights (what the server shows before loading)", () => {
    assert.deepEqual(readModelSummary(NEXT), {
      modelType: "llava_next",
      textModelType: "llama",
      visionModelType: "clip_vision_model",
      llmLayers: 4,
      llmHeads: 4,
      vitLayers: 3,
      imageTokenId: 32000,
    });
    assert.equal(readModelSummary(OV).modelType, "llava_onevision");
    assert.equal(loadTextProcessor(OV).imageToken, "<image>");
  });

  test("newer transformers' weight names (model.image_newline, model.language_model.*) load the same model", async () => {
    const dir = withNewNames(OV);
    dirs.push(dir);
    const model = loadModel(dir);
    try {
      const img = await decodeImage(fs.readFileSync(path.join(OV, "image.png")), "image.png");
      const pre = model.preprocess(img, "default");
      const enc = await model.encodeImage(kernels, pre.pixels, { layout: pre.layout });
      const d = maxAbsDiff(enc.features, ref.readF32("image_features.packed"));
      assert.ok(d <= 1e-3, `max |Δ| = ${d}`);
    } finally {
      model.close();
    }
  });

  for (const dir of [NEXT, OV]) {
    test(`${path.basename(dir)}: pad and resize modes give valid layouts whose boxes lie on the picture`, async () => {
      const model = loadModel(dir);
      try {
        const img = await decodeImage(fs.readFileSync(path.join(dir, "image.png")), "image.png");
        for (const mode of ["pad", "resize"] as const) {
          const pre = model.preprocess(img, mode);
          assert.equal(layoutProblem(pre.layout), null, mode);
          assert.deepEqual(pre.layout.original_size, [img.width, img.height]);
          const enc = await model.encodeImage(kernels, pre.pixels, { layout: pre.layout });
          assert.equal(enc.count, pre.layout.token_count, mode);
          // Base cells cover the picture: their union is exactly [0, 0, W, H] (the padding maps outside it).
          const boxes = layoutBoxes(pre.layout);
          const g = (pre.layout.segments[0] as { rows: number }).rows;
          let x1 = 0;
          let y1 = 0;
          for (let i = 0; i < g * g; i++) {
            x1 = Math.max(x1, boxes[i * 4 + 2]);
            y1 = Math.max(y1, boxes[i * 4 + 3]);
          }
          assert.ok(Math.abs(x1 - img.width) < 1e-9 && Math.abs(y1 - img.height) < 1e-9, mode);
        }
      } finally {
        model.close();
      }
    });
  }

  test("encoding needs the layout, and refuses one this processor did not write", async () => {
    const model = loadModel(NEXT);
    try {
      const img = await decodeImage(fs.readFileSync(path.join(NEXT, "image.png")), "image.png");
      const pre = model.preprocess(img, "default");
      await assert.rejects(model.encodeImage(kernels, pre.pixels), /needs its layout/);
      const other = { ...pre.layout, original_size: [90, 160] as [number, number] };
      await assert.rejects(
        model.encodeImage(kernels, pre.pixels, { layout: other }),
        /not one this model's processor writes/,
      );
    } finally {
      model.close();
    }
  });

  test("causal explanations pick image nodes among located tokens only (newline separators excluded)", async () => {
    const model = loadModel(NEXT);
    const root = tempDir("anyres-causal");
    dirs.push(root);
    const out = path.join(root, "run");
    try {
      const { manifest } = await traceWithModel(
        model,
        kernels,
        greedyTrace(path.join(NEXT, "image.png"), "What is shown?", 4, out),
      );
      const sep = separatorTokens(manifest.image_layout);
      const start = manifest.input_ids.indexOf(32000);
      const newlines = new Set(sep.flatMap((s, i) => (s ? [start + i] : [])));
      assert.equal(newlines.size, 6);
      const { doc } = await explainRun(out, { token: 0, jobs: 1 });
      for (const h of doc.heads) {
        const picked = h.relevant_image_tokens.filter((p: number) => newlines.has(p));
        assert.deepEqual(picked, [], `head ${h.head} chose separator positions`);
      }
    } finally {
      model.close();
    }
  });

  for (const dir of [NEXT, OV]) {
    test(`${path.basename(dir)}: image backward (packing, projector, every tile's tower) matches finite differences`, async () => {
      const model = loadModel(dir);
      try {
        const img = await decodeImage(fs.readFileSync(path.join(dir, "image.png")), "image.png");
        const pre = model.preprocess(img, "default");
        const enc = await model.encodeImage(kernels, pre.pixels, { layout: pre.layout, tape: true });
        const rnd = seededRandom(3);
        const y = Float32Array.from({ length: enc.features.length }, () => rnd() - 0.5);
        const loss = async (px: Float32Array) => {
          const e = await model.encodeImage(
            kernels,
            { data: px, shape: pre.pixels.shape },
            { layout: pre.layout },
          );
          let s = 0;
          for (let i = 0; i < y.length; i++) s += e.features[i] * y[i];
          return s;
        };
        const layers: number[] = [];
        const n = pre.pixels.shape[0];
        const Hv = model.info.vitHeads;
        const { dPixels } = await model.imageBackward(kernels, enc, y, {
          pixels: true,
          onLayer: (l, dP, pr) => {
            layers.push(l);
            // Every pass's layer at once, pass-major: the probabilities are the run's vit_attn.{l} [n, H, Sv, Sv].
            assert.deepEqual(pr, enc.towerAttentions[l].data);
            assert.equal(dP.length, pr.length);
          },
        });
        assert.ok(dPixels && dPixels.length === pre.pixels.data.length);
        // Once per layer below the selected hidden state, from the top, for all n passes together.
        const Lv = model.info.vitLayers;
        const f = model.info.visionFeatureLayer;
        const top = f < 0 ? Lv + 1 + f : f;
        assert.deepEqual(
          layers,
          Array.from({ length: top }, (_, i) => top - 1 - i),
        );
        assert.equal(
          enc.towerAttentions[0].data.length,
          n * Hv * model.towerGeometry(pre.layout)!.seqLen ** 2,
        );
        const v = Float32Array.from({ length: dPixels.length }, () => rnd() - 0.5);
        const eps = 1e-2;
        const plus = pre.pixels.data.map((x, i) => x + eps * v[i]);
        const minus = pre.pixels.data.map((x, i) => x - eps * v[i]);
        const fd = ((await loss(plus)) - (await loss(minus))) / (2 * eps);
        let an = 0;
        for (let i = 0; i < v.length; i++) an += dPixels[i] * v[i];
        assert.ok(
          Math.abs(fd - an) <= 1e-2 * Math.abs(fd) + 1e-3,
          `finite differences ${fd} vs backward ${an}`,
        );
      } finally {
        model.close();
      }
    });
  }
});
