import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { attentionRolloutRow } from "../src/interpret/attention-rollout.js";
import {
  curveArea,
  energyInMask,
  isFlat,
  patchOrder,
  pointingHit,
} from "../src/interpret/grounding-scores.js";
import { Rng } from "../src/tensor/rng.js";

describe("grounding scores", () => {
  const coverage = [0, 0.5, 1, 0, 0, 0.25];

  test("pointing game: the maximum on the object hits, off it misses", () => {
    assert.equal(pointingHit([0.1, 0.2, 0.9, 0.3, 0, 0], coverage), 1);
    assert.equal(pointingHit([0.1, 0.2, 0.3, 0.9, 0, 0], coverage), 0);
    // Any overlap counts, however small.
    assert.equal(pointingHit([0, 0, 0, 0, 0, 2], coverage), 1);
  });

  test("pointing game: a tied maximum scores the share of tied patches on the object", () => {
    assert.equal(pointingHit([1, 1, 0, 1, 0, 0], coverage), 1 / 3);
    // A flat map is a uniform pick: 3 of 6 patches touch the object.
    assert.equal(pointingHit([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], coverage), 0.5);
    // No finite maximum: nothing to point with.
    assert.equal(pointingHit([Number.NaN, Number.NaN], [1, 1]), 0);
  });

  test("flat maps", () => {
    assert.ok(isFlat([0, 0, 0]));
    assert.ok(isFlat([]));
    assert.ok(!isFlat([0, 0, 1e-9]));
  });

  test("energy in mask: coverage-weighted share of the positive mass", () => {
    // (1·0.5 + 2·1) / (1 + 2 + 1) with the negative value clipped.
    assert.equal(energyInMask([0, 1, 2, 1, -5, 0], coverage), 2.5 / 4);
    assert.equal(energyInMask([0, 0, 0, 0, -1, 0], coverage), 0);
  });

  test("patch order: by decreasing value, ties in a seeded order that is not index order", () => {
    assert.deepEqual(patchOrder([0.1, 0.9, 0.5], new Rng(1)), [1, 2, 0]);
    const flat = new Array(16).fill(0);
    const a = patchOrder(flat, new Rng(7));
    assert.deepEqual(a, patchOrder(flat, new Rng(7)));
    assert.deepEqual(
      [...a].sort((x, y) => x - y),
      Array.from({ length: 16 }, (_, i) => i),
    );
    assert.notDeepEqual(
      a,
      Array.from({ length: 16 }, (_, i) => i),
    );
    const tied = patchOrder([0, 3, 3, 3, 1], new Rng(3));
    assert.deepEqual(new Set(tied.slice(0, 3)), new Set([1, 2, 3]));
    assert.deepEqual(tied.slice(3), [4, 0]);
  });

  test("curve area: trapezoids over equal steps, normalised to [0, 1]", () => {
    assert.equal(curveArea([1, 1, 1]), 1);
    assert.equal(curveArea([1, 0]), 0.5);
    // 8 steps of a linear fall from 1 to 0.
    assert.ok(Math.abs(curveArea(Array.from({ length: 9 }, (_, k) => 1 - k / 8)) - 0.5) < 1e-12);
    assert.equal(curveArea([1, 0, 0, 0, 0]), 0.125);
    assert.throws(() => curveArea([1]), /at least two points/);
  });
});

describe("attention rollout (the benchmark's baseline, from the library)", () => {
  test("hand-computed: ½·A + ½·I per layer, last layer first; rows stay distributions", () => {
    const A = Float32Array.from([1, 0, 0.25, 0.75]);
    assert.deepEqual(Array.from(attentionRolloutRow([A], 1, 2, 1)), [0.125, 0.875]);
    assert.deepEqual(Array.from(attentionRolloutRow([A, A], 1, 2, 1)), [0.234375, 0.765625]);
    // Two heads are averaged.
    const B = Float32Array.from([1, 0, 0.75, 0.25, 1, 0, 0.25, 0.75]);
    assert.deepEqual(Array.from(attentionRolloutRow([B], 2, 2, 1)), [0.25, 0.75]);
  });
});
