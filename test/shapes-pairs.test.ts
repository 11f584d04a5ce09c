/**
 * make:pairs' generator: the two images of a pair differ only where the question looks (the edited object,
 * or everything mirrored for position), their answers differ, and a pair is a pure function of (seed, index).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { test } from "node:test";
import { makePair, PAIR_KINDS } from "../src/shapes/pairs.js";
import { ROOT } from "./fixture-utils.js";

function changedPixels(a: Uint8Array, b: Uint8Array): number[] {
  const out: number[] = [];
  for (let k = 0; k < a.length / 3; k++)
    if (a[3 * k] !== b[3 * k] || a[3 * k + 1] !== b[3 * k + 1] || a[3 * k + 2] !== b[3 * k + 2]) out.push(k);
  return out;
}

test("pairs differ only in what the question asks", () => {
  for (let i = 0; i < 24; i++) {
    const p = makePair(5, i);
    assert.equal(p.kind, PAIR_KINDS[i % 4]);
    assert.notEqual(p.a.answer, p.b.answer, `pair ${i}`);
    const size = p.a.image.width;
    const changed = changedPixels(p.a.image.data, p.b.image.data);
    assert.ok(changed.length > 0, `pair ${i}: the images differ`);
    if (p.kind === "position") {
      // b is a exactly mirrored.
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++)
          for (let c = 0; c < 3; c++)
            assert.equal(
              p.b.image.data[3 * (y * size + x) + c],
              p.a.image.data[3 * (y * size + size - 1 - x) + c],
            );
      assert.deepEqual(new Set([p.a.answer, p.b.answer]), new Set(["left", "right"]));
      continue;
    }
    if (p.kind === "count") {
      assert.equal(p.a.box, null);
      continue;
    }
    // colour and shape: every changed pixel lies in the union of the two boxes of the asked-about object.
    const [a, b] = [p.a.box!, p.b.box!];
    const inside = (k: number, bx: number[]) => {
      const x = k % size;
      const y = Math.floor(k / size);
      return x >= bx[0] && x < bx[2] && y >= bx[1] && y < bx[3];
    };
    assert.ok(
      changed.every((k) => inside(k, a) || inside(k, b)),
      `pair ${i} (${p.kind}): a pixel outside the object changed`,
    );
  }
});

test("a pair is a pure function of seed and index", () => {
  const a = makePair(9, 6);
  const b = makePair(9, 6);
  assert.deepEqual(a.a.image.data, b.a.image.data);
  assert.deepEqual(a.b.image.data, b.b.image.data);
  assert.notDeepEqual(makePair(10, 6).a.image.data, a.a.image.data);
});

test("make:pairs: --help prints the usage; bad arguments fail in one line, not a stack trace", () => {
  const script = path.join(ROOT, "dist/scripts/make-pairs.js");
  const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: "utf8" });
  const help = run("--help");
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^usage: npm run make:pairs/);
  for (const [args, re] of [
    [["--bogus"], /^error: Unknown option '--bogus' \(see --help\)$/],
    [["--pairs", "x"], /^error: --pairs must be a positive integer \(got "x"\) \(see --help\)$/],
  ] as const) {
    const r = run(...args);
    assert.equal(r.status, 1);
    assert.match(r.stderr.trim(), re);
  }
});
