/** The compare view's maths on hand-made inputs: image/question shares, maps as shares, their difference. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  differenceProblem,
  mapDifference,
  mapShares,
  type PictureKey,
  relevancyShare,
} from "../src/interpret/views/compare-view.js";

const close = (a: number, b: number, what: string) =>
  assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} vs ${b}`);

describe("compare view", () => {
  test("relevancyShare: image tokens vs the question text after the image (text before it and negatives left out)", () => {
    // Prompt of T = 7: [sys, img, img, img, q, q, q]; the answer's own position (7) is past T.
    const r = [5, 0.2, 0.3, -0.1, 0.25, 0.25, 0, 1];
    const s = relevancyShare(r, [1, 2, 3], 7);
    close(s.image, 0.5, "image");
    close(s.question, 0.5, "question");
    close(s.imageShare, 0.5, "share");
    const t = relevancyShare([0, 0.9, 0, 0, 0.1, 0, 0], [1, 2, 3], 7);
    close(t.imageShare, 0.9, "image-heavy share");
    assert.equal(relevancyShare([0, 0, 0, 0, 0], [1, 2], 5).imageShare, 0.5, "nothing anywhere: undecided");
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
