/**
 * Attention aggregates (src/interpret/views/attention.ts): checked against values designed into hand-made runs (so a
 * wrong row, column or span convention fails), and against brute force over a real traced run of the llama
 * fixture (f32 and f16 attention).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  AttentionQueryError,
  attentionLayout,
  attentionSummary,
  headImageMaps,
  patchAttention,
  readLlmAttentionRows,
} from "../src/interpret/views/attention.js";
import { createKernels } from "../src/kernels/index.js";
import { loadModel } from "../src/models/registry.js";
import { Run } from "../src/run/run-dir.js";
import { traceWithModel } from "../src/trace.js";
import { fixtureDir, tempDir } from "./fixture-utils.js";
import { writeSyntheticRun } from "./synthetic-run.js";

const work = tempDir("attention");
after(() => fs.rmSync(work, { recursive: true, force: true }));

const close = (a: number, b: number, tol = 1e-6) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

describe("hand-made run with designed attention", () => {
  // T = 10, image tokens at 2…5 (2×2 grid), question tokens 6…9, G = 3 → S = 12. Answer token k reads row 9 + k.
  const spec = {
    T: 10,
    G: 3,
    layers: 2,
    heads: 3,
    imageStart: 2,
    grid: [2, 2] as [number, number],
    // Distinct, decodable values: layer, head, row and column all matter.
    value: (l: number, h: number, r: number, c: number) =>
      0.001 * (1 + l) + 0.01 * h + 0.1 * (r % 7) + 0.0001 * c,
  };
  let run: Run;
  before(() => {
    writeSyntheticRun(path.join(work, "syn"), spec);
    run = Run.open(path.join(work, "syn"));
  });
  after(() => run.close());

  test("layout follows the run format's positions", () => {
    const L = attentionLayout(run);
    assert.deepEqual([L.T, L.G, L.S, L.questionStart, L.questionEnd], [10, 3, 12, 6, 10]);
    assert.deepEqual(L.imagePositions, [2, 3, 4, 5]);
  });

  test("readLlmAttentionRows returns exactly the requested rows of every head", () => {
    const rows = readLlmAttentionRows(run, 1, 9, 3);
    assert.equal(rows.length, 3 * 3 * 12);
    for (let h = 0; h < 3; h++)
      for (let i = 0; i < 3; i++)
        for (let c = 0; c < 12; c++) {
          const r = 9 + i;
          close(rows[(h * 3 + i) * 12 + c], c <= r ? spec.value(1, h, r, c) : 0);
        }
  });

  test("summary: mean over answer rows × image columns and × question columns", () => {
    const s = attentionSummary(run);
    assert.deepEqual(s.tokens, [0, 1, 2]);
    for (let l = 0; l < 2; l++)
      for (let h = 0; h < 3; h++) {
        let img = 0;
        let q = 0;
        for (let k = 0; k < 3; k++) {
          for (let c = 2; c < 6; c++) img += spec.value(l, h, 9 + k, c);
          for (let c = 6; c < 10; c++) q += spec.value(l, h, 9 + k, c);
        }
        close(s.image[l][h], img / 12);
        close(s.question[l][h], q / 12);
      }
    // A subset of tokens averages over those rows only.
    const one = attentionSummary(run, [2]);
    let img = 0;
    for (let c = 2; c < 6; c++) img += spec.value(0, 1, 11, c);
    close(one.image[0][1], img / 4);
  });

  test("head maps: per-patch mean over the chosen tokens, heads sorted by mean", () => {
    const m = headImageMaps(run, 0, [0, 2]);
    assert.deepEqual(m.tokens, [0, 2]);
    assert.ok(
      m.heads.every((h) => h.map.length === 4),
      "one value per image token",
    );
    // value grows with h, so head 2 has the largest mean.
    assert.deepEqual(
      m.heads.map((x) => x.head),
      [2, 1, 0],
    );
    for (const hm of m.heads) {
      for (let p = 0; p < 4; p++)
        close(hm.map[p], (spec.value(0, hm.head, 9, 2 + p) + spec.value(0, hm.head, 11, 2 + p)) / 2);
      close(hm.mean, hm.map.reduce((a, b) => a + b) / 4);
      close(m.headMeans[hm.head], hm.mean);
    }
    close(m.max, Math.max(...m.heads.flatMap((x) => x.map)));
    close(m.min, Math.min(...m.heads.flatMap((x) => x.map)));
  });

  test("patch selector: attention of every answer token to the selected patches", () => {
    const pa = patchAttention(run, 1, [3, 0, 3]);
    assert.deepEqual(pa.patches, [0, 3]);
    for (let h = 0; h < 3; h++)
      for (let k = 0; k < 3; k++)
        close(pa.perHeadToken[h][k], (spec.value(1, h, 9 + k, 2) + spec.value(1, h, 9 + k, 5)) / 2);
    for (let k = 0; k < 3; k++) {
      close(pa.tokenMean[k], (pa.perHeadToken[0][k] + pa.perHeadToken[1][k] + pa.perHeadToken[2][k]) / 3);
      close(pa.tokenSum[k], pa.tokenMean[k] * 2);
    }
    for (let h = 0; h < 3; h++) close(pa.headMean[h], pa.perHeadToken[h].reduce((a, b) => a + b) / 3);
  });

  test("out-of-range layers, tokens and patches are readable errors", () => {
    assert.throws(
      () => headImageMaps(run, 2, [0]),
      (e: Error) => e instanceof AttentionQueryError && /layer 2 .*0…1/.test(e.message),
    );
    assert.throws(() => headImageMaps(run, 0, [3]), /answer token 3 is out of range/);
    assert.throws(() => headImageMaps(run, 0.5, [0]), AttentionQueryError);
    assert.throws(() => patchAttention(run, 0, [4]), /image patch 4 is out of range/);
    assert.throws(() => patchAttention(run, 0, []), /at least one image patch/);
    assert.throws(() => attentionSummary(run, [-1]), AttentionQueryError);
  });

  test("f16 attention is read and widened the same way", () => {
    writeSyntheticRun(path.join(work, "syn16"), { ...spec, dtype: "f16" });
    const r16 = Run.open(path.join(work, "syn16"));
    try {
      const a = attentionSummary(run);
      const b = attentionSummary(r16);
      for (let l = 0; l < 2; l++)
        for (let h = 0; h < 3; h++) assert.ok(Math.abs(a.image[l][h] - b.image[l][h]) < 1e-3);
    } finally {
      r16.close();
    }
  });
});

describe("traced run of the llama fixture (brute force over the full tensors)", () => {
  let run: Run;
  before(async () => {
    const model = loadModel(fixtureDir("llava-tiny-llama"));
    const kernels = await createKernels("ts");
    try {
      await traceWithModel(model, kernels, {
        image: {
          bytes: fs.readFileSync(path.join(fixtureDir("llava-tiny-llama"), "image.png")),
          name: "image.png",
        },
        prompt: "What is in the image?",
        maxNewTokens: 6,
        temperature: 0,
        topP: 1,
        seed: 0,
        imageMode: "default",
        attnDtype: "f32",
        out: path.join(work, "traced"),
      });
    } finally {
      await kernels.dispose();
      model.close();
    }
    run = Run.open(path.join(work, "traced"));
  });
  after(() => run.close());

  test("summary and maps equal sums over run.llmAttention", () => {
    const L = attentionLayout(run);
    const s = attentionSummary(run);
    const P = L.imagePositions.length;
    for (let l = 0; l < L.layers; l++) {
      const { shape, data } = run.llmAttention(l);
      const [H, S] = shape;
      for (let h = 0; h < H; h++) {
        let img = 0;
        let q = 0;
        for (let k = 0; k < L.G; k++) {
          const r = L.T - 1 + k;
          for (const c of L.imagePositions) img += data[(h * S + r) * S + c];
          for (let c = L.questionStart; c < L.T; c++) q += data[(h * S + r) * S + c];
        }
        close(s.image[l][h], img / (L.G * P), 1e-5);
        close(s.question[l][h], q / (L.G * (L.T - L.questionStart)), 1e-5);
      }
      const maps = headImageMaps(run, l);
      assert.equal(maps.heads.length, H);
      // Real attention is not uniform: heads differ and maps vary across patches.
      for (const hm of maps.heads) assert.ok(Math.max(...hm.map) > Math.min(...hm.map));
    }
    // Attention rows are probabilities: image + question + rest sum to 1, so both means are in [0, 1].
    for (const row of [...s.image, ...s.question]) for (const v of row) assert.ok(v >= 0 && v <= 1);
  });
});
