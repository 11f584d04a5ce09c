/** The packed store of windowed attention: lossless for probabilities that are zero outside the windows. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { packedWidth, packWindowed, unpackWindowed } from "../src/run/window-attention.js";

test("pack → unpack rebuilds [H, N, N] exactly; rows keep their window's keys in patch order", () => {
  const windows = Int32Array.from([0, 0, 1, 2, 1, 1, 0, 2]);
  const H = 2;
  const N = windows.length;
  const dense = new Float32Array(H * N * N);
  for (let h = 0; h < H; h++)
    for (let i = 0; i < N; i++)
      for (let j = 0; j < N; j++)
        if (windows[i] === windows[j]) dense[(h * N + i) * N + j] = 1 + h * 100 + i * 10 + j;
  assert.equal(packedWidth(windows), 3);
  const packed = packWindowed(dense, H, windows);
  assert.equal(packed.length, H * N * 3);
  // Row 3 (window 2 = patches 3 and 7) of head 1: two keys, then padding.
  assert.deepEqual(Array.from(packed.subarray((1 * N + 3) * 3, (1 * N + 3) * 3 + 3)), [
    1 + 100 + 33,
    1 + 100 + 37,
    0,
  ]);
  assert.deepEqual(unpackWindowed(packed, H, windows), dense);
});

test("sizes that do not fit the windows are refused", () => {
  const windows = [0, 1, 1];
  assert.throws(() => packWindowed(new Float32Array(5), 1, windows), /not \[1, 3, 3\]/);
  assert.throws(() => unpackWindowed(new Float32Array(5), 1, windows), /not \[1, 3, 2\] for its windows/);
  assert.throws(() => packedWidth([0, -1]), /patch 1 has window -1/);
});
