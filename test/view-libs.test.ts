/**
 * The web views' library assembly: relevancy panels (which stored rows, which positions, word grouping, what
 * "computed" means) and the causal view (labels, radii, marks, growth), on hand-made runs and documents.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import type { CausalDocument } from "../src/interpret/causal/explain-run.js";
import { causalView, positionLabeller } from "../src/interpret/views/causal-view.js";
import {
  RelevancyViewError,
  relevancyImageMaps,
  relevancyReliance,
  relevancyStatus,
  relevancyText,
} from "../src/interpret/views/relevancy-panels.js";
import { layoutBoxes } from "../src/models/image-layout.js";
import { Run } from "../src/run/run-dir.js";
import { tempDir } from "./fixture-utils.js";
import { syntheticManifest, writeSyntheticRun } from "./synthetic-run.js";

const work = tempDir("view-libs");
after(() => fs.rmSync(work, { recursive: true, force: true }));

// T = 10: positions 0,1 text, 2…5 image (2×2), 6…9 question; G = 3 answer tokens at rows 9, 10, 11; S = 12.
const spec = {
  T: 10,
  G: 3,
  layers: 1,
  heads: 1,
  imageStart: 2,
  grid: [2, 2] as [number, number],
  value: () => 0.1,
};
const S = 12;
const llmRow = (t: number) =>
  Float32Array.from({ length: S }, (_, j) => 0.01 * (t + 1) * (j + 1) + (j === 9 + t ? 1 : 0));
const vitRow = (t: number) =>
  Float32Array.from({ length: 5 }, (_, j) => 0.1 * (t + 1) + 0.01 * j + (j === 0 ? 1 : 0));
function close(a: number, b: number): void {
  assert.ok(Math.abs(a - b) < 1e-5, `${a} vs ${b}`);
}

describe("relevancy panels", () => {
  let run: Run;
  const raw = ["▁a", "b", "▁c"];
  before(() => {
    const dir = path.join(work, "rel");
    writeSyntheticRun(dir, spec);
    run = Run.open(dir);
    const G = 3;
    const llm = new Float32Array(G * S);
    const vit = new Float32Array(G * 5);
    for (let t = 0; t < G; t++) {
      llm.set(llmRow(t), t * S);
      vit.set(vitRow(t), t * 5);
    }
    run.addTensors("rel.exact.safetensors", [
      { name: "rel.llm.exact", dtype: "F32", shape: [G, S], data: llm },
      { name: "rel.vit.exact", dtype: "F32", shape: [G, 5], data: vit },
    ]);
    run.manifest = {
      ...run.manifest,
      extras: {
        relevancy: {
          exact: {
            file: "rel.exact.safetensors",
            vit_gradients: "fresh",
            vit_layers: [0],
            computed: { llm: [0, 1, 2], vit: [0, 2], chain: [0] },
            updated_at: "",
          },
        },
      },
    };
    run.saveManifest();
  });
  after(() => run.close());

  test("status lists computed tokens of stored kinds only", () => {
    assert.deepEqual(relevancyStatus(run).computed, { exact: { llm: [0, 1, 2], vit: [0, 2] } });
  });

  test("per token: the image span of each stored row", () => {
    const v = relevancyImageMaps(run, "exact", "llm", "token", false, raw);
    assert.deepEqual(
      v.items.map((i) => i.tokens),
      [[0], [1], [2]],
    );
    for (const it of v.items) {
      const r = llmRow(it.tokens[0]);
      it.map.forEach((x, p) => {
        close(x!, r[2 + p]);
      });
      close(it.min, Math.min(...(it.map as number[])));
      close(it.max, Math.max(...(it.map as number[])));
    }
    const vt = relevancyImageMaps(run, "exact", "vit", "token", false, raw);
    assert.deepEqual(
      vt.items.map((i) => i.tokens),
      [[0], [2]],
    );
    vt.items[1].map.forEach((x, p) => {
      close(x!, vitRow(2)[1 + p]);
    });
  });

  test("per word: raw tokens group words; a word's map is the mean of its tokens' rows", () => {
    const v = relevancyImageMaps(run, "exact", "llm", "word", false, raw);
    assert.deepEqual(
      v.items.map((i) => [i.label, i.tokens]),
      [
        ["ab", [0, 1]],
        ["c", [2]],
      ],
    );
    v.items[0].map.forEach((x, p) => {
      close(x!, (llmRow(0)[2 + p] + llmRow(1)[2 + p]) / 2);
    });
    // Normalised maps differ from raw ones (handle_residual rescales the row).
    const n = relevancyImageMaps(run, "exact", "llm", "word", true, raw);
    assert.ok(n.items[0].map.some((x, p) => Math.abs(x! - v.items[0].map[p]!) > 1e-6));
    // A word with an uncomputed token is left out.
    const w = relevancyImageMaps(run, "exact", "vit", "word", false, raw);
    assert.deepEqual(
      w.items.map((i) => i.label),
      ["c"],
    );
    // Without raw tokens the decoded ones ("t0", "t1", "t2") carry no word-start marker anywhere, as in a
    // word-level vocabulary: each is a word.
    assert.deepEqual(
      relevancyImageMaps(run, "exact", "llm", "word", false).items.map((i) => i.tokens),
      [[0], [1], [2]],
    );
  });

  test("text relevancy and reliance; not-computed requests are RelevancyViewErrors", () => {
    const prompt = Array.from({ length: 10 }, (_, i) => (i >= 2 && i < 6 ? "<image>" : `▁w${i}`));
    const tv = relevancyText(run, "exact", 1, prompt);
    assert.equal(tv.entries.length, 10 - 4 + 1);
    assert.equal(tv.entries[2].label, "<image>");
    assert.deepEqual(tv.entries[2].positions, [2, 3, 4, 5]);
    assert.equal(tv.wordsVsImage.bars.at(-1)!.label, "max_img");
    const rel = relevancyReliance(run, "exact", prompt);
    assert.deepEqual(
      rel.map((r) => r.token),
      [0, 1, 2],
    );
    for (const r of rel) assert.ok(r.reliance >= 0 && r.reliance <= 1);
    assert.throws(() => relevancyImageMaps(run, "incremental", "llm", "word"), RelevancyViewError);
    assert.throws(
      () => relevancyImageMaps(run, "exact", "all", "word"),
      /no all relevancy \(exact\) computed/,
    );
    assert.throws(() => relevancyText(run, "exact", 1, prompt.slice(1)), /prompt token strings/);
  });
});

describe("causal view", () => {
  const m = syntheticManifest(spec);
  const image = {
    positions: [2, 3, 4, 5],
    boxes: layoutBoxes(m.image_layout),
    layout: m.image_layout,
  };
  const prompt = Array.from({ length: 10 }, (_, i) => (i >= 2 && i < 6 ? "<image>" : `▁w${i}`));
  const doc = {
    format: "lvlm-causal/1",
    layer: 0,
    token_index: 1,
    token_id: m.generated_ids[1],
    token: "▁next",
    token_to_explain: 10,
    image_token_start: 2,
    image_token_count: 4,
    params: { p_val_th: 1e-5, num_samples: 128, max_range: 3, att_th: 0.01, max_num_image_tokens: 50 },
    heads: [
      {
        head: 0,
        nodes: [3, 2, 7, 10],
        edges: [
          { i: 2, j: 7, mark_at_i: "circle", mark_at_j: "arrow", edge: "2 o-> 7" },
          { i: 3, j: 10, mark_at_i: "tail", mark_at_j: "arrow", edge: "3 --> 10" },
          { i: 7, j: 10, mark_at_i: "arrow", mark_at_j: "arrow", edge: "7 <-> 10" },
        ],
        explanation: [2, 7, 10],
        explanation_image_patches: [0],
        explanation_per_radius: { "0": 10, "1": [7], "2": [2, 7], "3": [] },
        image_expla_weights: [0.9],
        head_importance: 1.5,
      },
    ],
    patch_weights: {
      grid: [2, 2],
      sum: [
        [0.9, 0],
        [0, 0],
      ],
      normalized: [
        [1, 0],
        [0, 0],
      ],
    },
    timings_ms: { total: 1 },
  } as unknown as CausalDocument;

  test("nodes: kinds, labels, smallest radius, explanation membership", () => {
    const v = causalView(doc, m, image, prompt);
    assert.equal(v.target, 10);
    assert.equal(v.tokenText, "next");
    assert.deepEqual(v.patchWeights, [1, 0, 0, 0]);
    const h = v.heads[0];
    const byId = new Map(h.nodes.map((n) => [n.id, n]));
    assert.deepEqual(byId.get(2), {
      id: 2,
      kind: "image",
      label: "patch 0,0",
      patch: 0,
      radius: 2,
      inExplanation: true,
    });
    assert.deepEqual(byId.get(3), {
      id: 3,
      kind: "image",
      label: "patch 0,1",
      patch: 1,
      radius: null,
      inExplanation: false,
    });
    assert.deepEqual(byId.get(7), {
      id: 7,
      kind: "text",
      label: "w7",
      patch: null,
      radius: 1,
      inExplanation: true,
    });
    // Position 10 = T + 0: the first answer token ("t0"), which predicts token 1.
    assert.deepEqual(byId.get(10), {
      id: 10,
      kind: "target",
      label: "t0 → next",
      patch: null,
      radius: 0,
      inExplanation: true,
    });
    assert.equal(positionLabeller(m, image, prompt)(11), "t1");
  });

  test("edges keep their PAG marks; growth is cumulative by radius", () => {
    const h = causalView(doc, m, image, prompt).heads[0];
    assert.deepEqual(h.edges[0], {
      source: 2,
      target: 7,
      sourceMark: "circle",
      targetMark: "arrow",
      text: "2 o-> 7",
    });
    assert.deepEqual(
      h.edges.map((e) => [e.sourceMark, e.targetMark]),
      [
        ["circle", "arrow"],
        ["tail", "arrow"],
        ["arrow", "arrow"],
      ],
    );
    assert.deepEqual(h.growth, [
      { radius: 0, total: 1, image: 0, text: 1 },
      { radius: 1, total: 2, image: 0, text: 2 },
      { radius: 2, total: 3, image: 1, text: 2 },
      { radius: 3, total: 3, image: 1, text: 2 },
    ]);
    assert.equal(h.importance, 1.5);
    assert.deepEqual(h.explanationPatches, [0]);
    assert.deepEqual(h.patchWeights, [0.9]);
  });
});
