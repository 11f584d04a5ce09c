/**
 * Qwen2-VL pieces on their own: smart_resize's branches (Python rounding), the patch order (the image
 * re-assembled from pixel_values), the vision tower's rotary ids, the Qwen2.5 window index and its inverse,
 * M-RoPE positions with decode-step deltas, and the config's two layouts.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { loadImageFile } from "../src/hf/image-decode.js";
import { SafetensorsFile } from "../src/hf/safetensors.js";
import { layoutBoxes } from "../src/models/image-layout.js";
import { parseQwenVlConfig } from "../src/models/qwen2_vl/config.js";
import { QwenVlModel } from "../src/models/qwen2_vl/model.js";
import { mropePositions, ropeDelta } from "../src/models/qwen2_vl/positions.js";
import { flattenPatches, patchRowCol, roundHalfEven, smartResize } from "../src/models/qwen2_vl/processor.js";
import { inversePermutation, windowIndex } from "../src/models/qwen2_vl/windows.js";
import { ROOT } from "./fixture-utils.js";

const fixture = (name: string) => path.join(ROOT, "test/fixtures", name);

describe("smart_resize", () => {
  test("Python round: halves to even", () => {
    assert.deepEqual([0.5, 1.5, 2.5, 3.5, 4.5, 2.49, 2.51].map(roundHalfEven), [0, 2, 2, 4, 4, 2, 3]);
  });

  test("round branch, with an exact .5 tie going to the even multiple", () => {
    assert.deepEqual(smartResize(88, 125, 28, 3136, 1003520), { height: 84, width: 112, branch: "round" });
    // 70/28 = 2.5 → 2 (JavaScript's Math.round would give 3), 126/28 = 4.5 → 4.
    assert.deepEqual(smartResize(70, 126, 28, 1, 1e9), { height: 56, width: 112, branch: "round" });
  });

  test("min_pixels branch: scaled up, ceil", () => {
    assert.deepEqual(smartResize(70, 100, 28, 12000, 12845056), {
      height: 112,
      width: 140,
      branch: "min_pixels",
    });
  });

  test("max_pixels branch: scaled down, floor", () => {
    // 1000×2000: beta = sqrt(2e6 / 200704) ≈ 3.157 → floor(1000/3.157/28)·28 = 308, floor(2000/3.157/28)·28 = 616.
    const s = smartResize(1000, 2000, 28, 3136, 200704);
    assert.deepEqual(s, { height: 308, width: 616, branch: "max_pixels" });
    assert.ok(s.height * s.width <= 200704);
  });

  test("an aspect ratio over 200 is refused in one line", () => {
    assert.throws(() => smartResize(10, 3000, 28, 3136, 1e9), /aspect ratio must be at most 200/);
  });
});

describe("patch order", () => {
  test("pixel_values re-assemble the image (merge-window order, [c][t][py][px] rows)", () => {
    const C = 3;
    const H = 56;
    const W = 84;
    const planes = Float32Array.from({ length: C * H * W }, (_, i) => i);
    const { data, grid } = flattenPatches(planes, C, H, W, 14, 2, 2);
    assert.deepEqual(grid, [1, 4, 6]);
    const rowLen = C * 2 * 14 * 14;
    const back = new Float32Array(C * H * W).fill(-1);
    for (let r = 0; r < 24; r++) {
      const [pr, pc] = patchRowCol(r, 6, 2);
      for (let c = 0; c < C; c++)
        for (let t = 0; t < 2; t++)
          for (let py = 0; py < 14; py++)
            for (let px = 0; px < 14; px++) {
              const v = data[r * rowLen + ((c * 2 + t) * 14 + py) * 14 + px];
              const dst = c * H * W + (pr * 14 + py) * W + pc * 14 + px;
              if (t === 1) assert.equal(v, back[dst], "both frames are the image");
              back[dst] = v;
            }
    }
    assert.deepEqual(back, planes);
  });

  test("rows 0..3 are the first 2×2 cell; row 4 starts the next cell to the right", () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 8].map((r) => patchRowCol(r, 8, 2)),
      [
        [0, 0],
        [0, 1],
        [1, 0],
        [1, 1],
        [0, 2],
        [0, 4],
      ],
    );
  });
});

for (const name of ["qwen2-vl-tiny", "qwen2.5-vl-tiny"]) {
  describe(`${name}: rotary ids, windows, positions`, () => {
    const dir = fixture(name);
    const e = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8"));
    const grid = e.image_grid_thw[0] as [number, number, number];

    test("vision rotary ids (row, col) of every pixel_values row", () => {
      const model = QwenVlModel.load(dir);
      const ref = SafetensorsFile.open(path.join(dir, "expected.safetensors"));
      try {
        const ids = model.vision.rotaryIds(grid);
        const want = ref.readInts("vision.rotary_pos_ids");
        const got: number[] = [];
        for (let r = 0; r < ids.n; r++) got.push(ids.data[r], ids.data[ids.n + r]);
        assert.deepEqual(got, want);
      } finally {
        ref.close();
        model.close();
      }
    });

    test("M-RoPE positions of the prompt, rope delta, decode steps at index + delta", () => {
      const [, lh, lw] = e.merged_grid;
      const p = mropePositions(e.input_ids, e.image_token_id, [1, lh, lw]);
      assert.deepEqual(Array.from(p.data), (e.position_ids as number[][]).flat());
      assert.equal(ropeDelta(p), e.rope_deltas[0]);
      const seq = [...e.input_ids, ...e.generated_ids];
      const full = mropePositions(seq, e.image_token_id, [1, lh, lw]);
      (e.decode_positions as number[]).forEach((pos, k) => {
        const i = e.T + k;
        for (let a = 0; a < 3; a++) assert.equal(full.data[a * full.n + i], pos);
        assert.equal(pos, i + e.rope_deltas[0]);
      });
    });
  });
}

describe("Qwen2.5-VL window index", () => {
  const e = JSON.parse(fs.readFileSync(path.join(fixture("qwen2.5-vl-tiny"), "expected.json"), "utf8"));

  test("window_index and cu_window_seqlens as Hugging Face's, and its inverse", () => {
    const w = windowIndex(e.image_grid_thw[0], 2, 2);
    assert.deepEqual(w.windowIndex, e.vision.window_index);
    assert.deepEqual(w.cuWindowSeqlens, e.vision.cu_window_seqlens);
    const inv = inversePermutation(w.windowIndex);
    inv.forEach((j, cell) => {
      assert.equal(w.windowIndex[j], cell);
    });
  });

  test("a grid divisible by the window: the padding's empty windows are dropped", () => {
    const w = windowIndex([1, 8, 8], 2, 2);
    assert.deepEqual(w.cuWindowSeqlens, [0, 16, 32, 48, 64]);
    assert.deepEqual(w.windowIndex, [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]);
  });
});

describe("config layouts", () => {
  test("flat and nested text fields read alike; a missing mrope_section is refused in one line", () => {
    const flat = JSON.parse(fs.readFileSync(path.join(fixture("qwen2-vl-tiny"), "config.json"), "utf8"));
    const nested = JSON.parse(fs.readFileSync(path.join(fixture("qwen2.5-vl-tiny"), "config.json"), "utf8"));
    const a = parseQwenVlConfig(flat);
    const b = parseQwenVlConfig(nested);
    assert.deepEqual(
      [a.text.hiddenSize, a.text.numLayers, a.text.ropeTheta, a.text.tieWordEmbeddings],
      [64, 4, 100, true],
    );
    assert.deepEqual(
      [b.text.hiddenSize, b.text.numLayers, b.text.ropeTheta, b.text.tieWordEmbeddings],
      [64, 3, 300, false],
    );
    assert.deepEqual(a.text.ropeScaling.mropeSection, [2, 3, 3]);
    assert.deepEqual([a.vision.width, a.vision.intermediateSize, a.vision.windowSize], [32, 128, 0]);
    assert.deepEqual([b.vision.width, b.vision.fullAttBlocks, b.vision.outHiddenSize], [32, [1, 3], 64]);
    // transformers v5: rope_parameters, with rope_theta inside.
    const { rope_scaling: _, rope_theta: __, ...noRope } = flat;
    const v5 = parseQwenVlConfig({
      ...noRope,
      rope_parameters: { rope_type: "default", mrope_section: [2, 3, 3], rope_theta: 100 },
    });
    assert.deepEqual([v5.text.ropeTheta, v5.text.ropeScaling.mropeSection], [100, [2, 3, 3]]);
    assert.throws(
      () => parseQwenVlConfig(noRope, "config.json"),
      /^Error: config.json: rope_scaling.mrope_section/,
    );
  });
});

describe("image modes", () => {
  test('"pad": the square around the picture frames the grid; boxes clipped to the picture; "resize" refused', async () => {
    const dir = fixture("qwen2-vl-tiny");
    const model = QwenVlModel.load(dir);
    try {
      const img = await loadImageFile(path.join(dir, "image.png"));
      assert.deepEqual([img.width, img.height], [125, 88]);
      const pre = model.preprocess(img, "pad");
      // 125×125 square (picture at y = 18) → smart_resize 112×112 → 8×8 patches → 4×4 merged cells.
      assert.deepEqual(pre.pixels.grid, [1, 8, 8]);
      assert.deepEqual([pre.seen.width, pre.seen.height], [112, 112]);
      const seg = pre.layout.segments[0];
      assert.ok(seg.kind === "grid");
      assert.deepEqual([seg.rows, seg.cols, seg.frame], [4, 4, [0, -18, 125, 107]]);
      const boxes = layoutBoxes(pre.layout);
      assert.deepEqual(Array.from(boxes.subarray(0, 4)), [0, 0, 31.25, 13.25]);
      assert.deepEqual(Array.from(boxes.subarray(15 * 4, 16 * 4)), [93.75, 75.75, 125, 88]);
      assert.throws(
        () => model.preprocess(img, "resize"),
        /image mode "resize" is not available for qwen2_vl/,
      );
    } finally {
      model.close();
    }
  });
});
