/**
 * Parity with the public fixtures' causal.json (LVLM-Interpret + causality-lab on the last layer, last token):
 * identical node sets, edges with marks, explanations and explanation levels for every head, through a run
 * directory built from the fixture. Also: worker threads give the same records as one thread, and the patch
 * weights (NaN in the original) are finite.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { ParCorrTest, rowCorrelation } from "../src/interpret/causal/ci-test.js";
import {
  contiguousLayout,
  DEFAULT_CLEANN_PARAMS,
  explainHead,
  patchWeight,
} from "../src/interpret/causal/cleann.js";
import { type CausalDocument, explainRun } from "../src/interpret/causal/explain-run.js";
import { fixtureAttention, readRefCausal, writeFixtureRun } from "./causal-helpers.js";
import { FIXTURES, tempDir } from "./fixture-utils.js";

const work = tempDir("causal-parity");
after(() => fs.rmSync(work, { recursive: true, force: true }));

const strip = (doc: CausalDocument) => doc.heads.map(({ timings_ms: _t, ...rest }) => rest);

for (const name of FIXTURES) {
  describe(`causal parity: ${name}`, () => {
    const ref = readRefCausal(name);
    const dir = path.join(work, name);
    const manifest = writeFixtureRun(name, dir);
    let doc: CausalDocument;

    test("explainRun on the run directory (defaults: last layer, last token)", async () => {
      const out = await explainRun(dir, { jobs: 1 });
      doc = out.doc;
      assert.equal(out.file, path.join(dir, "causal", `${manifest.generated_ids.length - 1}.json`));
      assert.deepEqual(JSON.parse(fs.readFileSync(out.file, "utf8")), JSON.parse(JSON.stringify(doc)));
      assert.equal(doc.layer, ref.layer);
      assert.equal(doc.token_to_explain, ref.token_to_explain);
      assert.equal(doc.token_index, ref.n_generated - 1);
      assert.deepEqual(doc.params, ref.params);
      assert.equal(doc.heads.length, ref.heads.length);
    });

    for (const rh of ref.heads) {
      test(`head ${rh.head}: nodes, edges, explanation, levels`, () => {
        const h = doc.heads.find((x) => x.head === rh.head);
        assert.ok(h, "head present");
        assert.deepEqual(h.relevant_image_tokens, rh.relevant_image_tokens);
        assert.deepEqual(h.relevant_text_tokens, rh.relevant_text_tokens);
        assert.deepEqual(h.nodes, rh.nodes);
        assert.equal(h.num_high_att, rh.num_high_att);
        assert.equal(h.num_image_tokens, rh.num_image_tokens);
        assert.deepEqual(
          h.edges.map(({ i, j, mark_at_i, mark_at_j }) => ({ i, j, mark_at_i, mark_at_j })),
          rh.edges.map(({ i, j, mark_at_i, mark_at_j }) => ({ i, j, mark_at_i, mark_at_j })),
        );
        assert.deepEqual(
          h.edges.map((e) => e.edge),
          rh.edges.map((e) => e.edge),
        );
        assert.deepEqual(h.explanation, rh.explanation);
        assert.deepEqual(h.explanation_image_patches, rh.explanation_image_patches);
        assert.deepEqual(h.explanation_per_radius, rh.explanation_per_radius);
        assert.equal(h.max_pds_tree_depth, rh.max_pds_tree_depth);
        // The reference assembled its matrix from KV-cache decode rows (≈1e-6 from the full forward).
        assert.ok(
          Math.abs((h.head_importance ?? Number.NaN) - rh.head_importance) <= 1e-4 * rh.head_importance,
        );
        // Same CI tests computed (a strong check that the search took the same path).
        assert.equal(h.ci_tests.n_tests, rh.ci_tests.n_tests);
        assert.equal(h.ci_tests.n_independent, rh.ci_tests.n_independent);
        // The test closest to the threshold is the same one, with (nearly) the same p-value.
        const [x, y, z, p] = h.ci_tests.closest_test!;
        const [rx, ry, rz, rp] = rh.ci_tests.closest_test;
        assert.deepEqual([x, y, z], [rx, ry, rz]);
        assert.ok(Math.abs(p - rp) <= 1e-4 * rp, `closest p ${p} vs ${rp}`);
      });
    }

    test("patch weights are finite where the original gives NaN (recorded as null)", () => {
      for (const rh of ref.heads) {
        const h = doc.heads.find((x) => x.head === rh.head)!;
        assert.equal(h.image_expla_weights.length, rh.image_expla_weights.length);
        for (const w of h.image_expla_weights)
          assert.ok(Number.isFinite(w) && w >= 0 && w <= 1, `weight ${w}`);
      }
      // The aggregate is the per-patch sum over heads, laid out on the grid.
      const [rows, cols] = doc.patch_weights.grid;
      assert.equal(rows * cols, ref.image_token_count);
      const flat = new Array(rows * cols).fill(0);
      for (const h of doc.heads) {
        h.explanation_image_patches.forEach((p, i) => {
          flat[p] += h.image_expla_weights[i];
        });
      }
      assert.deepEqual(doc.patch_weights.sum.flat(), flat);
      const max = Math.max(...flat);
      if (max > 0) assert.equal(Math.max(...doc.patch_weights.normalized.flat()), 1);
    });

    test("worker threads give the same records as one thread", async () => {
      const par = await explainRun(dir, { jobs: 2 });
      assert.deepEqual(strip(par.doc), strip(doc));
    });
  });
}

describe("patch weight", () => {
  test("with the original's sample size (= #patches) it stays finite", () => {
    const { data, shape } = fixtureAttention("llava-tiny-llama");
    const [L, H, S] = shape;
    const ref = readRefCausal("llava-tiny-llama");
    const rh = ref.heads.find((h) => h.explanation_image_patches.length >= 3)!;
    const att = data.subarray(((L - 1) * H + rh.head) * S * S, ((L - 1) * H + rh.head + 1) * S * S);
    const { record, ci } = explainHead(
      att,
      S,
      ref.token_to_explain,
      contiguousLayout(5, 64),
      DEFAULT_CLEANN_PARAMS,
      rh.head,
    );
    const expl = record.explanation.filter((v) => v >= 5 && v < 69);
    for (const v of expl) {
      const w = patchWeight(ci, v, ref.token_to_explain, expl, expl.length);
      assert.ok(Number.isFinite(w) && w >= 0 && w <= 1);
    }
    // And with the default sample size it is 1 − p of the partial-correlation test, recomputed here.
    const corr = rowCorrelation(att, S, [...expl, ref.token_to_explain]);
    const fresh = new ParCorrTest(corr, 128, 1e-5);
    for (const [i, v] of expl.entries()) {
      const p = fresh.pValue(
        v,
        ref.token_to_explain,
        expl.filter((u) => u !== v),
      );
      assert.ok(Math.abs(record.image_expla_weights[i] - (1 - Math.min(p, 1))) < 1e-9);
    }
  });
});
