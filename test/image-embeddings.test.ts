import * as assert from "node:assert/strict";
import { test } from "node:test";
import {
  gatherImageFeaturesGrad,
  imageTokenPositions,
  scatterImageFeatures,
} from "../src/models/image-embeddings.js";

const IMG = 9;

test("imageTokenPositions: every image token, in order", () => {
  assert.deepEqual(imageTokenPositions([1, IMG, IMG, 4, IMG], IMG), [1, 2, 4]);
  assert.deepEqual(imageTokenPositions([1, 2], IMG), []);
});

test("scatterImageFeatures: row j lands on the j-th image token, the rest untouched", () => {
  const D = 2;
  const embeds = Float32Array.from([0, 0, 1, 1, 2, 2, 3, 3]);
  const out = scatterImageFeatures(embeds, [1, 3], Float32Array.from([10, 11, 30, 31]), 2, D);
  assert.equal(out, embeds);
  assert.deepEqual([...out], [0, 0, 10, 11, 2, 2, 30, 31]);
});

test("scatterImageFeatures: too many or too few image tokens is one error naming both counts", () => {
  const f = new Float32Array(4);
  assert.throws(() => scatterImageFeatures(new Float32Array(8), [0, 1, 2], f, 2, 2), {
    message: "prompt has 3 image tokens but the image gives 2 features",
  });
  assert.throws(() => scatterImageFeatures(new Float32Array(8), [0], f, 2, 2), {
    message: "prompt has 1 image tokens but the image gives 2 features",
  });
});

test("gatherImageFeaturesGrad: the rows at the image positions, zero outside the window", () => {
  const D = 2;
  // Rows 2…4 of the sequence (from = 2); image tokens at 1 (cached prefix), 3 and 4.
  const dEmbeds = Float32Array.from([20, 21, 30, 31, 40, 41]);
  assert.deepEqual([...gatherImageFeaturesGrad([1, 3, 4], dEmbeds, D, 2)], [0, 0, 30, 31, 40, 41]);
  assert.deepEqual([...gatherImageFeaturesGrad([0, 2], dEmbeds, D)], [20, 21, 40, 41]);
});
