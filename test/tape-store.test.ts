/**
 * The backward tape's storage: `LayerTapes` keeps layers in memory up to a budget and the rest in an unlinked
 * temporary file, reads them back unchanged and lets go of a released one; relevancy's tape keeps only what input gradients read. Whole
 * relevancy runs give the same maps with the tape in memory, half spilled and all spilled.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { relevancyMaps } from "../src/interpret/relevancy/index.js";
import { createKernels } from "../src/kernels/index.js";
import { type DecoderLayerTape, TextDecoder } from "../src/models/decoder.js";
import { WeightGradients } from "../src/models/gradients.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { sequentialPositions } from "../src/models/positions.js";
import { LayerTapes } from "../src/models/tape-store.js";
import { fixturePixels, gridLayout, loadFixture } from "./fixture-utils.js";

/** Every tape made, in order, with what it had written to its file after its last layer came in. */
const spilled = new Map<LayerTapes<object>, number>();
const spilledByTape = () => {
  const v = [...spilled.values()];
  spilled.clear();
  return v;
};
{
  const push = LayerTapes.prototype.push;
  LayerTapes.prototype.push = function (this: LayerTapes<object>, layer: object) {
    push.call(this, layer);
    spilled.set(this, this.spilledBytes);
  };
}

const ts = await createKernels("ts");
const ort = await createKernels("ort");
after(async () => {
  await ts.dispose();
  await ort.dispose();
});

function scratchDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "tape-store-test-"));
}

interface Toy {
  a: Float32Array;
  b?: Float32Array;
}

function toyLayer(i: number, withB: boolean): Toy {
  const a = Float32Array.from({ length: 1000 + i }, (_, j) => Math.sin(i * 31 + j));
  // A view into a larger buffer: only its own bytes may be written.
  const b = withB ? new Float32Array(64).fill(i).subarray(8, 40) : undefined;
  return { a, b };
}

describe("LayerTapes", () => {
  test("layers past the memory budget go to an unlinked file and come back unchanged", () => {
    const dir = scratchDir();
    try {
      const layerBytes = (i: number, withB: boolean) => (1000 + i + (withB ? 32 : 0)) * 4;
      // Room for layers 0 and 1 only.
      const tapes = new LayerTapes<Toy>({ memoryBytes: layerBytes(0, true) + layerBytes(1, false), dir });
      const pushed = Array.from({ length: 5 }, (_, i) => toyLayer(i, i % 2 === 0));
      for (const l of pushed) tapes.push(l);
      assert.equal(tapes.length, 5);
      assert.equal(
        tapes.spilledBytes,
        [2, 3, 4].reduce((s, i) => s + layerBytes(i, i % 2 === 0), 0),
      );
      assert.deepEqual(fs.readdirSync(dir), [], "the file is unlinked while open");
      assert.equal(tapes.get(0), pushed[0], "layers within the budget stay as they were pushed");
      assert.equal(tapes.get(1), pushed[1]);
      for (const i of [4, 2, 3, 3]) {
        const got = tapes.get(i);
        assert.notEqual(got, pushed[i]);
        assert.deepEqual(got.a, pushed[i].a);
        assert.deepEqual(got.b, pushed[i].b);
        assert.equal("b" in got, i % 2 === 0, "absent fields stay absent");
      }
      assert.equal(tapes.get(3), tapes.get(3), "the last layer read is kept");
      assert.throws(() => tapes.get(5), /no layer 5 \(5 stored\)/);
      tapes.dispose();
      assert.throws(() => tapes.get(2), /no layer 2/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a released layer is gone and its memory counts again towards the budget", () => {
    const dir = scratchDir();
    try {
      const tapes = new LayerTapes<Toy>({ memoryBytes: 1000 * 4, dir, what: "toy layers" });
      tapes.push(toyLayer(0, false)); // fills the budget
      tapes.push(toyLayer(1, false)); // to the file
      const spilledBefore = tapes.spilledBytes;
      tapes.release(0);
      tapes.release(1);
      assert.throws(() => tapes.get(0), /layer 0 was released/);
      assert.throws(() => tapes.get(1), /layer 1 was released/);
      const third = toyLayer(0, false);
      tapes.push(third);
      assert.equal(tapes.get(2), third, "room again within the budget");
      assert.equal(tapes.spilledBytes, spilledBefore);
      tapes.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a folder the file cannot go in fails in one line naming it, when the first layer spills", () => {
    const dir = path.join(os.tmpdir(), "tape-store-test-missing", "deeper");
    const tapes = new LayerTapes<Toy>({ memoryBytes: 0, dir });
    assert.throws(
      () => tapes.push(toyLayer(0, false)),
      (e: Error) =>
        e.message.startsWith(`${dir}: cannot create a file for the backward tape here`) &&
        !e.message.includes("\n"),
    );
    tapes.dispose();
  });
});

describe("relevancy's tape", () => {
  test("keeps what input gradients read only (no attentions returned besides), and refuses weight gradients in one line", async () => {
    const fx = loadFixture("llava-tiny-llama");
    const model = LlavaModel.load(fx.dir);
    try {
      assert.ok(model.decoder instanceof TextDecoder);
      const dec = model.decoder;
      const D = dec.cfg.hiddenSize;
      const N = 9;
      const embeds = Float32Array.from({ length: N * D }, (_, i) => Math.cos(i * 0.71) * 0.8);
      for (const kernels of [ts, ort]) {
        const full = await dec.forward(kernels, embeds, sequentialPositions(0, N), dec.newCache(N), {
          tape: true,
        });
        const lean = await dec.forward(kernels, embeds, sequentialPositions(0, N), dec.newCache(N), {
          tape: "input-gradients",
          returnAttentions: false,
        });
        assert.ok(full.tape && lean.tape);
        assert.equal(full.attentions.length, dec.layers.length);
        assert.equal(lean.attentions.length, 0, "the probabilities are read from the tape");
        assert.deepEqual(lean.logits, full.logits);
        for (let l = 0; l < dec.layers.length; l++) {
          const f: DecoderLayerTape = full.tape.layers.get(l);
          const g: DecoderLayerTape = lean.tape.layers.get(l);
          assert.deepEqual(Object.keys(g).sort(), ["gate", "h1", "hIn", "probs", "q", "up"]);
          for (const key of ["hIn", "q", "probs", "h1", "gate", "up"] as const)
            assert.deepEqual(g[key], f[key]);
          assert.ok(f.x && f.ctx && f.x2, "a tape for weight gradients keeps x, ctx and x2");
        }
        const dOut = Float32Array.from({ length: N * D }, (_, i) => Math.sin(i * 0.37));
        const a = await dec.layerBackward(kernels, 1, full.tape, dOut, 0, N);
        const b = await dec.layerBackward(kernels, 1, lean.tape, dOut, 0, N);
        assert.deepEqual(b.dIn, a.dIn);
        assert.deepEqual(b.dProbs, a.dProbs);
        await assert.rejects(
          dec.layerBackward(kernels, 1, lean.tape, dOut, 0, N, new WeightGradients()),
          /^Error: decoder backward: weight gradients need a tape recorded with \{ tape: true \}/,
        );
      }
    } finally {
      model.close();
      fx.tensors.close();
    }
  });

  test("maps are the same with the tape in memory, partly and wholly in a file, which is gone afterwards", async () => {
    const fx = loadFixture("llava-tiny-llama");
    const model = LlavaModel.load(fx.dir);
    const dir = scratchDir();
    const tmp = process.env.TMPDIR;
    process.env.TMPDIR = dir;
    try {
      const e = fx.expected;
      const inputs = {
        inputIds: e.input_ids,
        generatedIds: e.generated_ids,
        pixels: fixturePixels(fx),
        layout: gridLayout(model),
      };
      for (const mode of ["exact", "incremental"] as const) {
        const opts = {
          mode,
          vision: ["vit", "all", "all_v2", "chain"] as ("vit" | "all" | "all_v2" | "chain")[],
        };
        spilledByTape(); // forget the tapes of earlier tests
        const ref = await relevancyMaps(model, ort, inputs, {
          ...opts,
          tapeMemoryBytes: Number.POSITIVE_INFINITY,
        });
        assert.deepEqual(spilledByTape(), [0, 0], "the tower's tape, then the LLM's, all in memory");
        // Room for layer 0 (the tape covers the prompt and every generated token but the last).
        const dec = model.decoder as TextDecoder;
        const n = e.input_ids.length + e.generated_ids.length - 1;
        const { hiddenSize: D, numHeads: H, headDim: hd, intermediateSize: I } = dec.cfg;
        const layerBytes = 4 * (n * (2 * D + H * hd + 2 * I) + H * n * n);
        for (const tapeMemoryBytes of [0, layerBytes]) {
          const got = await relevancyMaps(model, ort, inputs, { ...opts, tapeMemoryBytes });
          const layers = dec.layers.length;
          const expected = tapeMemoryBytes === 0 ? layers * layerBytes : (layers - 1) * layerBytes;
          const [tower, llm] = spilledByTape();
          assert.equal(llm, expected, "bytes of the LLM's tape written to its file");
          assert.ok(tower > 0, "the tower's tape went to a file too");
          assert.equal(got.tokens.length, ref.tokens.length);
          for (const [i, r] of got.tokens.entries()) {
            for (const key of ["llm", "vit", "all", "allV2", "chain"] as const) {
              const a = r[key];
              assert.ok(a, `${mode} t${r.token} ${key}`);
              assert.deepEqual(
                a,
                ref.tokens[i][key],
                `${mode} t${r.token} ${key} (${tapeMemoryBytes} B in memory)`,
              );
            }
          }
          assert.deepEqual(fs.readdirSync(dir), [], "nothing left in TMPDIR");
        }
      }
    } finally {
      if (tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmp;
      fs.rmSync(dir, { recursive: true, force: true });
      model.close();
      fx.tensors.close();
    }
  });
});
