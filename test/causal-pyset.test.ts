/**
 * PySet iteration order, derived by hand from CPython's set table rules (hash(i) = i, 8-slot start, linear run
 * of 10 slots when it fits, then i = 5i + 1 + (perturb >>= 5), resize at fill·5 ≥ mask·3 to the smallest power
 * of two above 4·used, deleted slots left as dummies).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { combinations, PySet } from "../src/interpret/causal/py-set.js";

describe("PySet", () => {
  test("small ints iterate by slot = value & mask", () => {
    assert.deepEqual(PySet.of(3, 1, 2).toArray(), [1, 2, 3]);
    // 9 & 7 = 1: slot 1, before 2 in slot 2.
    assert.deepEqual(PySet.of(2, 9).toArray(), [9, 2]);
  });

  test("a collision in the 8-slot table jumps to slot (5·i + 1) & 7", () => {
    // 5 → slot 5; 13 → slot 5 taken, no linear run fits (5 + 9 > 7), perturb 13 >> 5 = 0 → slot 26 & 7 = 2.
    assert.deepEqual(PySet.of(5, 13).toArray(), [13, 5]);
    // The other insertion order: 13 → 5, 5 → 2.
    assert.deepEqual(PySet.of(13, 5).toArray(), [5, 13]);
  });

  test("the fifth insert grows the table to 32 slots", () => {
    // 8 → slot 0; 16 → 0 taken → 1; 24 → 0, 1 taken → 6; 32 → 0 taken, perturb 32 >> 5 = 1 → slot 2;
    // 1 → 1, 6 taken → 7. Fill 5 → resize to 32 slots (> 4·5), re-inserted in slot order 8, 16, 32, 24, 1,
    // each at its own slot (32 wraps to 0).
    const s = PySet.of(8, 16, 24, 32, 1);
    assert.deepEqual(s.toArray(), [32, 1, 8, 16, 24]);
  });

  test("a deleted slot stays a dummy and is reused by the next colliding key", () => {
    const s = PySet.of(1, 2, 3);
    s.discard(2);
    // 10 → slot 2 is a dummy; slot 2 + 9 > 7 so no run; perturb 10 >> 5 = 0 → slot 11 & 7 = 3 (taken) → next
    // probe 16 & 7 = 0 is empty: the remembered dummy (slot 2) is used.
    s.add(10);
    assert.deepEqual(s.toArray(), [1, 10, 3]);
    assert.equal(s.size, 3);
    assert.ok(s.has(10) && !s.has(2));
  });

  test("copy rebuilds at its own size, which can reorder", () => {
    // 24 elements: built one by one the table grows 8 → 32 → 128 (sorted order); copy sizes for 2·24 → 64 slots,
    // where 64…71 wrap onto slots 0…7 and are probed further on.
    const items = [...Array.from({ length: 20 }, (_, i) => i + 10), 64, 65, 66, 67];
    const s = PySet.from(items);
    assert.deepEqual(
      s.toArray(),
      [...items].sort((a, b) => a - b),
    );
    const c = s.copy();
    assert.equal(c.size, s.size);
    assert.deepEqual(c.toArray(), [64, 65, 66, 67, ...Array.from({ length: 20 }, (_, i) => i + 10)]);
  });

  test("set algebra keeps membership semantics", () => {
    const a = PySet.from([1, 2, 3, 4, 5, 40]);
    const b = PySet.from([4, 5, 6, 40]);
    assert.deepEqual(new Set(a.minus(b)), new Set([1, 2, 3]));
    assert.deepEqual(new Set(a.intersect(b)), new Set([4, 5, 40]));
    assert.deepEqual(new Set(a.union(b)), new Set([1, 2, 3, 4, 5, 6, 40]));
    assert.deepEqual(new Set(a.without(1, 40, 99)), new Set([2, 3, 4, 5]));
    const c = a.copy();
    c.differenceUpdate(b);
    assert.deepEqual(new Set(c), new Set([1, 2, 3]));
    assert.throws(() => a.add(-1), RangeError);
  });
});

describe("combinations", () => {
  test("lexicographic by position, like itertools", () => {
    assert.deepEqual(
      [...combinations([7, 3, 5], 2)],
      [
        [7, 3],
        [7, 5],
        [3, 5],
      ],
    );
    assert.deepEqual([...combinations([1, 2, 3, 4], 3)].length, 4);
    assert.deepEqual([...combinations([1], 2)], []);
    assert.deepEqual([...combinations([1, 2], 0)], [[]]);
  });
});
