/**
 * Any-resolution geometry (LLaVA-NeXT / OneVision): best canvas, fit resize, unpadding, OneVision's downsampled
 * grid and the processor's image-token count, against the fixture README's worked numbers and Hugging Face's
 * processor tests; and for many random picture sizes the processor's count equals the packed feature count.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { seededRandom } from "../src/generate/sampling.js";
import { ConfigError } from "../src/hf/config.js";
import { layoutProblem } from "../src/models/image-layout.js";
import {
  anyresGrid,
  downsampledGrid,
  patchOutputSize,
  processorTokenCount,
  pyFloorDiv,
  selectBestResolution,
  unpadRange,
} from "../src/models/llava_next/anyres.js";
import { parseAnyresConfig, parseMaxNumPatches } from "../src/models/llava_next/config.js";
import { packFeatures, packFeaturesBackward } from "../src/models/llava_next/pack.js";
import { parseAnyresProcessorConfig, planAnyres } from "../src/models/llava_next/processor.js";

const NEXT_FIXTURE_PINPOINTS: [number, number][] = [
  [56, 112],
  [112, 56],
  [112, 112],
  [112, 168],
  [168, 112],
  [56, 168],
  [168, 56],
];
const OV_FIXTURE_PINPOINTS: [number, number][] = [];
for (let i = 1; i <= 3; i++) for (let j = 1; j <= 3; j++) OV_FIXTURE_PINPOINTS.push([56 * i, 56 * j]);
const VICUNA_PINPOINTS: [number, number][] = [
  [336, 672],
  [672, 336],
  [672, 672],
  [1008, 336],
  [336, 1008],
];

describe("anyres geometry", () => {
  test("README worked numbers: NeXT 160×90 and OneVision 190×100", () => {
    assert.deepEqual(selectBestResolution(160, 90, NEXT_FIXTURE_PINPOINTS), { height: 112, width: 168 });
    assert.deepEqual(patchOutputSize(160, 90, { height: 112, width: 168 }), { height: 95, width: 168 });
    assert.deepEqual(unpadRange(160, 90, 8, 12), { rows: [1, 7], cols: [0, 12] });
    assert.equal(processorTokenCount(160, 90, NEXT_FIXTURE_PINPOINTS, 56, 4, 16, null), 94);

    assert.deepEqual(selectBestResolution(190, 100, OV_FIXTURE_PINPOINTS), { height: 112, width: 168 });
    assert.deepEqual(patchOutputSize(190, 100, { height: 112, width: 168 }), { height: 89, width: 168 });
    assert.deepEqual(unpadRange(190, 100, 8, 12), { rows: [1, 7], cols: [0, 12] });
    assert.deepEqual(downsampledGrid(6, 12, 3, 4), { height: 4, width: 9 });
    assert.equal(processorTokenCount(190, 100, OV_FIXTURE_PINPOINTS, 56, 4, 16, 3), 56);
  });

  test("Hugging Face processor tests: NeXT 1526 (vicuna-7b, 316×500), OneVision 1525 (316×503)", () => {
    // llava-v1.6-vicuna-7b-hf: 336-px tiles, g = 24, "default" drops CLS → 576 base tokens.
    assert.equal(processorTokenCount(316, 500, VICUNA_PINPOINTS, 336, 24, 576, null), 1526);
    // OneVision's processor test: one pinpoint [672, 336], num_image_tokens 576, "default" subtracts 1
    // (anyres_max_9: no downsampling at this size).
    assert.equal(processorTokenCount(316, 503, [[672, 336]], 336, 24, 575, 9), 1525);
  });

  test("ties keep the first pinpoint; less waste wins among equals", () => {
    // A 10×10 picture fits wholly in every canvas: the smallest canvas wastes least.
    assert.deepEqual(
      selectBestResolution(10, 10, [
        [56, 112],
        [56, 56],
        [112, 112],
      ]),
      { height: 56, width: 56 },
    );
    assert.deepEqual(
      selectBestResolution(10, 10, [
        [56, 56],
        [56, 56],
      ]),
      { height: 56, width: 56 },
    );
  });

  test("Python float floor division", () => {
    assert.equal(pyFloorDiv(6, 1.224744871391589), 4);
    assert.equal(pyFloorDiv(12, 1.224744871391589), 9);
    assert.equal(pyFloorDiv(7, 2), 3);
  });

  test("for 300 random sizes the processor's count equals the layout's and the packed rows", () => {
    const rnd = seededRandom(21);
    const cases = [
      { pins: VICUNA_PINPOINTS, tile: 336, g: 24, max: null },
      { pins: NEXT_FIXTURE_PINPOINTS, tile: 56, g: 4, max: null },
      { pins: OV_FIXTURE_PINPOINTS, tile: 56, g: 4, max: 3 },
      { pins: OV_FIXTURE_PINPOINTS, tile: 56, g: 4, max: 1 },
    ];
    for (let k = 0; k < 300; k++) {
      const W = 1 + Math.floor(rnd() * 1500);
      const H = 1 + Math.floor(rnd() * 1500);
      const c = cases[k % cases.length];
      const want = processorTokenCount(W, H, c.pins, c.tile, c.g, c.g * c.g, c.max);
      const grid = anyresGrid(W, H, c.pins, c.tile, c.g, c.max);
      const gg = c.g * c.g;
      const tiles = 1 + grid.tileRows * grid.tileCols;
      const packed = packFeatures(new Float32Array(tiles * gg), grid, c.g, 1, new Float32Array(1));
      assert.equal(packed.length, want, `${W}×${H}`);
      const proc = parseAnyresProcessorConfig(
        { size: { height: c.tile, width: c.tile }, image_grid_pinpoints: c.pins },
        "preprocessor_config.json",
        "llava_onevision",
        c.pins,
      );
      const plan = planAnyres(W, H, "default", proc, {
        g: c.g,
        firstPatchToken: 0,
        maxNumPatches: c.max,
        towerSize: c.tile,
      });
      assert.equal(plan.layout.token_count, want, `${W}×${H} layout`);
      assert.equal(layoutProblem(plan.layout), null);
    }
  });
});

describe("anyres config", () => {
  const vision = {
    model_type: "siglip_vision_model",
    hidden_size: 8,
    intermediate_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    image_size: 28,
    patch_size: 14,
  };
  const text = {
    model_type: "qwen2",
    hidden_size: 8,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    vocab_size: 10,
  };

  test("OneVision defaults: full strategy, last layer, anyres_max_9, 384-px pinpoints", () => {
    const c = parseAnyresConfig({ model_type: "llava_onevision", vision_config: vision, text_config: text });
    assert.equal(c.visionFeatureSelectStrategy, "full");
    assert.deepEqual(c.visionFeatureLayers, [-1]);
    assert.equal(c.maxNumPatches, 9);
    assert.equal(c.gridPinpoints.length, 36);
  });

  test("anyres_max_N parsed as Python's strip does; nonsense refused with the key named", () => {
    assert.equal(parseMaxNumPatches("anyres_max_3", "config.json"), 3);
    assert.throws(() => parseMaxNumPatches("anyres", "config.json"), /vision_aspect_ratio/);
  });

  test('a tower without class token under "default" is refused (a patch would be dropped)', () => {
    assert.throws(
      () =>
        parseAnyresConfig({
          model_type: "llava_onevision",
          vision_feature_select_strategy: "default",
          vision_config: vision,
          text_config: text,
        }),
      (e: Error) => e instanceof ConfigError && /no class token/.test(e.message),
    );
  });

  test("malformed pinpoints name the key", () => {
    assert.throws(
      () =>
        parseAnyresConfig({
          model_type: "llava_next",
          image_grid_pinpoints: [[0, 3]],
          vision_config: { ...vision, model_type: "clip_vision_model" },
          text_config: text,
        }),
      /image_grid_pinpoints/,
    );
  });
});

describe("packing backward", () => {
  test("packFeaturesBackward is the adjoint of packFeatures (unpadding, downsampling, newline)", () => {
    const rnd = seededRandom(7);
    const D = 3;
    const g = 4;
    const seen = new Set<boolean>();
    for (const [W, H, max] of [
      [160, 90, null],
      [190, 100, 3],
      [90, 200, 1],
    ] as [number, number, number | null][]) {
      const grid = anyresGrid(W, H, OV_FIXTURE_PINPOINTS, 56, g, max);
      const nIn = (1 + grid.tileRows * grid.tileCols) * g * g * D;
      const x = Float32Array.from({ length: nIn }, () => rnd() - 0.5);
      const nl = Float32Array.from({ length: D }, () => rnd() - 0.5);
      const packed = packFeatures(x, grid, g, D, nl);
      const y = Float32Array.from({ length: packed.length }, () => rnd() - 0.5);
      const { dPerTile, dNewline } = packFeaturesBackward(y, grid, g, D);
      // pack is affine: <pack(x, nl), y> = <x, dPerTile> + <nl, dNewline>.
      let lhs = 0;
      for (let i = 0; i < y.length; i++) lhs += packed[i] * y[i];
      let rhs = 0;
      for (let i = 0; i < nIn; i++) rhs += x[i] * dPerTile[i];
      for (let d = 0; d < D; d++) rhs += nl[d] * dNewline[d];
      assert.ok(Math.abs(lhs - rhs) < 1e-4, `${W}×${H}: ${lhs} vs ${rhs}`);
      seen.add(grid.downsampled);
    }
    assert.deepEqual([...seen].sort(), [false, true], "cases with and without downsampling");
  });
});
