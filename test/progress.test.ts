/** Progress on a non-terminal stderr: a line per stage change and per tenth of the work, not per item. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { stderrProgress } from "../src/cli/progress.js";

test("non-terminal progress prints stage changes and tenths only", () => {
  const lines: string[] = [];
  const write = process.stderr.write;
  const tty = process.stderr.isTTY;
  Object.defineProperty(process.stderr, "isTTY", { value: false, configurable: true });
  process.stderr.write = ((chunk: string) => {
    lines.push(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    const progress = stderrProgress();
    progress("load", 0, 1);
    progress("load", 1, 1);
    for (let i = 0; i <= 50; i++) progress("evaluate", i, 50);
  } finally {
    process.stderr.write = write;
    Object.defineProperty(process.stderr, "isTTY", { value: tty, configurable: true });
  }
  assert.deepEqual(lines, [
    "[load] 0/1\n",
    "[load] 1/1\n",
    ...Array.from({ length: 11 }, (_, k) => `[evaluate] ${k * 5}/50\n`),
  ]);
});
