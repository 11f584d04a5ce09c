import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import * as zlib from "node:zlib";
import { PNG } from "pngjs";
import sharp from "sharp";
import {
  applyExifOrientation,
  decodeImage,
  encodePng,
  ImageError,
  loadImageFile,
  type RgbImage,
  readExifOrientation,
} from "../src/hf/image-decode.js";
import {
  centerCrop,
  denormalizeToImage,
  expandToSquare,
  parseImageProcessorConfig,
  preprocessImage,
  resizePil,
  shortestEdgeResizeSize,
} from "../src/hf/image-processor.js";
import { SafetensorsFile } from "../src/hf/safetensors.js";

// dist/test/image.test.js → repository root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const FIXTURES = path.join(ROOT, "test", "fixtures");

function countMismatches(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, "length");
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

function pixel(img: RgbImage, x: number, y: number): number[] {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

function solid(w: number, h: number, rgb: [number, number, number]): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) data.set(rgb, i * 3);
  return { width: w, height: h, data };
}

/** Deterministic pseudo-random RGB image (LCG). */
function noise(w: number, h: number, seed: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s >>> 24;
  }
  return { width: w, height: h, data };
}

async function assertImageError(fn: () => unknown, file: string, re?: RegExp): Promise<void> {
  await assert.rejects(
    async () => fn(),
    (e: unknown) => {
      assert.ok(e instanceof ImageError, `expected ImageError, got ${e}`);
      assert.ok(e.message.includes(file), `message should name ${file}: ${e.message}`);
      assert.ok(!e.message.includes("\n"), "one-line message");
      if (re) assert.match(e.message, re);
      return true;
    },
  );
}

for (const name of ["llava-tiny-llama", "llava-tiny-gemma"]) {
  const dir = path.join(FIXTURES, name);
  const expected = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8"));
  const img = await loadImageFile(path.join(dir, expected.image.file));
  describe(`image preprocessing vs HF reference: ${name}`, () => {
    const modelCfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    const ppJson = JSON.parse(fs.readFileSync(path.join(dir, "preprocessor_config.json"), "utf8"));
    const st = SafetensorsFile.open(path.join(dir, "expected.safetensors"));
    const cfg = parseImageProcessorConfig(
      ppJson,
      path.join(dir, "preprocessor_config.json"),
      modelCfg.vision_config.model_type ?? "clip_vision_model",
      modelCfg.vision_config.image_size,
    );
    const res = preprocessImage(img, cfg, "default");

    it("decodes image.png at the size in expected.json", () => {
      assert.equal(img.width, expected.image.width);
      assert.equal(img.height, expected.image.height);
      assert.equal(img.data.length, img.width * img.height * 3);
    });

    it("resize matches image.resized_uint8 exactly", () => {
      const shape = st.info("image.resized_uint8").shape;
      assert.deepEqual([res.resized.height, res.resized.width, 3], shape);
      assert.deepEqual([res.resized.height, res.resized.width], expected.image.resized_size_hw);
      const ref = st.readInts("image.resized_uint8");
      const bad = countMismatches(res.resized.data, ref);
      console.log(`${name}: resized mismatching bytes = ${bad} / ${ref.length}`);
      assert.equal(bad, 0);
    });

    it("center crop matches image.processed_uint8 exactly", () => {
      const shape = st.info("image.processed_uint8").shape;
      assert.deepEqual([res.processed.height, res.processed.width, 3], shape);
      const ref = st.readInts("image.processed_uint8");
      const bad = countMismatches(res.processed.data, ref);
      console.log(`${name}: processed mismatching bytes = ${bad} / ${ref.length}`);
      assert.equal(bad, 0);
      // The crop offset recorded in expected.json.
      const [top, left] = expected.image.crop_top_left;
      assert.deepEqual(pixel(res.processed, 0, 0), pixel(res.resized, left, top));
    });

    it("pixel_values are bit-exact", () => {
      const shape = st.info("pixel_values").shape;
      assert.deepEqual([1, 3, res.height, res.width], shape);
      const ref = st.readF32("pixel_values");
      assert.equal(res.pixelValues.length, ref.length);
      let maxDiff = 0;
      let bad = 0;
      for (let i = 0; i < ref.length; i++) {
        const d = Math.abs(res.pixelValues[i] - ref[i]);
        if (d > maxDiff) maxDiff = d;
        if (!Object.is(res.pixelValues[i], ref[i])) bad++;
      }
      console.log(`${name}: pixel_values max |diff| = ${maxDiff}, non-identical = ${bad} / ${ref.length}`);
      assert.equal(maxDiff, 0);
      assert.equal(bad, 0);
    });

    it("denormalize round-trips to the processed image within 1", () => {
      const back = denormalizeToImage(res.pixelValues, res.height, res.width, cfg);
      let worst = 0;
      for (let i = 0; i < back.data.length; i++)
        worst = Math.max(worst, Math.abs(back.data[i] - res.processed.data[i]));
      assert.ok(worst <= 1, `max deviation ${worst}`);
    });

    it("encodePng → decodeImage is lossless", async () => {
      const again = await decodeImage(encodePng(res.processed), "roundtrip.png");
      assert.equal(again.width, res.processed.width);
      assert.equal(again.height, res.processed.height);
      assert.equal(countMismatches(again.data, res.processed.data), 0);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------

const TOWER_CLIP = { size: { shortest_edge: 6 }, crop_size: { height: 6, width: 6 } };

describe("Pillow resize semantics", () => {
  const filters = ["bicubic", "bilinear", "nearest", "lanczos", "box", "hamming"] as const;

  it("a constant image stays constant, up- and downscaling, integer and fractional ratios", () => {
    const src = solid(13, 7, [200, 3, 255]);
    for (const f of filters) {
      for (const [w, h] of [
        [5, 3],
        [40, 21],
        [13, 20],
        [4, 7],
        [1, 1],
      ]) {
        const out = resizePil(src, w, h, f);
        assert.equal(out.width, w);
        assert.equal(out.height, h);
        for (let i = 0; i < w * h; i++) {
          assert.deepEqual([...out.data.subarray(i * 3, i * 3 + 3)], [200, 3, 255], `${f} ${w}x${h}`);
        }
      }
    }
  });

  it("resizing to the same size is the identity (a copy)", () => {
    const src = noise(9, 5, 7);
    for (const f of filters) {
      const out = resizePil(src, 9, 5, f);
      assert.equal(countMismatches(out.data, src.data), 0);
      assert.notEqual(out.data, src.data);
    }
  });

  it("2x1 → 1x1 averages with Pillow's fixed-point rounding (half up)", () => {
    // Both taps weigh 0.5 = 2^21 / 2^22: out = (a + b + 1) >> 1.
    for (const f of ["bilinear", "bicubic"] as const) {
      const img: RgbImage = { width: 2, height: 1, data: new Uint8Array([10, 0, 255, 21, 1, 254]) };
      assert.deepEqual([...resizePil(img, 1, 1, f).data], [16, 1, 255], f);
    }
  });

  it("2x1 → 4x1 bilinear upscaling: edge taps clamp, inner taps weigh 3/4 and 1/4", () => {
    const img: RgbImage = { width: 2, height: 1, data: new Uint8Array([0, 100, 40, 200, 0, 40]) };
    const out = resizePil(img, 4, 1, "bilinear");
    const red = [0, 3, 6, 9].map((i) => out.data[i]);
    const green = [1, 4, 7, 10].map((i) => out.data[i]);
    assert.deepEqual(red, [0, 50, 150, 200]);
    assert.deepEqual(green, [100, 75, 25, 0]);
    assert.deepEqual(
      [2, 5, 8, 11].map((i) => out.data[i]),
      [40, 40, 40, 40],
    );
  });

  it("a vertical-only resize equals the transposed horizontal-only resize", () => {
    const src = noise(3, 11, 99);
    const transpose = (im: RgbImage): RgbImage => applyExifOrientation(im, 5);
    for (const f of ["bicubic", "bilinear", "lanczos"] as const) {
      const v = resizePil(src, 3, 4, f);
      const h = transpose(resizePil(transpose(src), 4, 3, f));
      assert.equal(countMismatches(v.data, h.data), 0, f);
    }
  });

  it("nearest samples pixel centres like Pillow's affine scaler", () => {
    const img: RgbImage = { width: 4, height: 1, data: new Uint8Array([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]) };
    assert.deepEqual([...resizePil(img, 2, 1, "nearest").data], [2, 2, 2, 4, 4, 4]);
    const up = resizePil({ width: 2, height: 1, data: new Uint8Array([5, 5, 5, 9, 9, 9]) }, 4, 1, "nearest");
    assert.deepEqual([...up.data], [5, 5, 5, 5, 5, 5, 9, 9, 9, 9, 9, 9]);
  });

  it("bicubic downscale overshoot is clipped to 0..255", () => {
    // A sharp step makes the a=-0.5 cubic ring; results must stay within uint8 and keep the flat ends.
    const w = 24;
    const data = new Uint8Array(w * 3);
    for (let x = 12; x < w; x++) data.fill(255, x * 3, x * 3 + 3);
    const out = resizePil({ width: w, height: 1, data }, 10, 1, "bicubic");
    assert.equal(out.data[0], 0);
    assert.equal(out.data[out.data.length - 1], 255);
  });
});

describe("HF size rules", () => {
  it("shortest edge keeps the aspect with int() truncation", () => {
    assert.deepEqual(shortestEdgeResizeSize(157, 100, 112), { width: 175, height: 112 });
    assert.deepEqual(shortestEdgeResizeSize(100, 157, 112), { width: 112, height: 175 });
    assert.deepEqual(shortestEdgeResizeSize(131, 90, 84), { width: 122, height: 84 });
    assert.deepEqual(shortestEdgeResizeSize(50, 50, 30), { width: 30, height: 30 });
  });

  it("center crop pads with zeros when the image is smaller than the crop", () => {
    const img = solid(3, 2, [9, 9, 9]);
    const out = centerCrop(img, 5, 6);
    // top = floor((2-5)/2) = -2 → image rows at 2..3; left = floor((3-6)/2) = -2 → columns 2..4.
    for (let y = 0; y < 5; y++) {
      for (let x = 0; x < 6; x++) {
        const inside = y >= 2 && y < 4 && x >= 2 && x < 5;
        assert.deepEqual(pixel(out, x, y), inside ? [9, 9, 9] : [0, 0, 0], `(${x},${y})`);
      }
    }
  });

  it("parses CLIP defaults, bare-number and {height,width} sizes", () => {
    const d = parseImageProcessorConfig({}, "p.json", "clip_vision_model", 224);
    assert.equal(d.shortestEdge, 224);
    assert.deepEqual(d.cropSize, { height: 224, width: 224 });
    assert.equal(d.resample, "bicubic");
    assert.deepEqual(d.imageMean, [0.48145466, 0.4578275, 0.40821073]);
    assert.deepEqual(d.padColor, [122, 116, 104]);
    assert.equal(d.rescaleFactor, 1 / 255);
    const bare = parseImageProcessorConfig({ size: 30, crop_size: 30 }, "p.json", "clip_vision_model", 30);
    assert.equal(bare.shortestEdge, 30);
    assert.deepEqual(bare.cropSize, { height: 30, width: 30 });
    const hw = parseImageProcessorConfig(
      { size: { height: 30, width: 30 }, do_center_crop: false },
      "p.json",
      "clip_vision_model",
      30,
    );
    assert.equal(hw.shortestEdge, null);
    assert.deepEqual(hw.resizeTo, { height: 30, width: 30 });
    const out = preprocessImage(noise(50, 20, 3), hw);
    assert.deepEqual([out.width, out.height], [30, 30]);
  });

  it("rejects malformed configs and ones that cannot feed the tower", () => {
    assert.throws(
      () => parseImageProcessorConfig({ resample: 9 }, "bad.json", "clip_vision_model", 224),
      /bad\.json/,
    );
    assert.throws(
      () => parseImageProcessorConfig({ image_mean: [1, 2] }, "bad.json", "clip_vision_model", 224),
      /image_mean/,
    );
    assert.throws(() => parseImageProcessorConfig({}, "bad.json", "clip_vision_model", 336), /336/);
    assert.throws(
      () => parseImageProcessorConfig({ do_center_crop: false }, "bad.json", "clip_vision_model", 224),
      /bad\.json/,
    );
    assert.throws(() => parseImageProcessorConfig([], "bad.json", "clip_vision_model", 224), /bad\.json/);
  });
});

describe("SigLIP processor", () => {
  it("resizes straight to size x size (bilinear default, no crop) and normalizes with 0.5/0.5", () => {
    const cfg = parseImageProcessorConfig(
      { size: { height: 8, width: 8 } },
      "s.json",
      "siglip_vision_model",
      8,
    );
    assert.equal(cfg.resample, "bilinear");
    assert.equal(cfg.doCenterCrop, false);
    assert.deepEqual(cfg.imageStd, [0.5, 0.5, 0.5]);
    const img = noise(20, 11, 5);
    const out = preprocessImage(img, cfg);
    assert.deepEqual([out.width, out.height], [8, 8]);
    assert.equal(countMismatches(out.processed.data, resizePil(img, 8, 8, "bilinear").data), 0);
    for (const [c, x, y] of [
      [0, 0, 0],
      [1, 3, 5],
      [2, 7, 7],
    ]) {
      const u8 = out.processed.data[(y * 8 + x) * 3 + c];
      const want = Math.fround(Math.fround(Math.fround(u8 / 255) - 0.5) / 0.5);
      assert.equal(out.pixelValues[c * 64 + y * 8 + x], want);
    }
    // All values in [-1, 1].
    for (const v of out.pixelValues) assert.ok(v >= -1 && v <= 1);
  });

  it("a bare-number SigLIP size is square; defaults are 224", () => {
    assert.deepEqual(parseImageProcessorConfig({ size: 12 }, "s.json", "siglip_vision_model", 12).resizeTo, {
      height: 12,
      width: 12,
    });
    assert.deepEqual(parseImageProcessorConfig({}, "s.json", "siglip_vision_model", 224).resizeTo, {
      height: 224,
      width: 224,
    });
  });
});

describe("LVLM-Interpret image modes", () => {
  const cfg = parseImageProcessorConfig(TOWER_CLIP, "c.json", "clip_vision_model", 6);

  it("pad: square canvas in the mean colour, image centred", () => {
    const img = solid(6, 2, [10, 20, 30]);
    const out = preprocessImage(img, cfg, "pad");
    assert.deepEqual([out.width, out.height], [6, 6]);
    for (let y = 0; y < 6; y++) {
      for (let x = 0; x < 6; x++) {
        assert.deepEqual(pixel(out.processed, x, y), y === 2 || y === 3 ? [10, 20, 30] : [122, 116, 104]);
      }
    }
  });

  it("pad: odd differences put the extra row/column after the image (offset floors)", () => {
    const tall = expandToSquare(solid(2, 5, [1, 2, 3]), [7, 7, 7]);
    assert.deepEqual([tall.width, tall.height], [5, 5]);
    const cols = [0, 1, 2, 3, 4].map((x) => pixel(tall, x, 0)[0]);
    assert.deepEqual(cols, [7, 1, 1, 7, 7]);
    const sq = solid(4, 4, [5, 5, 5]);
    assert.equal(expandToSquare(sq, [0, 0, 0]), sq);
  });

  it("resize: first squashes to the tower size (bicubic), so nothing is cropped away", () => {
    const img = noise(30, 9, 11);
    const out = preprocessImage(img, cfg, "resize");
    const squashed = resizePil(img, 6, 6, "bicubic");
    assert.equal(countMismatches(out.processed.data, squashed.data), 0);
    const dflt = preprocessImage(img, cfg, "default");
    assert.ok(countMismatches(dflt.processed.data, squashed.data) > 0, "default mode crops instead");
  });
});

// ---------------------------------------------------------------------------------------------------------------

/** A JPEG with an APP1 EXIF block (IFD0 with just the Orientation tag) inserted after SOI. */
async function jpegWithOrientation(
  img: RgbImage,
  orientation: number,
  littleEndian: boolean,
): Promise<Buffer> {
  const enc = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .jpeg({ quality: 100 })
    .toBuffer();
  const tiff = Buffer.alloc(8 + 2 + 12 + 4);
  const w16 = (v: number, o: number) => (littleEndian ? tiff.writeUInt16LE(v, o) : tiff.writeUInt16BE(v, o));
  const w32 = (v: number, o: number) => (littleEndian ? tiff.writeUInt32LE(v, o) : tiff.writeUInt32BE(v, o));
  tiff.write(littleEndian ? "II" : "MM", 0, "latin1");
  w16(42, 2);
  w32(8, 4);
  w16(1, 8);
  w16(0x0112, 10);
  w16(3, 12);
  w32(1, 14);
  w16(orientation, 18);
  w32(0, 22);
  const payload = Buffer.concat([Buffer.from("Exif\0\0", "latin1"), tiff]);
  const seg = Buffer.alloc(4);
  seg.writeUInt16BE(0xffe1, 0);
  seg.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([enc.subarray(0, 2), seg, payload, enc.subarray(2)]);
}

describe("EXIF orientation", () => {
  // 32x16: top-left 16x8 quadrant red, the rest dark grey; 8-aligned blocks survive JPEG well.
  const W = 32;
  const H = 16;
  const base = solid(W, H, [40, 40, 40]);
  for (let y = 0; y < 8; y++) for (let x = 0; x < 16; x++) base.data.set([230, 20, 20], (y * W + x) * 3);
  const isRed = (p: number[]) => p[0] > 180 && p[1] < 80 && p[2] < 80;
  const isGrey = (p: number[]) =>
    Math.abs(p[0] - 40) < 25 && Math.abs(p[1] - 40) < 25 && Math.abs(p[2] - 40) < 25;

  it("reads the tag in both byte orders", async () => {
    const j6 = await jpegWithOrientation(base, 6, false);
    const j3 = await jpegWithOrientation(base, 3, true);
    const tiffOf = (b: Uint8Array) => b.subarray(2 + 4 + 6);
    assert.equal(readExifOrientation(tiffOf(j6)), 6);
    assert.equal(readExifOrientation(tiffOf(j3)), 3);
    assert.equal(readExifOrientation(new Uint8Array([1, 2, 3])), undefined);
  });

  it("orientation 1 (no transform) keeps the layout", async () => {
    const img = await decodeImage(await jpegWithOrientation(base, 1, false), "o1.jpg");
    assert.deepEqual([img.width, img.height], [W, H]);
    assert.ok(isRed(pixel(img, 4, 4)));
    assert.ok(isGrey(pixel(img, 28, 12)));
  });

  it("orientation 6 rotates 90° clockwise", async () => {
    const img = await decodeImage(await jpegWithOrientation(base, 6, false), "o6.jpg");
    assert.deepEqual([img.width, img.height], [H, W]);
    // Source top-left quadrant → top-right after a clockwise quarter turn.
    assert.ok(isRed(pixel(img, 12, 4)), `${pixel(img, 12, 4)}`);
    assert.ok(isRed(pixel(img, 12, 11)));
    assert.ok(isGrey(pixel(img, 4, 4)));
    assert.ok(isGrey(pixel(img, 12, 28)));
  });

  it("orientation 3 rotates 180°", async () => {
    const img = await decodeImage(await jpegWithOrientation(base, 3, true), "o3.jpg");
    assert.deepEqual([img.width, img.height], [W, H]);
    assert.ok(isRed(pixel(img, 28, 12)));
    assert.ok(isGrey(pixel(img, 4, 4)));
  });

  it("applyExifOrientation matches PIL's transposes on a 3x2 image", () => {
    // Pixels numbered 0..5 row-major (value in the red channel).
    const img: RgbImage = {
      width: 3,
      height: 2,
      data: new Uint8Array([0, 1, 2, 3, 4, 5].flatMap((v) => [v, 0, 0])),
    };
    const red = (im: RgbImage) => Array.from({ length: im.width * im.height }, (_, i) => im.data[i * 3]);
    assert.deepEqual(red(applyExifOrientation(img, 2)), [2, 1, 0, 5, 4, 3]);
    assert.deepEqual(red(applyExifOrientation(img, 3)), [5, 4, 3, 2, 1, 0]);
    assert.deepEqual(red(applyExifOrientation(img, 4)), [3, 4, 5, 0, 1, 2]);
    assert.deepEqual(red(applyExifOrientation(img, 5)), [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(red(applyExifOrientation(img, 6)), [3, 0, 4, 1, 5, 2]);
    assert.deepEqual(red(applyExifOrientation(img, 7)), [5, 2, 4, 1, 3, 0]);
    assert.deepEqual(red(applyExifOrientation(img, 8)), [2, 5, 1, 4, 0, 3]);
    assert.equal(applyExifOrientation(img, 6).width, 2);
  });
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** A hand-built PNG: rows are the packed scanline bytes (filter type 0 is prepended). */
function makePng(
  width: number,
  height: number,
  bitDepth: number,
  colorType: number,
  rows: number[][],
  extra: [string, Uint8Array][] = [],
): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colorType;
  const raw = Buffer.from(rows.flatMap((r) => [0, ...r]));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    ...extra.map(([t, d]) => pngChunk(t, d)),
    pngChunk("IDAT", zlib.deflateSync(raw)),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}

describe("PNG decoding", () => {
  it("drops alpha, expands grayscale, keeps the high byte of 16-bit samples", async () => {
    const rgba = new PNG({ width: 2, height: 1 });
    rgba.data = Buffer.from([10, 20, 30, 0, 40, 50, 60, 128]);
    const a = await decodeImage(PNG.sync.write(rgba), "rgba.png");
    assert.deepEqual([...a.data], [10, 20, 30, 40, 50, 60]);

    const grey = new PNG({ width: 2, height: 1 });
    grey.data = Buffer.from([77, 77, 77, 255, 200, 200, 200, 255]);
    const g = await decodeImage(PNG.sync.write(grey, { colorType: 0 }), "grey.png");
    assert.deepEqual([...g.data], [77, 77, 77, 200, 200, 200]);

    // pngjs reads 16-bit input as native Uint16 RGBA samples.
    const deep = new PNG({ width: 2, height: 1 });
    deep.data = Buffer.from(
      new Uint16Array([0x12ff, 0xab00, 0x3480, 0xffff, 0x00ff, 0xff00, 0x8000, 0xffff]).buffer,
    );
    const d = await decodeImage(PNG.sync.write(deep, { colorType: 2, bitDepth: 16 }), "deep.png");
    assert.deepEqual([...d.data], [0x12, 0xab, 0x34, 0x00, 0xff, 0x80]);
  });

  it("palette images map to their colours; palette alpha is dropped", async () => {
    const plte = new Uint8Array([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 8, 7]);
    const trns = new Uint8Array([0, 128, 255, 0]);
    // 2-bit indices 0,1,2,3 packed into one byte.
    const png = makePng(
      4,
      1,
      2,
      3,
      [[0b00011011]],
      [
        ["PLTE", plte],
        ["tRNS", trns],
      ],
    );
    assert.deepEqual([...(await decodeImage(png, "pal.png")).data], [...plte]);
  });

  it("a tRNS colour key keeps the keyed colour (RGB and grey)", async () => {
    const key = new Uint8Array([0, 1, 0, 2, 0, 3]);
    const rgb = makePng(2, 1, 8, 2, [[1, 2, 3, 4, 5, 6]], [["tRNS", key]]);
    assert.deepEqual([...(await decodeImage(rgb, "key.png")).data], [1, 2, 3, 4, 5, 6]);
    const grey = makePng(2, 1, 8, 0, [[7, 9]], [["tRNS", new Uint8Array([0, 7])]]);
    assert.deepEqual([...(await decodeImage(grey, "gkey.png")).data], [7, 7, 7, 9, 9, 9]);
  });

  it("low bit depths scale to 0..255", async () => {
    const one = makePng(3, 1, 1, 0, [[0b10100000]]);
    assert.deepEqual([...(await decodeImage(one, "1bit.png")).data], [255, 255, 255, 0, 0, 0, 255, 255, 255]);
    const four = makePng(2, 1, 4, 0, [[0x5f]]);
    assert.deepEqual([...(await decodeImage(four, "4bit.png")).data], [85, 85, 85, 255, 255, 255]);
  });

  it("a PNG eXIf orientation is applied", async () => {
    const tiff = Buffer.from([
      0x4d, 0x4d, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0,
    ]);
    // 2x1 [A, B] rotated 90° counter-clockwise (orientation 8) → 1x2 [B; A].
    const png = makePng(2, 1, 8, 2, [[1, 1, 1, 2, 2, 2]], [["eXIf", tiff]]);
    const img = await decodeImage(png, "exif.png");
    assert.deepEqual([img.width, img.height], [1, 2]);
    assert.deepEqual([...img.data], [2, 2, 2, 1, 1, 1]);
  });

  it("encodePng writes an 8-bit RGB PNG", async () => {
    const img = noise(5, 4, 1);
    const bytes = encodePng(img);
    const back = PNG.sync.read(Buffer.from(bytes));
    assert.equal(back.colorType, 2);
    assert.equal(back.depth, 8);
    assert.equal(countMismatches((await decodeImage(bytes, "x.png")).data, img.data), 0);
  });
});

describe("bad inputs", () => {
  const good = fs.readFileSync(path.join(FIXTURES, "llava-tiny-llama", "image.png"));

  it("random bytes are not an image", async () => {
    const rnd = noise(10, 10, 42).data;
    rnd[0] = 0x13;
    await assertImageError(
      () => decodeImage(rnd, "random.bin"),
      "random.bin",
      /not a PNG, JPEG or WebP image/,
    );
  });

  it("an empty file", async () => {
    await assertImageError(() => decodeImage(new Uint8Array(0), "empty.png"), "empty.png");
  });

  it("a truncated PNG", async () => {
    await assertImageError(
      () => decodeImage(good.subarray(0, Math.floor(good.length / 2)), "half.png"),
      "half.png",
      /PNG/,
    );
    await assertImageError(() => decodeImage(good.subarray(0, 20), "stub.png"), "stub.png", /PNG/);
  });

  it("a PNG with a corrupted data byte (CRC)", async () => {
    const bad = Buffer.from(good);
    bad[bad.length - 30] ^= 0xff;
    await assertImageError(() => decodeImage(bad, "crc.png"), "crc.png", /corrupt PNG/);
  });

  it("a truncated JPEG", async () => {
    const j = await jpegWithOrientation(noise(16, 16, 3), 1, false);
    await assertImageError(() => decodeImage(j.subarray(0, j.length - 40), "cut.jpg"), "cut.jpg", /JPEG/);
    await assertImageError(() => decodeImage(j.subarray(0, 4), "stub.jpg"), "stub.jpg", /JPEG/);
  });

  it("the decoded-pixel limit", async () => {
    await assertImageError(() => decodeImage(good, "big.png", { maxPixels: 100 }), "big.png", /megapixel/);
    const j = await jpegWithOrientation(noise(16, 16, 3), 1, false);
    await assertImageError(() => decodeImage(j, "big.jpg", { maxPixels: 100 }), "big.jpg", /megapixel/);
  });

  it("a missing file and a directory", async () => {
    const missing = path.join(os.tmpdir(), `no-such-image-${process.pid}.png`);
    await assertImageError(() => loadImageFile(missing), missing, /no such file/);
    await assertImageError(() => loadImageFile(FIXTURES), FIXTURES);
  });

  it("the format comes from the bytes, not the extension", async () => {
    const expected = JSON.parse(
      fs.readFileSync(path.join(FIXTURES, "llava-tiny-llama", "expected.json"), "utf8"),
    );
    const asJpg = await decodeImage(good, "actually-a-png.jpg");
    assert.deepEqual([asJpg.width, asJpg.height], [expected.image.width, expected.image.height]);
  });
});
