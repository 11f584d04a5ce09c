/**
 * Relevancy parity with the reference fixtures (both models): `rel_exact` (R_raw, rows, grids, CAMs, ViT
 * CAMs), `rel_lvlm` and its word maps `rel_lvlm_word`, the ViT-propagated maps `rel_vit_exact`,
 * `rel_all_exact`, `rel_all_v2_exact` and the tool's accumulated-gradient variants `rel_*_lvlm`; the chain
 * map against an independent computation from the fixture's own matrices; the row-vector rollouts against
 * the full matrices; and the derived views and word grouping on hand-made inputs.
 *
 * Tolerances (fixture README): raw maps ≤ 1e-4 · max|R_ref|, normalised grids/rows ≤ 1e-4.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, describe, test } from "node:test";
import {
  camFromGrad,
  chainFromMatrix,
  handleResidual,
  normalizeRow,
  type RelevancyResult,
  relevancyMaps,
  rolloutLeft,
  rolloutMatrix,
  rolloutRow,
} from "../src/interpret/relevancy/index.js";
import {
  imageReliance,
  llmImageMap,
  textRelevancy,
  topWordsVsImage,
  vitImageMap,
  wordRows,
} from "../src/interpret/views/relevancy-views.js";
import {
  averagePaddedSquares,
  groupWords,
  lvlmTokenKeys,
  lvlmWordGroups,
} from "../src/interpret/views/words.js";
import { createKernels } from "../src/kernels/index.js";
import { LlavaModel } from "../src/models/llava/model.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { FIXTURES, fixturePixels, gridLayout, loadFixture } from "./fixture-utils.js";
import { tinyInputIds, tinyPixelValues, writeTinyCheckpoint } from "./tiny-model.js";

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function assertRaw(label: string, got: ArrayLike<number>, ref: ArrayLike<number>): number {
  const d = maxAbsDiff(got, ref);
  const tol = 1e-4 * maxAbs(ref);
  assert.ok(d <= tol, `${label}: max |Δ| ${d} > ${tol}`);
  return d / maxAbs(ref);
}

function assertNorm(label: string, got: ArrayLike<number>, ref: ArrayLike<number>): number {
  const d = maxAbsDiff(got, ref);
  assert.ok(d <= 1e-4, `${label}: max |Δ| ${d}`);
  return d;
}

const report: string[] = [];
after(() => {
  if (process.env.LVLM_REL_VERBOSE) console.log(report.join("\n"));
});

for (const name of FIXTURES) {
  describe(`${name}: relevancy parity`, async () => {
    const fx = loadFixture(name);
    const e = fx.expected;
    const ref = (k: string) => fx.tensors.readF32(k);
    const model = LlavaModel.load(fx.dir);
    const kernels = await createKernels("ts");
    after(async () => {
      model.close();
      fx.tensors.close();
      await kernels.dispose();
    });
    const inputs = {
      inputIds: e.input_ids,
      generatedIds: e.generated_ids,
      pixels: fixturePixels(fx),
      layout: gridLayout(model),
    };
    const T = e.T;
    const s0 = e.image_token_start;
    const P = e.image_token_count;
    const G = e.generated_ids.length;
    const S = P + 1;
    const exact: RelevancyResult = await relevancyMaps(model, kernels, inputs, {
      mode: "exact",
      vision: ["vit", "all", "all_v2", "chain"],
      keepMatrices: true,
    });
    const inc: RelevancyResult = await relevancyMaps(model, kernels, inputs, {
      mode: "incremental",
      vision: ["vit", "all", "all_v2"],
      keepMatrices: true,
    });
    const worst: Record<string, number> = {};
    const note = (k: string, v: number) => {
      worst[k] = Math.max(worst[k] ?? 0, v);
    };
    after(() =>
      report.push(
        `${name}: ${Object.entries(worst)
          .map(([k, v]) => `${k} ${v.toExponential(2)}`)
          .join(", ")}`,
      ),
    );

    test("ViT layers used: those feeding the selected feature layer (= the tool's)", () => {
      assert.deepEqual(exact.vitLayers, e.vit_layers_feeding_features);
      assert.deepEqual(inc.vitLayers, e.lvlm_vit_layers);
      assert.equal(exact.vitGradients, "fresh");
      assert.equal(inc.vitGradients, "accumulated");
    });

    test("rel_exact: R_raw ≤ 1e-4·max|R|, rows, grids, CAMs", () => {
      assert.equal(exact.tokens.length, G);
      for (const r of exact.tokens) {
        const t = r.token;
        const n = T + t;
        assert.equal(r.position, n - 1);
        const m = r.matrices!;
        note("rel_exact.R_raw (rel)", assertRaw(`t${t} R_raw`, m.R, ref(`rel_exact.${t}.R_raw`)));
        // The stored row (row-vector rollout) equals the last row of the matrix rollout.
        note("row-vs-matrix (rel)", assertRaw(`t${t} llm row`, r.llm, m.R.subarray((n - 1) * n)));
        assertRaw(`t${t} last_row_raw`, r.llm, ref(`rel_exact.${t}.last_row_raw`));
        note(
          "rel_exact.last_row_norm",
          assertNorm(`t${t} last_row_norm`, normalizeRow(r.llm, n - 1), ref(`rel_exact.${t}.last_row_norm`)),
        );
        note(
          "rel_exact.image_grid_raw",
          assertNorm(
            `t${t} image_grid_raw`,
            llmImageMap(r.llm, n - 1, exact.imagePositions).values,
            ref(`rel_exact.${t}.image_grid_raw`),
          ),
        );
        note(
          "rel_exact.image_grid_norm",
          assertNorm(
            `t${t} image_grid_norm`,
            llmImageMap(r.llm, n - 1, exact.imagePositions, true).values,
            ref(`rel_exact.${t}.image_grid_norm`),
          ),
        );
        // handle_residual on the matrix agrees with the row form.
        assertNorm(
          `t${t} handle_residual`,
          handleResidual(m.R, n).subarray((n - 1) * n),
          ref(`rel_exact.${t}.last_row_norm`),
        );
      }
      for (const t of [0, G - 1]) {
        const cams = ref(`rel_exact.${t}.cams`);
        const m = exact.tokens[t].matrices!;
        const per = cams.length / m.cams.length;
        m.cams.forEach((c, l) => {
          note("rel_exact.cams (rel)", assertRaw(`t${t} cam ${l}`, c, cams.subarray(l * per, (l + 1) * per)));
        });
      }
      const vitCams = ref(`rel_exact.${G - 1}.vit_cams`);
      exact.tokens[G - 1].matrices!.vitCams!.forEach((c, l) => {
        note(
          "rel_exact.vit_cams (rel)",
          assertRaw(`vit cam ${l}`, c, vitCams.subarray(l * S * S, (l + 1) * S * S)),
        );
      });
    });

    test("rel_vit_exact, rel_all_exact, rel_all_v2_exact (fresh ViT gradients)", () => {
      for (const r of exact.tokens) {
        const t = r.token;
        const m = r.matrices!;
        note(
          "rel_vit_exact.R_raw (rel)",
          assertRaw(`t${t} vit R_raw`, m.vitR!, ref(`rel_vit_exact.${t}.R_raw`)),
        );
        assertRaw(`t${t} vit CLS row`, r.vit!, m.vitR!.subarray(0, S));
        note(
          "rel_vit_exact.cls_row_grid_norm",
          assertNorm(
            `t${t} vit grid`,
            vitImageMap(r.vit!, inputs.layout, true).values,
            ref(`rel_vit_exact.${t}.cls_row_grid_norm`),
          ),
        );
        note(
          "rel_all_exact.R_raw (rel)",
          assertRaw(`t${t} all R_raw`, m.allR!, ref(`rel_all_exact.${t}.R_raw`)),
        );
        assertRaw(`t${t} all CLS row (vector form)`, r.all!, m.allR!.subarray(0, S));
        note(
          "rel_all_exact.cls_row_grid_norm",
          assertNorm(
            `t${t} all grid`,
            vitImageMap(r.all!, inputs.layout, true).values,
            ref(`rel_all_exact.${t}.cls_row_grid_norm`),
          ),
        );
        note(
          "rel_all_v2_exact.cls_row_raw (rel)",
          assertRaw(`t${t} all_v2 row`, r.allV2!, ref(`rel_all_v2_exact.${t}.cls_row_raw`)),
        );
        note(
          "rel_all_v2_exact.cls_row_grid_norm",
          assertNorm(
            `t${t} all_v2 grid`,
            vitImageMap(r.allV2!, inputs.layout, true).values,
            ref(`rel_all_v2_exact.${t}.cls_row_grid_norm`),
          ),
        );
      }
    });

    test("chain = r_img · R_vit[patches, patches], checked against the fixture's own matrices", () => {
      for (const r of exact.tokens) {
        const t = r.token;
        const n = T + t;
        // Independent: the reference LLM map row and the reference ViT rollout (fresh gradients of the same
        // target), multiplied as matrices.
        const Rl = ref(`rel_exact.${t}.R_raw`);
        const rImg = Rl.subarray((n - 1) * n + s0, (n - 1) * n + s0 + P);
        const expected = chainFromMatrix(rImg, ref(`rel_vit_exact.${t}.R_raw`), S, (i) => i + 1, 0);
        assert.equal(r.chain!.length, P);
        note("chain vs fixture matrices (rel)", assertRaw(`t${t} chain`, r.chain!, expected));
        // And against our own full ViT matrix.
        assertRaw(
          `t${t} chain (own matrix)`,
          r.chain!,
          chainFromMatrix(r.llm.subarray(s0, s0 + P), r.matrices!.chainVitR!, S, (i) => i + 1, 0),
        );
      }
    });

    test("rel_lvlm: incremental R_raw, normalised rows and grids", () => {
      for (const r of inc.tokens) {
        const t = r.token;
        const n = T + t;
        note("rel_lvlm.R_raw (rel)", assertRaw(`t${t} R_raw`, r.matrices!.R, ref(`rel_lvlm.${t}.R_raw`)));
        assertRaw(`t${t} row`, r.llm, r.matrices!.R.subarray((n - 1) * n));
        note(
          "rel_lvlm.last_row_norm",
          assertNorm(`t${t} last_row_norm`, normalizeRow(r.llm, n - 1), ref(`rel_lvlm.${t}.last_row_norm`)),
        );
        note(
          "rel_lvlm.image_grid_norm",
          assertNorm(
            `t${t} grid`,
            llmImageMap(r.llm, n - 1, exact.imagePositions, true).values,
            ref(`rel_lvlm.${t}.image_grid_norm`),
          ),
        );
      }
      // Step 0 is the exact map; later steps differ (stale rows by design).
      assert.ok(maxAbsDiff(inc.tokens[0].matrices!.R, exact.tokens[0].matrices!.R) <= 1e-6);
      assert.ok(maxAbsDiff(inc.tokens[G - 1].matrices!.R, exact.tokens[G - 1].matrices!.R) > 1e-3);
    });

    test("rel_lvlm_word: word maps (mean of zero-padded normalised token maps), keys as the tool's", () => {
      const toks = e.generated_tokens as string[];
      assert.deepEqual(lvlmTokenKeys(toks).keys, e.lvlm_llama_token_keys);
      const groups = lvlmWordGroups(toks);
      assert.deepEqual(
        groups.map((g) => g.key),
        e.lvlm_word_keys,
      );
      groups.forEach((g, i) => {
        const maps = g.tokens.map((t) => {
          const n = T + t;
          return { data: handleResidual(inc.tokens[t].matrices!.R, n), n };
        });
        const avg = averagePaddedSquares(maps);
        note("rel_lvlm_word", assertNorm(`word ${i}`, avg.data, ref(`rel_lvlm_word.${i}`)));
      });
    });

    test("rel_*_lvlm: the tool's ViT maps (incremental LLM map, accumulated ViT gradients)", () => {
      for (const r of inc.tokens) {
        const t = r.token;
        for (const [kind, got] of [
          ["vit", r.vit!],
          ["all", r.all!],
          ["all_v2", r.allV2!],
        ] as const) {
          note(
            `rel_${kind}_lvlm.cls_row_raw (rel)`,
            assertRaw(`t${t} ${kind}`, got, ref(`rel_${kind}_lvlm.${t}.cls_row_raw`)),
          );
          note(
            `rel_${kind}_lvlm.cls_row_grid_norm`,
            assertNorm(
              `t${t} ${kind} grid`,
              vitImageMap(got, inputs.layout, true).values,
              ref(`rel_${kind}_lvlm.${t}.cls_row_grid_norm`),
            ),
          );
        }
      }
    });

    test("a token subset gives the same rows as the full computation (both modes)", async () => {
      for (const [mode, full] of [
        ["exact", exact],
        ["incremental", inc],
      ] as const) {
        const sub = await relevancyMaps(model, kernels, inputs, {
          mode,
          vision: ["vit", "chain"],
          tokens: [G - 1, 2],
        });
        assert.deepEqual(
          sub.tokens.map((r) => r.token),
          [2, G - 1],
        );
        for (const r of sub.tokens) {
          const f = full.tokens[r.token];
          assert.ok(maxAbsDiff(r.llm, f.llm) <= 1e-6 * maxAbs(f.llm), `${mode} t${r.token} llm`);
          assert.ok(maxAbsDiff(r.vit!, f.vit!) <= 1e-6 * maxAbs(f.vit!), `${mode} t${r.token} vit`);
        }
      }
    });

    test("ort kernels reproduce rel_exact and rel_lvlm", async () => {
      const ort = await createKernels("ort");
      try {
        const ex = await relevancyMaps(model, ort, inputs, { mode: "exact", vision: ["all_v2", "chain"] });
        const ic = await relevancyMaps(model, ort, inputs, { mode: "incremental", vision: ["all_v2"] });
        for (const r of ex.tokens) {
          assertRaw(`ort t${r.token}`, r.llm, ref(`rel_exact.${r.token}.last_row_raw`));
          assertRaw(`ort t${r.token} all_v2`, r.allV2!, ref(`rel_all_v2_exact.${r.token}.cls_row_raw`));
          assertRaw(`ort t${r.token} chain`, r.chain!, exact.tokens[r.token].chain!);
        }
        for (const r of ic.tokens) {
          const n = T + r.token;
          const Rref = ref(`rel_lvlm.${r.token}.R_raw`);
          assertRaw(`ort lvlm t${r.token}`, r.llm, Rref.subarray((n - 1) * n));
          assertRaw(`ort lvlm t${r.token} all_v2`, r.allV2!, ref(`rel_all_v2_lvlm.${r.token}.cls_row_raw`));
        }
      } finally {
        await ort.dispose();
      }
    });
  });
}

describe("towers without CLS (SigLIP, strategy full): chain only", async () => {
  const dir = writeTinyCheckpoint({ text: "llama", vision: "siglip", featureLayer: -2 });
  const model = LlavaModel.load(dir);
  const kernels = await createKernels("ts");
  after(async () => {
    model.close();
    await kernels.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const P = model.imageTokenCount;
  const inputs = {
    inputIds: tinyInputIds(P),
    generatedIds: [345, 678, 910],
    pixels: tinyPixelValues(),
    layout: gridLayout(model),
  };

  test("chain = r_img · R_vit over every ViT token (no CLS to drop), both modes", async () => {
    assert.equal(P, model.vision.seqLen);
    for (const mode of ["exact", "incremental"] as const) {
      const res = await relevancyMaps(model, kernels, inputs, {
        mode,
        vision: ["chain"],
        keepMatrices: true,
      });
      assert.deepEqual(res.vitLayers, [0, 1]);
      for (const r of res.tokens) {
        assert.equal(r.chain!.length, P);
        const s0 = res.imagePositions[0];
        const expected = chainFromMatrix(r.llm.subarray(s0, s0 + P), r.matrices!.chainVitR!, P, (i) => i, -1);
        assert.ok(maxAbs(expected) > 0);
        assert.ok(maxAbsDiff(r.chain!, expected) <= 1e-5 * maxAbs(expected), `${mode} t${r.token}`);
      }
    }
  });

  test("vit/all/all_v2 need a CLS token", async () => {
    await assert.rejects(
      relevancyMaps(model, kernels, inputs, { mode: "exact", vision: ["vit"] }),
      /needs a vision tower with a CLS token/,
    );
  });
});

describe("rollouts, normalisation and views on hand-made inputs", () => {
  test("row-vector rollout = row of the matrix rollout (random lower-triangular CAMs)", async () => {
    const kernels = await createKernels("ts");
    const n = 9;
    let s = 17;
    const rnd = () => {
      s = (s * 1103515245 + 12345) % 2147483648;
      return s / 2147483648;
    };
    const cams = Array.from({ length: 3 }, () => {
      const d = new Float32Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) d[i * n + j] = rnd() * 0.5;
      return { data: d, stride: n };
    });
    const R = await rolloutMatrix(kernels, cams, n);
    // Direct product (I + C2)(I + C1)(I + C0) in float64 as a third computation.
    const prod = (a: Float64Array, b: Float64Array) => {
      const c = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let k = 0; k < n; k++) for (let j = 0; j < n; j++) c[i * n + j] += a[i * n + k] * b[k * n + j];
      return c;
    };
    let D = new Float64Array(n * n);
    for (let i = 0; i < n; i++) D[i * n + i] = 1;
    for (const c of cams) {
      const ic = Float64Array.from(c.data);
      for (let i = 0; i < n; i++) ic[i * n + i] += 1;
      D = prod(ic, D);
    }
    assert.ok(maxAbsDiff(R, D) <= 1e-5 * maxAbs(D));
    for (let p = 0; p < n; p++) {
      const row = rolloutRow(cams, p);
      assert.ok(maxAbsDiff(row, D.subarray(p * n, p * n + p + 1)) <= 1e-5 * maxAbs(D));
    }
    const u = Float64Array.from({ length: n }, () => rnd());
    const uR = rolloutLeft(u, cams, n);
    for (let j = 0; j < n; j++) {
      let ref = 0;
      for (let i = 0; i < n; i++) ref += u[i] * D[i * n + j];
      assert.ok(Math.abs(uR[j] - ref) <= 1e-9 * maxAbs(D) * n);
    }
    await kernels.dispose();
  });

  test("cam = mean over heads of the positive part of G ⊙ A", () => {
    const dP = Float32Array.from([1, -2, 3, 0.5, /* head 2 */ -1, 2, 1, 1]);
    const pr = Float32Array.from([0.5, 0.5, 0.25, 0.75, /* head 2 */ 0.5, 0.5, 0.5, 0.5]);
    const cam = camFromGrad(dP, pr, 2, 2, 2);
    assert.deepEqual(Array.from(cam), [(0.5 + 0) / 2, (0 + 1) / 2, (0.75 + 0.5) / 2, (0.375 + 0.5) / 2]);
  });

  test("handle_residual: subtract I, row-normalise (zero rows unchanged), add I", () => {
    const R = Float32Array.from([1, 0, 0, 0.5, 2, 0, 0.2, 0.2, 1.6]);
    const N = handleResidual(R, 3);
    assert.deepEqual(Array.from(N.subarray(0, 3)), [1, 0, 0]);
    assert.ok(maxAbsDiff(N.subarray(3, 6), [0.5 / 1.5, 1 + 1 / 1.5, 0]) < 1e-7);
    assert.ok(maxAbsDiff(N.subarray(6, 9), [0.2, 0.2, 1 + 0.6]) < 1e-6);
  });

  test("word grouping: SentencePiece ▁, byte-level Ġ, separators", () => {
    const sp = groupWords(["▁The", "▁sh", "irt", "'", "s", "▁yellow", ".", "</s>"]);
    assert.deepEqual(
      sp.map((w) => w.text),
      ["The", "shirt", "'", "s", "yellow", ".", "</s>"],
    );
    assert.deepEqual(sp[1].tokens, [1, 2]);
    const bl = groupWords(["The", "Ġsh", "irt", "Ġis", ",", "Ġblue", "Ċ"]);
    assert.deepEqual(
      bl.map((w) => w.text),
      ["The", "shirt", "is", ",", "blue", ""],
    );
    // Word-level vocabulary (no word-start markers anywhere): every token is a word.
    const wl = groupWords(["<s>", "what", "colour", "is", "the", "triangle", "?", "assistant", ":"]);
    assert.deepEqual(
      wl.map((w) => w.text),
      ["<s>", "what", "colour", "is", "the", "triangle", "?", "assistant", ":"],
    );
    // The tool's grouping: after a separator the next ▁-less token continues the separator's word; repeats.
    assert.deepEqual(
      lvlmWordGroups(["▁a", ".", "b", "▁a", "▁a", "▁a"]).map((g) => [g.key, g.tokens]),
      [
        ["▁a", [0]],
        [".b", [1, 2]],
        ["▁a_", [5]],
      ],
    );
  });

  test("views: image grid, text relevancy with the image collapsed, top words vs image, reliance", () => {
    // Prompt: <s> ▁US ER : ▁ [img×4] ▁What ▁col or ? ; p = 13 (first generated token, T = 13).
    const prompt = [
      "<s>",
      "▁US",
      "ER",
      ":",
      "▁",
      "<image>",
      "<image>",
      "<image>",
      "<image>",
      "▁What",
      "▁col",
      "or",
      "?",
    ];
    const T = prompt.length;
    const p = T - 1;
    const row = new Float32Array(p + 1);
    row.set([0.1, 0, 0, 0, 0, 0.3, 0.1, 0.9, 0.2, 0.4, 0.2, 0.4, 0.05]);
    row[p] += 1;
    const img = [5, 6, 7, 8];
    const grid = llmImageMap(row, p, img);
    assert.deepEqual(Array.from(grid.values), Array.from(Float32Array.from([0.3, 0.1, 0.9, 0.2])));
    const sum = 0.1 + 0.3 + 0.1 + 0.9 + 0.2 + 0.4 + 0.2 + 0.4 + 0.05;
    const tr = textRelevancy(row, p, prompt, img);
    assert.equal(tr.length, T - 3);
    assert.equal(tr[5].label, "<image>");
    assert.ok(Math.abs(tr[5].value - (0.3 + 0.1 + 0.9 + 0.2) / 4 / sum) < 1e-6);
    const v = topWordsVsImage(row, p, prompt, img);
    // Words: What (0.4), color (0.3); "?" is a separator. Image max 0.9 beats both.
    assert.deepEqual(
      v.bars.map((b) => b.label),
      ["What", "color", "max_img"],
    );
    assert.ok(Math.abs(v.bars[1].value - 0.3 / sum) < 1e-6);
    assert.equal(v.reliance, 2 / 3);
    const rel = imageReliance([row], [0], prompt, img);
    assert.equal(rel[0].reliance, 2 / 3);
    const wr = wordRows([row, row], [p, p], ["▁a", "b"]);
    assert.equal(wr.length, 1);
    assert.ok(maxAbsDiff(wr[0].row, normalizeRow(row, p)) < 1e-7);
  });
});
