/** The batch's progress line: ETA from the computed items only (resumed items cost nothing), readable. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { etaSeconds, formatDuration } from "../src/cli/progress.js";

test("ETA: mean time of the computed items × items left; none before the first computed item", () => {
  assert.equal(etaSeconds(0, 0, 10), null);
  assert.equal(etaSeconds(6, 3, 10), 20);
  assert.equal(formatDuration(42.4), "42 s");
  assert.equal(formatDuration(185), "3 min 05 s");
  assert.equal(formatDuration(3720), "1 h 02 min");
});
