/**
 * decodeImage against Pillow: every input in test/fixtures/pil-decode decodes to exactly the values transformers'
 * `load_image` gives (PIL open → exif_transpose → convert("RGB")), tolerance 0: JPEG (subsamplings, progressive,
 * grayscale, CMYK, ICC-tagged), WebP (lossy, lossless, alpha, animation), 16-bit and palette PNGs, and the EXIF /
 * XMP orientation in each container. And files that end early or are damaged are refused with a one-line message
 * that names the file and says which, never decoded in part.
 */
import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeImage, encodePng, ImageError } from "../src/hf/image-decode.js";
import { pngChunks, pngWithDataCut } from "./broken-images.js";
import { differences, type PilCase, pilCases, pilFixture, pilReference } from "./pil-fixtures.js";

async function assertMatchesPillow(set: "jpeg" | "formats", file: string, c: PilCase): Promise<void> {
  const img = await decodeImage(pilFixture(`${set}/${file}`), file);
  const ref = pilReference(`${set}/${c.pil_decoded}`);
  assert.deepEqual([ref.width, ref.height], [c.width, c.height], "reference size");
  assert.deepEqual([img.width, img.height], [c.width, c.height], "decoded size (orientation applied)");
  const { count, max } = differences(img, ref);
  assert.equal(count, 0, `${count} of ${ref.data.length} values differ from Pillow's, by up to ${max}`);
}

describe("decodeImage gives Pillow's pixels exactly", () => {
  for (const set of ["jpeg", "formats"] as const) {
    for (const [file, c] of pilCases(set)) {
      it(`${set}/${file}`, () => assertMatchesPillow(set, file, c));
    }
  }

  it("all six JPEG references are covered (4:2:0, 4:2:2, 4:4:4, progressive, gray, EXIF orientation)", () => {
    assert.deepEqual(
      pilCases("jpeg")
        .map(([f]) => f)
        .sort(),
      [
        "exif-orientation-6.jpg",
        "gray.jpg",
        "progressive-420.jpg",
        "q75-444.jpg",
        "q85-422.jpg",
        "q90-420.jpg",
      ],
    );
  });

  it("a harmless libjpeg warning (invalid SOS parameters, written by some cameras) still decodes as Pillow does", async () => {
    const jpg = Buffer.from(pilFixture("jpeg/q90-420.jpg"));
    const sos = jpg.indexOf(Buffer.from([0xff, 0xda]));
    jpg[sos + 2 + jpg.readUInt16BE(sos + 2) - 2] = 0; // spectral end 63 → 0: libjpeg warns, decodes the same
    const img = await decodeImage(jpg, "camera.jpg");
    const { count } = differences(img, pilReference("jpeg/q90-420.pil.png"));
    assert.equal(count, 0);
  });
});

// ---------------------------------------------------------------------------------------------------------------

async function assertRefused(bytes: Uint8Array, file: string, re: RegExp): Promise<void> {
  await assert.rejects(
    async () => decodeImage(bytes, file),
    (e: unknown) => {
      assert.ok(e instanceof ImageError, `expected ImageError, got ${e}`);
      assert.ok(e.message.startsWith(`${file}: `), `message should start with the file: ${e.message}`);
      assert.ok(!e.message.includes("\n"), "one-line message");
      assert.match(e.message, re);
      return true;
    },
  );
}

describe("truncated and corrupt files are refused, never decoded in part", () => {
  it("a PNG cut anywhere is a truncated PNG: in the header, inside or between image-data chunks, before IEND", async () => {
    const png = pilFixture("formats/interlaced.png");
    const chunks = pngChunks(png);
    const idat = chunks.filter((c) => c.type === "IDAT");
    assert.ok(idat.length >= 2, "the fixture has several IDAT chunks");
    const iend = chunks.find((c) => c.type === "IEND")!;
    const cuts = [
      20,
      40,
      idat[0].at + 100,
      idat[0].end,
      idat[1].at + 9,
      (idat.at(-1)!.at + iend.at) >> 1,
      iend.at,
    ];
    cuts.push(iend.at + 6, png.length - 1);
    for (const n of cuts) await assertRefused(png.subarray(0, n), `cut-${n}.png`, /truncated PNG image/);
  });

  it("a PNG whose image data stops early (whole chunks, IEND intact) is refused, not filled with black rows", async () => {
    // noise so the compressed data is large; the stream is cut to a third and re-wrapped in a valid IDAT chunk
    const raw = new Uint8Array(120 * 80 * 3).map((_, i) => (i * 2654435761) >>> 24);
    const png = Buffer.from(encodePng({ width: 120, height: 80, data: raw }));
    await assertRefused(
      pngWithDataCut(png, 1 / 3),
      "stops.png",
      /corrupt PNG image \(its image data ends early/,
    );
  });

  it("a PNG whose end is zero-filled (a preallocated, unfinished download) is refused", async () => {
    const png = Buffer.from(pilFixture("formats/interlaced.png"));
    png.fill(0, png.length >> 1);
    await assertRefused(png, "zeros.png", /corrupt PNG image|truncated PNG image/);
  });

  it("a PNG with a damaged data byte is a corrupt PNG", async () => {
    const png = Buffer.from(pilFixture("formats/interlaced.png"));
    png[png.length >> 1] ^= 0xff;
    await assertRefused(png, "crc.png", /corrupt PNG image/);
  });

  it("a JPEG cut anywhere (baseline or progressive) is a truncated JPEG", async () => {
    for (const name of ["q90-420.jpg", "progressive-420.jpg"]) {
      const jpg = pilFixture(`jpeg/${name}`);
      for (const n of [3, 30, 400, jpg.length >> 1, jpg.length - 2]) {
        await assertRefused(jpg.subarray(0, n), `cut-${n}-${name}`, /truncated JPEG image/);
      }
    }
  });

  it("a JPEG whose image data breaks off (end marker glued on) or is garbled is a corrupt JPEG", async () => {
    const jpg = pilFixture("jpeg/q90-420.jpg");
    const glued = Buffer.concat([jpg.subarray(0, jpg.length >> 1), Buffer.from([0xff, 0xd9])]);
    await assertRefused(glued, "glued.jpg", /corrupt JPEG image \(premature end of data segment\)/);
    const prog = Buffer.from(pilFixture("jpeg/progressive-420.jpg"));
    prog.fill(0x55, prog.length >> 1, (prog.length >> 1) + 50);
    await assertRefused(prog, "garbled.jpg", /corrupt JPEG image/);
  });

  it("a WebP cut anywhere is a truncated WebP; a damaged one is a corrupt WebP", async () => {
    const webp = pilFixture("formats/lossy.webp");
    for (const n of [12, 30, webp.length >> 1, webp.length - 1]) {
      await assertRefused(webp.subarray(0, n), `cut-${n}.webp`, /truncated WebP image/);
    }
    const bogus = Buffer.concat([
      Buffer.from("RIFF\x18\x00\x00\x00WEBPVP8 \x0c\x00\x00\x00", "latin1"),
      Buffer.alloc(12),
    ]);
    await assertRefused(bogus, "bogus.webp", /corrupt WebP image/);
  });

  it("the messages say what to do", async () => {
    const png = pilFixture("formats/interlaced.png");
    await assert.rejects(async () => decodeImage(png.subarray(0, png.length >> 1), "half.png"), {
      message: /^half\.png: truncated PNG image: .*; use the complete file$/,
    });
  });
});
