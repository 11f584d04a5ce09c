/**
 * A trace keeps the language model's prefill attention and the tower's attention past a memory budget in
 * unlinked files until the run is written, and assembles each layer's tensor only when the writer reaches it.
 * With nothing kept in memory the run must be byte-identical to one kept all in memory, for every family's
 * tower geometry (one pass, LLaVA-NeXT's tiles, Qwen2-VL's patch sequence, Qwen2.5-VL's windowed blocks) and
 * both stored dtypes (the parity tests check the values themselves against the references); a TMPDIR the
 * files cannot go in fails in one line and writes nothing.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import type { AttnDtype } from "../src/contracts/lists.js";
import { createKernels } from "../src/kernels/index.js";
import { loadModel } from "../src/models/registry.js";
import { TENSORS_FILE } from "../src/run/run-dir.js";
import { type TraceRequest, traceWithModel } from "../src/trace.js";
import { ROOT, tempDir } from "./fixture-utils.js";

const work = tempDir("trace-spill");
after(() => fs.rmSync(work, { recursive: true, force: true }));

const kernels = await createKernels("ts");
after(() => kernels.dispose());

function request(dir: string, out: string, attnDtype: AttnDtype): TraceRequest {
  const e = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8"));
  return {
    image: { bytes: fs.readFileSync(path.join(dir, "image.png")), name: "image.png" },
    prompt: e.question,
    maxNewTokens: 4,
    temperature: 0,
    topP: 1,
    seed: 0,
    imageMode: "default",
    attnDtype,
    out: path.join(work, out),
  };
}

const cases: [string, AttnDtype][] = [
  ["llava-tiny-llama", "f32"],
  ["llava-tiny-llama", "f16"],
  ["llava-next-tiny-clip-llama", "f32"],
  ["qwen2-vl-tiny", "f32"],
  ["qwen2.5-vl-tiny", "f16"],
];

describe("trace: attention waiting in files until the run is written", () => {
  for (const [name, dtype] of cases) {
    test(`${name}, ${dtype}: the same run bytes with nothing kept in memory`, async () => {
      const dir = path.join(ROOT, "test/fixtures", name);
      const model = loadModel(dir);
      try {
        const kept = `${name}-${dtype}-kept`;
        const spilled = `${name}-${dtype}-spilled`;
        await traceWithModel(model, kernels, {
          ...request(dir, kept, dtype),
          attentionMemoryBytes: Number.POSITIVE_INFINITY,
        });
        await traceWithModel(model, kernels, { ...request(dir, spilled, dtype), attentionMemoryBytes: 0 });
        const a = fs.readFileSync(path.join(work, kept, TENSORS_FILE));
        const b = fs.readFileSync(path.join(work, spilled, TENSORS_FILE));
        assert.ok(a.length > 0);
        assert.ok(a.equals(b), `${TENSORS_FILE} differs`);
      } finally {
        model.close();
      }
    });
  }

  test("a TMPDIR the attention cannot wait in fails in one line naming it, and no run is written", async () => {
    const dir = path.join(ROOT, "test/fixtures", "llava-tiny-llama");
    const model = loadModel(dir);
    const tmp = process.env.TMPDIR;
    const missing = path.join(work, "no-such-tmp");
    process.env.TMPDIR = missing;
    try {
      await assert.rejects(
        traceWithModel(model, kernels, { ...request(dir, "never-written", "f32"), attentionMemoryBytes: 0 }),
        (e: Error) =>
          e.message.startsWith(`${missing}: cannot create a file for the tower's attention here (`) &&
          !e.message.includes("\n"),
      );
    } finally {
      if (tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmp;
      model.close();
    }
    assert.deepEqual(
      fs.readdirSync(work).filter((f) => f.includes("never-written")),
      [],
      "no run and no temporary run folder",
    );
  });
});
