/**
 * Vision-side relevancy of LLaVA-NeXT / OneVision (many tower passes): the tower geometry's sources are the
 * packing's own linear map (unpadding, OneVision's bilinear downsampling, newline rows without sources); with
 * both kernel sets on both fixtures every vision map is finite and non-trivial, each pass's map equals a full
 * rollout over that pass's own matrices, separators have no value on the image, and the views' base /
 * high-res / combined layers follow the documented rule.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { seededRandom } from "../src/generate/sampling.js";
import { decodeImage } from "../src/hf/image-decode.js";
import {
  allV2InitialMap,
  computeRelevancy,
  relevancyMaps,
  rolloutMatrix,
  type VisionRelevancyKind,
} from "../src/interpret/relevancy/index.js";
import type { RelevancyPlan } from "../src/interpret/relevancy/plan.js";
import type { ForwardTape } from "../src/interpret/relevancy/tape.js";
import { towerCams } from "../src/interpret/relevancy/vision.js";
import { imageGeometry, towerRowsToImageTokens } from "../src/interpret/views/image-tokens.js";
import { mapLayer, mapLayerGrids } from "../src/interpret/views/map-layers.js";
import { relevancyImageMaps } from "../src/interpret/views/relevancy-panels.js";
import { createKernels } from "../src/kernels/index.js";
import { separatorTokens } from "../src/models/image-layout.js";
import type { AnyresLlavaModel } from "../src/models/llava_next/model.js";
import { packFeatures } from "../src/models/llava_next/pack.js";
import { gridOfLayout } from "../src/models/llava_next/processor.js";
import { loadModel } from "../src/models/registry.js";
import type { ImageBackwardOptions, TowerSource } from "../src/models/types.js";
import { Run } from "../src/run/run-dir.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { traceWithModel } from "../src/trace.js";
import { ROOT, tempDir } from "./fixture-utils.js";
import { greedyTrace } from "./parity-utils.js";

const FIXTURES = ["llava-next-tiny-clip-llama", "llava-onevision-tiny-qwen2"] as const;

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function close(label: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  const d = maxAbsDiff(got, want);
  assert.ok(d <= 1e-4 * maxAbs(want) + 1e-7, `${label}: max |Δ| ${d} (max ${maxAbs(want)})`);
}

/** Non-trivial: finite, not all zero, not constant. */
function nonTrivial(label: string, v: ArrayLike<number>): void {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < v.length; i++) {
    assert.ok(Number.isFinite(v[i]), `${label}[${i}] = ${v[i]}`);
    lo = Math.min(lo, v[i]);
    hi = Math.max(hi, v[i]);
  }
  assert.ok(hi > 0 && hi > lo, `${label}: trivial (min ${lo}, max ${hi})`);
}

async function prepared(dir: string) {
  const model = loadModel(dir) as AnyresLlavaModel;
  const img = await decodeImage(fs.readFileSync(path.join(dir, "image.png")), "image.png");
  const pre = model.preprocess(img, "default");
  const e = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8"));
  return { model, pre, e };
}

describe("tower geometry of any-resolution models", async () => {
  const kernels = await createKernels("ts");
  after(async () => {
    await kernels.dispose();
  });

  for (const name of FIXTURES) {
    test(`${name}: imageBackward reports pass k's attention gradients in block k (the geometry's pass k)`, async () => {
      const { model, pre } = await prepared(path.join(ROOT, "test/fixtures", name));
      try {
        const geo = model.towerGeometry(pre.layout);
        const enc = await model.encodeImage(kernels, pre.pixels, { layout: pre.layout, tape: true });
        const D = model.info.hiddenSize;
        const block = model.info.vitHeads * geo.seqLen * geo.seqLen;
        // Seed one image token at a time: only the passes among its sources get attention gradients.
        const seps = separatorTokens(pre.layout);
        const picks = [
          0,
          pre.layout.token_count - 2,
          seps.findIndex((x, i) => !x && i >= model.geometry.g ** 2),
        ];
        for (const i of picks) {
          const src = geo.sourcesOf(i);
          assert.ok(src.length > 0, `token ${i} has sources`);
          const d = new Float32Array(enc.count * D);
          d.fill(1, i * D, (i + 1) * D);
          const hit = new Set<number>();
          await model.imageBackward(kernels, enc, d, {
            onLayer: (_l, dP) => {
              assert.equal(dP.length, geo.passes * block);
              for (let k = 0; k < geo.passes; k++)
                if (maxAbs(dP.subarray(k * block, (k + 1) * block)) > 0) hit.add(k);
            },
          });
          assert.deepEqual(
            [...hit].sort((a, b) => a - b),
            [...new Set(src.map((s) => s.pass))].sort((a, b) => a - b),
            `token ${i}`,
          );
        }
      } finally {
        model.close();
      }
    });
  }

  test("towerCams cuts the pass-major gradients into one CAM per pass, in pass order", async () => {
    const passes = 3;
    const Sv = 2;
    const Hv = 2;
    const block = Hv * Sv * Sv;
    const fake = {
      imageBackward: async (_k: unknown, _i: unknown, _d: unknown, o: ImageBackwardOptions) => {
        const dP = Float32Array.from({ length: passes * block }, (_, j) => Math.floor(j / block) + 1);
        o.onLayer!(0, dP, new Float32Array(passes * block).fill(1));
        return {};
      },
    };
    const tape = { model: fake, kernels: null, image: null } as unknown as ForwardTape;
    const plan = { Sv, Hv, passes } as RelevancyPlan;
    const cams = await towerCams(tape, plan, new Float32Array(0), [0, 1]);
    assert.equal(cams.length, passes);
    cams.forEach((c, k) => {
      assert.deepEqual([...c[0].data], new Array(Sv * Sv).fill(k + 1), `pass ${k}`);
      // A layer the backward did not reach has a zero CAM.
      assert.deepEqual([...c[1].data], new Array(Sv * Sv).fill(0));
    });
  });

  for (const name of FIXTURES) {
    test(`${name}: sources are the packing's linear map, newline rows have none`, async () => {
      const { model, pre } = await prepared(path.join(ROOT, "test/fixtures", name));
      try {
        const geo = model.towerGeometry(pre.layout);
        const grid = gridOfLayout(pre.layout, model.processor, model.geometry);
        const n = pre.pixels.shape[0];
        assert.equal(geo.passes, n);
        assert.equal(geo.passes, 1 + grid.tileRows * grid.tileCols);
        // The fixtures cover both cases: NeXT unpads (keeps cells 1:1), OneVision downsamples (blends).
        assert.equal(grid.downsampled, name.includes("onevision"));
        const g = model.geometry.g;
        const first = model.geometry.firstPatchToken;
        const D = 3;
        const rnd = seededRandom(5);
        const perTile = Float32Array.from({ length: n * g * g * D }, () => rnd() - 0.5);
        const packed = packFeatures(perTile, grid, g, D, new Float32Array(D));
        const seps = separatorTokens(pre.layout);
        const P = pre.layout.token_count;
        assert.equal(packed.length, P * D);
        let blended = 0;
        for (let i = 0; i < P; i++) {
          const src: TowerSource[] = geo.sourcesOf(i);
          if (seps[i]) {
            assert.deepEqual(src, [], `separator ${i} has sources`);
            continue;
          }
          assert.ok(src.length >= 1 && src.length <= 4, `token ${i}: ${src.length} sources`);
          const wsum = src.reduce((a, s) => a + s.weight, 0);
          assert.ok(Math.abs(wsum - 1) < 1e-12, `token ${i}: weights sum to ${wsum}`);
          if (i < g * g) assert.deepEqual(src, [{ pass: 0, token: first + i, weight: 1 }]);
          if (src.length > 1) blended++;
          for (let d = 0; d < D; d++) {
            let v = 0;
            for (const s of src) {
              assert.ok(s.pass >= 0 && s.pass < n && s.token >= first && s.token < first + g * g);
              v += s.weight * perTile[(s.pass * g * g + s.token - first) * D + d];
            }
            assert.ok(
              Math.abs(v - packed[i * D + d]) < 1e-6,
              `token ${i}: ${v} vs packed ${packed[i * D + d]}`,
            );
          }
        }
        assert.equal(blended > 0, grid.downsampled);
      } finally {
        model.close();
      }
    });
  }
});

for (const name of FIXTURES) {
  for (const impl of ["ts", "ort"] as const) {
    describe(`${name} vision relevancy with ${impl} kernels`, async () => {
      const dir = path.join(ROOT, "test/fixtures", name);
      const { model, pre, e } = await prepared(dir);
      const kernels = await createKernels(impl);
      after(async () => {
        model.close();
        await kernels.dispose();
      });
      const hasCls = model.info.hasCls;
      const vision: VisionRelevancyKind[] = hasCls ? ["vit", "all", "all_v2", "chain"] : ["chain"];
      const inputs = {
        inputIds: e.input_ids as number[],
        generatedIds: e.generated_ids as number[],
        pixels: pre.pixels,
        layout: pre.layout,
      };
      const G = inputs.generatedIds.length;
      const geo = model.towerGeometry(pre.layout);
      const { passes, seqLen: Sv, cls } = geo;
      const P = pre.layout.token_count;
      const sources = Array.from({ length: P }, (_, i) => geo.sourcesOf(i));
      const res = await relevancyMaps(model, kernels, inputs, {
        mode: "exact",
        vision,
        tokens: [0, G - 1],
        keepMatrices: true,
      });

      test("one row block per pass, each finite and non-trivial", () => {
        assert.equal(res.vitPasses, passes);
        assert.ok(passes > 1);
        for (const r of res.tokens) {
          const blocks: [string, Float32Array | undefined, number][] = [
            ["vit", r.vit, Sv],
            ["all", r.all, Sv],
            ["all_v2", r.allV2, Sv],
            ["chain", r.chain, Sv - (cls >= 0 ? 1 : 0)],
          ];
          for (const [kind, row, w] of blocks) {
            if (!vision.includes(kind as VisionRelevancyKind)) {
              assert.equal(row, undefined);
              continue;
            }
            assert.equal(row!.length, passes * w, `${kind} length`);
            for (let k = 0; k < passes; k++)
              nonTrivial(`t${r.token} ${kind} pass ${k}`, row!.subarray(k * w, (k + 1) * w));
          }
        }
      });

      test("each pass's maps equal full rollouts over that pass's own matrices", async () => {
        const S2 = Sv * Sv;
        for (const r of res.tokens) {
          const m = r.matrices!;
          const block = (a: Float32Array, k: number) => a.subarray(k * S2, (k + 1) * S2);
          for (let k = 0; k < passes; k++) {
            // r̃_k: the LLM row at the image tokens pushed onto pass k's tower tokens through the sources.
            const rk = new Float64Array(Sv);
            sources.forEach((src, i) => {
              for (const s of src) if (s.pass === k) rk[s.token] += s.weight * r.llm[res.imagePositions[i]];
            });
            if (r.chain) {
              const Rv = block(m.chainVitR!, k);
              const want = new Float64Array(Sv);
              for (let a = 0; a < Sv; a++) {
                if (a === cls) continue;
                for (let b = 0; b < Sv; b++) want[b] += rk[a] * Rv[a * Sv + b];
              }
              const w = Sv - (cls >= 0 ? 1 : 0);
              close(
                `t${r.token} chain pass ${k}`,
                r.chain.subarray(k * w, (k + 1) * w),
                want.filter((_, j) => j !== cls),
              );
            }
            if (!hasCls) continue;
            close(
              `t${r.token} vit pass ${k}`,
              r.vit!.subarray(k * Sv, (k + 1) * Sv),
              block(m.vitR!, k).subarray(0, Sv),
            );
            close(
              `t${r.token} all pass ${k}`,
              r.all!.subarray(k * Sv, (k + 1) * Sv),
              block(m.allR!, k).subarray(0, Sv),
            );
            // all_v2 = CLS row of R_v,k · (I + e_0 r̃ᵀ + r̃ e_0ᵀ), R_v,k rolled out from pass k's CAMs alone.
            const camsK = m.vitCams!.map((c) => ({ data: block(c, k), stride: Sv }));
            const v2 = await rolloutMatrix(
              kernels,
              camsK,
              Sv,
              allV2InitialMap(Float32Array.from(rk.subarray(1))),
            );
            close(
              `t${r.token} all_v2 pass ${k}`,
              r.allV2!.subarray(k * Sv, (k + 1) * Sv),
              v2.subarray(0, Sv),
            );
          }
        }
      });

      test("incremental mode (accumulated tower gradients): finite per-pass rows; token 0 equals exact", async () => {
        const inc = await relevancyMaps(model, kernels, inputs, {
          mode: "incremental",
          vision,
          tokens: [0, G - 1],
        });
        assert.equal(inc.vitGradients, "accumulated");
        const ex0 = res.tokens[0];
        for (const r of inc.tokens) {
          for (const [kind, row] of [
            ["vit", r.vit],
            ["chain", r.chain],
          ] as const) {
            if (!row) continue;
            const w = row.length / passes;
            for (let k = 0; k < passes; k++)
              nonTrivial(`incremental t${r.token} ${kind} pass ${k}`, row.subarray(k * w, (k + 1) * w));
          }
        }
        // Step 0 is the prefill backward, and Σ_{t' ≤ 0} of the tower gradients is token 0's own.
        if (hasCls && inc.vitLayers.join() === res.vitLayers.join())
          close("t0 vit", inc.tokens[0].vit!, ex0.vit!);
        close("t0 chain", inc.tokens[0].chain!, ex0.chain!);
      });

      if (!hasCls)
        test("a refusal names what is missing (vit kinds on a tower without CLS)", async () => {
          await assert.rejects(
            relevancyMaps(model, kernels, inputs, { mode: "exact", vision: ["vit"], tokens: [0] }),
            /needs a vision tower with a CLS token/,
          );
        });
    });
  }
}

test("views place per-pass rows on the image tokens through weighted sources", () => {
  // Two passes of 3 tower tokens (CLS at 0): image tokens = base token 1, a blend of pass-1 tokens 1 and 2,
  // a separator, and the CLS token itself (LLaVA's "full" strategy).
  const sources = [
    [{ pass: 0, token: 1, weight: 1 }],
    [
      { pass: 1, token: 1, weight: 0.25 },
      { pass: 1, token: 2, weight: 0.75 },
    ],
    [],
    [{ pass: 0, token: 0, weight: 1 }],
  ];
  const clsRows = [9, 1, 2, 8, 10, 20];
  assert.deepEqual(
    [...towerRowsToImageTokens(clsRows, sources, 3, 0, true)],
    [1, 17.5, Number.NaN, Number.NaN],
  );
  const chainRows = [1, 2, 10, 20];
  assert.deepEqual(
    [...towerRowsToImageTokens(chainRows, sources, 2, 0, false)],
    [1, 17.5, Number.NaN, Number.NaN],
  );
});

describe("relevancy maps of a NeXT run on the picture", async () => {
  for (const name of FIXTURES) {
    test(`${name}: stored per-pass rows become one image map; separators excluded; layers as documented`, async () => {
      const dir = path.join(ROOT, "test/fixtures", name);
      const { model, e } = await prepared(dir);
      const kernels = await createKernels("ts");
      const out = path.join(tempDir("next-rel"), "run");
      try {
        await traceWithModel(model, kernels, greedyTrace(path.join(dir, "image.png"), e.question, 2, out));
        const kinds: VisionRelevancyKind[] = model.info.hasCls ? ["vit", "chain"] : ["chain"];
        await computeRelevancy(out, { mode: "exact", vision: kinds, model, kernels });
        const run = Run.open(out);
        try {
          const { layout, positions, boxes } = run.imageTokens();
          const geo = imageGeometry({ layout, positions, boxes });
          const seps = separatorTokens(layout);
          const grids = mapLayerGrids(geo)!;
          assert.ok(grids && grids.base.name === "base");
          for (const kind of kinds) {
            const view = relevancyImageMaps(run, "exact", kind, "token", true);
            assert.equal(view.items.length, 2);
            for (const it of view.items) {
              assert.equal(it.map.length, layout.token_count);
              it.map.forEach((v, i) => {
                if (seps[i]) assert.equal(v, null, `${kind}: separator ${i} has a value`);
                else assert.ok(v !== null && Number.isFinite(v), `${kind}: token ${i} has no value`);
              });
              const located = it.map.filter((v): v is number => v !== null);
              nonTrivial(`${kind} image map`, located);
              // Layers: base keeps the base grid only, high-res the tiles only, combined = mean with the base
              // value at each high-res cell (its box lies inside one base cell or straddles several).
              const base = mapLayer(it.map, geo, "base");
              const high = mapLayer(it.map, geo, "high-res");
              const comb = mapLayer(it.map, geo, "combined");
              const nb = grids.base.rows * grids.base.cols;
              for (let i = 0; i < it.map.length; i++) {
                if (i < nb) {
                  assert.equal(base[i], it.map[i]);
                  assert.equal(high[i], null);
                  assert.equal(comb[i], it.map[i]);
                } else {
                  assert.equal(base[i], null);
                  assert.equal(high[i], it.map[i]);
                  if (it.map[i] === null) {
                    assert.equal(comb[i], null);
                    continue;
                  }
                  // Independent: the base value at the cell's centre lies between the cell's own value and
                  // the combined one's mirror image (mean of own and base ⇒ base = 2·comb − own) within the
                  // range of the base values under the cell.
                  const b = geo.boxes[i]!;
                  const under = geo.boxes
                    .slice(0, nb)
                    .map((bb, k) => ({ bb, v: it.map[k] }))
                    .filter(({ bb }) => bb && bb[0] < b[2] && bb[2] > b[0] && bb[1] < b[3] && bb[3] > b[1]);
                  const implied = 2 * comb[i]! - it.map[i]!;
                  const vs = under.map((u) => u.v!);
                  if (vs.length === 1) assert.ok(Math.abs(implied - vs[0]) <= 1e-5 * Math.abs(vs[0]) + 1e-9);
                  assert.ok(
                    implied >= Math.min(...vs) - 1e-6 && implied <= Math.max(...vs) + 1e-6,
                    `combined ${comb[i]} at ${i}: implied base ${implied} outside [${Math.min(...vs)}, ${Math.max(...vs)}]`,
                  );
                }
              }
            }
          }
        } finally {
          run.close();
        }
      } finally {
        model.close();
        await kernels.dispose();
        fs.rmSync(path.dirname(out), { recursive: true, force: true });
      }
    });
  }
});
