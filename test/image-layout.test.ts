/**
 * Where image tokens lie in the ORIGINAL picture. For both public fixtures the run's image_token_positions and
 * image_token_boxes equal the LLaVA-1.5 processor's geometry computed independently (shortest edge resized to
 * the crop size, centre crop, patch grid → original pixels; test/processor-geometry.ts), in every image mode.
 * Layouts of other shapes (a base grid plus a tiled grid closed by newline tokens) place and label their
 * tokens, and the views read them through positions, never a contiguous span.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { PNG } from "pngjs";
import sharp from "sharp";
import { decodeImage } from "../src/hf/image-decode.js";
import { imageSizeOf } from "../src/hf/image-size.js";
import { contiguousLayout, DEFAULT_CLEANN_PARAMS, selectNodes } from "../src/interpret/causal/cleann.js";
import {
  imageGeometry,
  imageTokenLabels,
  towerRowToImageTokens,
} from "../src/interpret/views/image-tokens.js";
import { llmImageMap, textRelevancy, topWordsVsImage } from "../src/interpret/views/relevancy-views.js";
import { createKernels } from "../src/kernels/index.js";
import {
  type ImageLayout,
  layoutBoxes,
  layoutProblem,
  tokenPlaces,
  towerTokens,
} from "../src/models/image-layout.js";
import { loadModel } from "../src/models/registry.js";
import { IMAGE_BOXES_TENSOR, IMAGE_POSITIONS_TENSOR, Run } from "../src/run/run-dir.js";
import { traceWithModel } from "../src/trace.js";
import { FIXTURES, loadFixture, tempDir } from "./fixture-utils.js";
import { clipCropGeometry, clipPatchBoxes } from "./processor-geometry.js";

/** The README's numbers for the two fixtures: resized size, crop offsets. */
const README_GEOMETRY = {
  "llava-tiny-llama": { size: [157, 100], resized: [175, 112], left: 31, top: 0 },
  "llava-tiny-gemma": { size: [131, 90], resized: [122, 84], left: 19, top: 0 },
} as const;

function maxBoxDiff(got: Float32Array, want: number[][]): number {
  assert.equal(got.length, want.length * 4);
  let d = 0;
  want.forEach((b, i) => {
    for (let k = 0; k < 4; k++) d = Math.max(d, Math.abs(got[i * 4 + k] - b[k]));
  });
  return d;
}

for (const name of FIXTURES) {
  describe(`${name}: image tokens on the original picture`, async () => {
    const fx = loadFixture(name);
    const e = fx.expected;
    const png = PNG.sync.read(fs.readFileSync(path.join(fx.dir, "image.png")));
    const [W, H] = [png.width, png.height];
    const pp = JSON.parse(fs.readFileSync(path.join(fx.dir, "preprocessor_config.json"), "utf8"));
    const cfg = JSON.parse(fs.readFileSync(path.join(fx.dir, "config.json"), "utf8"));
    const shortest: number = pp.size.shortest_edge;
    const crop: number = pp.crop_size.height;
    const patch: number = cfg.vision_config.patch_size;
    const grid = e.patch_grid[0];
    const model = loadModel(fx.dir);
    const kernels = await createKernels("ts");
    const work = tempDir("layout");
    after(async () => {
      model.close();
      fx.tensors.close();
      await kernels.dispose();
      fs.rmSync(work, { recursive: true, force: true });
    });

    test("the independent geometry reproduces the fixture README", () => {
      const g = clipCropGeometry(W, H, shortest, crop);
      const r = README_GEOMETRY[name];
      assert.deepEqual([W, H], r.size);
      assert.deepEqual([g.resized, g.left, g.top], [r.resized, r.left, r.top]);
    });

    test("a traced run's image_token_positions and image_token_boxes equal the processor's geometry", async () => {
      const out = path.join(work, "run");
      await traceWithModel(model, kernels, {
        image: { bytes: fs.readFileSync(path.join(fx.dir, "image.png")), name: "image.png" },
        prompt: e.question,
        maxNewTokens: 1,
        temperature: 0,
        topP: 1,
        seed: 0,
        imageMode: "default",
        attnDtype: "f16",
        out,
      });
      const run = Run.open(out);
      try {
        const P = e.image_token_count;
        assert.deepEqual(
          run.ints(IMAGE_POSITIONS_TENSOR),
          Array.from({ length: P }, (_, i) => e.image_token_start + i),
        );
        assert.equal(run.info(IMAGE_POSITIONS_TENSOR).dtype, "I64");
        assert.deepEqual(run.info(IMAGE_BOXES_TENSOR).shape, [P, 4]);
        const want = clipPatchBoxes(W, H, shortest, crop, patch, grid);
        const d = maxBoxDiff(run.tensor(IMAGE_BOXES_TENSOR).data, want);
        assert.ok(d <= 1e-4, `max |Δ box| = ${d} px`);
        const layout = run.manifest.image_layout;
        assert.deepEqual(layout.original_size, [W, H]);
        assert.equal(layout.token_count, P);
        const [seg] = layout.segments;
        assert.ok(seg.kind === "grid" && seg.rows === grid && seg.cols === grid && !seg.row_separator);
        // The crop leaves margins on the left and the right that no token covers.
        const xs = want.flatMap((b) => [b[0], b[2]]);
        assert.ok(Math.min(...xs) > 1 && Math.max(...xs) < W - 1, "margins uncovered");
      } finally {
        run.close();
      }
    });

    test("pad mode: the padding lies outside the picture; resize mode: the grid covers all of it", async () => {
      const img = await decodeImage(fs.readFileSync(path.join(fx.dir, "image.png")), "image.png");
      const side = Math.max(W, H);
      const oy = Math.floor((side - H) / 2);
      const ox = Math.floor((side - W) / 2);
      const s = side / crop;
      const clip = (v: number, hi: number) => Math.min(hi, Math.max(0, v));
      const padWant: number[][] = [];
      const resizeWant: number[][] = [];
      for (let r = 0; r < grid; r++)
        for (let c = 0; c < grid; c++) {
          padWant.push([
            clip(c * patch * s - ox, W),
            clip(r * patch * s - oy, H),
            clip((c + 1) * patch * s - ox, W),
            clip((r + 1) * patch * s - oy, H),
          ]);
          resizeWant.push([
            (c * patch * W) / crop,
            (r * patch * H) / crop,
            ((c + 1) * patch * W) / crop,
            ((r + 1) * patch * H) / crop,
          ]);
        }
      const pad = model.preprocess(img, "pad");
      assert.ok(maxBoxDiff(layoutBoxes(pad.layout), padWant) <= 1e-4);
      const top = layoutBoxes(pad.layout).subarray(0, 4);
      // The first row of patches is cut by the padding above the picture (wholly padding for the llama image).
      const visible = Math.max(0, patch * s - oy);
      assert.ok(Math.abs(top[3] - top[1] - visible) < 1e-4 && visible < patch * s - 1, `${top}`);
      if (name === "llava-tiny-llama") assert.equal(visible, 0);
      const resize = model.preprocess(img, "resize");
      assert.ok(maxBoxDiff(layoutBoxes(resize.layout), resizeWant) <= 1e-4);
    });
  });
}

describe("layouts of other shapes", () => {
  // LLaVA-NeXT's shape: a 2×2 base thumbnail of the whole 160×90 picture, then a 2×3 grid of the unpadded
  // canvas, each row closed by an image_newline token.
  const layout: ImageLayout = {
    original_size: [160, 90],
    token_count: 4 + 2 * 4,
    segments: [
      {
        kind: "grid",
        name: "base",
        rows: 2,
        cols: 2,
        row_separator: false,
        frame: [0, 0, 160, 90],
        tower: { pass: 0, first_token: 1 },
      },
      { kind: "grid", name: "tiles", rows: 2, cols: 3, row_separator: true, frame: [0, -10, 160, 100] },
    ],
  };

  test("places, boxes (NaN for separators, clipped at the picture) and labels", () => {
    assert.equal(layoutProblem(layout), null);
    assert.match(layoutProblem({ ...layout, token_count: 11 }) ?? "", /segments hold 12 tokens/);
    const places = tokenPlaces(layout);
    assert.deepEqual(
      places.map((p) => p.cell),
      [0, 1, 2, 3, 0, 1, 2, -1, 3, 4, 5, -1],
    );
    const boxes = layoutBoxes(layout);
    assert.deepEqual(Array.from(boxes.subarray(4 * 1, 4 * 2)), [80, 0, 160, 45]);
    assert.ok(Array.from(boxes.subarray(4 * 7, 4 * 8)).every(Number.isNaN), "newline has no box");
    // Tile (0, 2): x 106.67…160, y −10…45 clipped to 0…45.
    const t = Array.from(boxes.subarray(4 * 6, 4 * 7));
    assert.ok(Math.abs(t[0] - 320 / 3) < 1e-4 && t[1] === 0 && t[2] === 160 && t[3] === 45, `${t}`);
    assert.deepEqual(imageTokenLabels(layout).slice(3, 8), [
      "base 1,1",
      "tiles 0,0",
      "tiles 0,1",
      "tiles 0,2",
      "newline 0",
    ]);
    assert.deepEqual(
      towerTokens(layout).map((x) => x.token),
      [1, 2, 3, 4, -1, -1, -1, -1, -1, -1, -1, -1],
    );
    // A CLS row [cls, t1, t2, t3, t4] lands on the base cells only.
    const v = towerRowToImageTokens([9, 1, 2, 3, 4], layout);
    assert.deepEqual(Array.from(v.subarray(0, 4)), [1, 2, 3, 4]);
    assert.ok(Array.from(v.subarray(4)).every(Number.isNaN));
    const g = imageGeometry({
      positions: Array.from({ length: 12 }, (_, i) => 3 + i),
      boxes,
      layout,
    });
    assert.equal(g.boxes[7], null);
    assert.deepEqual(
      g.grids.map((x) => [x.name, x.first]),
      [
        ["base", 0],
        ["tiles", 4],
      ],
    );
  });

  test("views and CLEANN read image tokens by position, not as one span", () => {
    // Image tokens at 3, 4, 6, 7 (position 5 is text between them), T = 10.
    const pos = [3, 4, 6, 7];
    const prompt = ["<s>", "▁a", "▁b", "<image>", "<image>", "▁mid", "<image>", "<image>", "▁q", "?"];
    const p = 9;
    const row = Float32Array.from([0, 0.1, 0.1, 0.5, 0.2, 0.05, 0.3, 0.4, 0.2, 1]);
    assert.deepEqual(
      Array.from(llmImageMap(row, p, pos).values),
      Array.from(Float32Array.from([0.5, 0.2, 0.3, 0.4])),
    );
    const tr = textRelevancy(row, p, prompt, pos, false);
    assert.deepEqual(
      tr.map((x) => x.label),
      ["<s>", "a", "b", "<image>", "mid", "q", "?"],
    );
    assert.deepEqual(tr[3].positions, pos);
    assert.ok(Math.abs(tr[3].value - 0.35) < 1e-6);
    assert.equal(topWordsVsImage(row, p, prompt, pos, { k: 1 }).bars.at(-1)!.label, "max_img");
    const w = Array.from({ length: 10 }, (_, j) => [0, 0, 0, 0.3, 0.01, 0.2, 0.25, 0.02, 0.1, 0.05][j]);
    const sel = selectNodes(w, 9, { imagePositions: pos }, DEFAULT_CLEANN_PARAMS);
    assert.deepEqual(sel.imageTokens.slice(0, 2), [3, 6], "the best image positions, never the text at 5");
    assert.deepEqual(sel.textTokens, [8], "text after the last image token");
    assert.deepEqual(contiguousLayout(5, 3).imagePositions, [5, 6, 7]);
  });
});

/** A JPEG with an EXIF APP1 carrying the given orientation (big-endian TIFF, one IFD entry). */
async function jpegWithExif(width: number, height: number, orientation: number): Promise<Uint8Array> {
  const rgb = new Uint8Array(width * height * 3).map((_, i) => (i * 13) % 256);
  const plain = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
  const tiff = [
    0x4d,
    0x4d,
    0,
    42,
    0,
    0,
    0,
    8,
    0,
    1,
    0x01,
    0x12,
    0,
    3,
    0,
    0,
    0,
    1,
    0,
    orientation,
    0,
    0,
    0,
    0,
    0,
    0,
  ];
  const payload = [0x45, 0x78, 0x69, 0x66, 0, 0, ...tiff];
  const app1 = [0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 255, ...payload];
  return Uint8Array.from([...plain.subarray(0, 2), ...app1, ...plain.subarray(2)]);
}

describe("image size from the header (what format-1 runs are mapped with)", () => {
  test("PNG and JPEG sizes equal the decoded ones, EXIF rotation included", async () => {
    const cases: [string, Uint8Array][] = [
      ["png", fs.readFileSync(path.join(loadFixture("llava-tiny-gemma").dir, "image.png"))],
      ["jpeg", await jpegWithExif(20, 12, 1)],
      ["jpeg rotated 90°", await jpegWithExif(20, 12, 6)],
    ];
    for (const [label, bytes] of cases) {
      const img = await decodeImage(bytes, label);
      assert.deepEqual(imageSizeOf(bytes), [img.width, img.height], label);
    }
    assert.deepEqual(imageSizeOf(await jpegWithExif(20, 12, 6)), [12, 20]);
    assert.equal(imageSizeOf(new Uint8Array([1, 2, 3])), null);
  });
});
