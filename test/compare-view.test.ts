/** The compare view's maths on hand-made inputs: image/question shares, maps as shares, their difference. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  differenceProblem,
  mapDifference,
  mapShares,
  type PictureKey,
} from "../src/interpret/views/compare-view.js";
import { imageQuestionSplit } from "../src/interpret/views/relevancy-views.js";

describe("compare view", () => {
  test("imageQuestionSplit: image tokens vs the question's words (text before the image, separators, the template tail and negatives left out)", () => {
    // Prompt of T = 8: [sys, img, img, img, q, ",", q, tail]; the answer token at p = 8 (its diagonal entry 1
    // is what handle_residual takes out: rows that already sum to 1 off the diagonal stay as they are).
    const tokens = ["<s>", "<image>", "<image>", "<image>", "▁red", ",", "▁square", "▁ASSISTANT"];
    const row = [0.05, 0.2, 0.3, -0.1, 0.25, 0.05, 0.2, 0.05, 1];
    // The normalised row is float32, so sums agree to float32 precision.
    const near = (x: number, y: number, what: string) =>
      assert.ok(Math.abs(x - y) < 1e-6, `${what}: ${x} vs ${y}`);
    const s = imageQuestionSplit(row, 8, tokens, [1, 2, 3], { to: 7 });
    near(s.image, 0.5, "image");
    near(s.question, 0.45, "question (the comma and the tail left out)");
    near(s.imageShare, 0.5 / 0.95, "share");
    const whole = imageQuestionSplit(row, 8, tokens, [1, 2, 3]);
    near(whole.question, 0.5, "without a span: up to the prompt's end");
    const none = imageQuestionSplit([0, 0, 0, 0, 0, 1], 5, tokens.slice(0, 5), [1, 2]);
    assert.equal(none.imageShare, 0.5, "nothing anywhere: undecided");
  });

  test("mapShares: non-negative part over its sum, nulls kept", () => {
    const s = mapShares([1, 3, null, -2, 0]);
    assert.deepEqual(s, [0.25, 0.75, null, 0, 0]);
    assert.deepEqual(mapShares([0, 0]), [0, 0]);
  });

  test("mapDifference: A − B on the share scale, so a map twice as strong everywhere is no different", () => {
    const a = [2, 4, 2, null];
    const b = [1, 2, 1, null];
    const same = mapDifference(a, b);
    assert.deepEqual(same.map, [0, 0, 0, null]);
    assert.equal(same.absMax, 0);
    const d = mapDifference([1, 0, 0], [0, 0, 1]);
    assert.deepEqual(d.map, [1, 0, -1]);
    assert.equal(d.absMax, 1);
    assert.throws(() => mapDifference([1], [1, 2]), /1 and 2 image tokens/);
  });

  test("differenceProblem: only the same picture through the same token boxes has a difference", () => {
    const key = (digest: string, boxes: PictureKey["boxes"], width = 20): PictureKey => ({
      digest,
      width,
      height: 10,
      boxes,
    });
    const boxes = [
      [0, 0, 10, 10],
      [10, 0, 20, 10],
    ];
    assert.equal(
      differenceProblem(
        key("x", boxes),
        key(
          "x",
          boxes.map((b) => [...b]),
        ),
      ),
      null,
    );
    assert.match(differenceProblem(key("x", boxes), key("y", boxes))!, /different pictures/);
    assert.match(
      differenceProblem(key("x", boxes), key("x", [boxes[0]]))!,
      /different image tokens \(2 vs 1\)/,
    );
    assert.match(
      differenceProblem(key("x", boxes), key("x", [boxes[0], [12, 0, 20, 10]]))!,
      /image tokens in different places/,
    );
    assert.match(differenceProblem(key("x", boxes), key("x", [boxes[0], null]))!, /different places/);
  });
});
