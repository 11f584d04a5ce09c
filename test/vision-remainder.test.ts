/**
 * A tower whose image size is not a multiple of the patch size (SigLIP so400m: 384 px, patch 14 → 27×27)
 * ignores the pixels past the last whole patch, like a stride-p convolution without padding.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { createKernels } from "../src/kernels/index.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { tinyPixels, writeTinyCheckpoint } from "./tiny-model.js";

test("image size not a multiple of the patch: the remainder is ignored", async () => {
  const dir = writeTinyCheckpoint({ text: "qwen2", vision: "siglip", strategy: "full", featureLayer: -1 });
  const kernels = await createKernels("ts");
  const base = LlavaModel.load(dir);
  const S = base.config.vision.imageSize;
  const p = base.config.vision.patchSize;
  const px = tinyPixels();
  const ref = await base.encodeImage(kernels, { data: px, shape: [3, S, S] });
  base.close();
  // The same weights, with image_size grown by p − 1 pixels: same grid, same positions.
  const cfgFile = path.join(dir, "config.json");
  const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8"));
  const S2 = S + p - 1;
  cfg.vision_config.image_size = S2;
  fs.writeFileSync(cfgFile, JSON.stringify(cfg));
  const grown = LlavaModel.load(dir);
  assert.equal(grown.imageTokenCount, ref.count);
  const big = new Float32Array(3 * S2 * S2).fill(7); // remainder pixels: must not matter
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < S; y++) big.set(px.subarray((c * S + y) * S, (c * S + y + 1) * S), (c * S2 + y) * S2);
  const got = await grown.encodeImage(kernels, { data: big, shape: [3, S2, S2] });
  assert.ok(maxAbsDiff(got.features, ref.features) === 0);
  grown.close();
  await kernels.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
