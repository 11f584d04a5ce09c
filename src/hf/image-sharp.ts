/**
 * JPEG and WebP pixels through `sharp` (libvips with libjpeg-turbo and libwebp, the libraries inside Pillow's
 * wheels), turned into what Pillow's `convert("RGB")` gives. On Pillow's reference decodes in
 * test/fixtures/pil-decode this matches every value: 4:2:0 / 4:2:2 / 4:4:4 and progressive JPEG, grayscale,
 * lossy and lossless WebP with and without alpha.
 *
 * * Embedded colour profiles are ignored (`ignoreIcc`), as Pillow ignores them; sharp would otherwise convert.
 * * Alpha is dropped, not composited, and gray is replicated to R=G=B, as `convert("RGB")` does.
 * * CMYK (and YCCK) JPEGs come out of libjpeg as CMYK, as in Pillow (Adobe inversion included), and are then
 *   converted with Pillow's formula rather than libvips' colour-managed one.
 * * Orientation is not applied here (the caller does it, from the metadata, the way Pillow does).
 * * Any libjpeg warning refuses the file (a scan that ends early, bad Huffman data: pixels that are partly
 *   guessed), except warnings that say nothing about the pixels ({@link HARMLESS_WARNING}).
 */
import type { Sharp, SharpOptions } from "sharp";
import { corruptImage, errText, type ImageKind, type RgbImage, truncatedImage } from "./image-types.js";

type SharpFactory = (input: Uint8Array, options?: SharpOptions) => Sharp;

let sharpModule: Promise<SharpFactory> | undefined;

/** Loaded on first use: commands that never decode a JPEG or WebP do not pay for the native library. */
function loadSharp(): Promise<SharpFactory> {
  sharpModule ??= import("sharp").then(
    (m) => m.default as unknown as SharpFactory,
    (e) => {
      sharpModule = undefined;
      throw new Error(
        `cannot decode JPEG or WebP images: the sharp module failed to load (${errText(e)}); reinstall the dependencies`,
      );
    },
  );
  return sharpModule;
}

/**
 * libjpeg warnings that leave every pixel decoded as Pillow decodes it (e.g. the "Invalid SOS parameters" some
 * cameras write): such files are decoded again without failing on warnings.
 */
const HARMLESS_WARNING =
  /Invalid SOS parameters for sequential JPEG|unknown JFIF revision number|Unknown Adobe color transform code|bad ICC marker/i;
const TRUNCATED = /premature end of JPEG|Premature end of input file|truncated/i;

/** Decodes JPEG or WebP bytes (already checked for completeness and size) to 8-bit RGB, orientation as stored. */
export async function decodeWithSharp(
  bytes: Uint8Array,
  fileLabel: string,
  kind: ImageKind,
  maxPixels: number,
): Promise<RgbImage> {
  const sharp = await loadSharp();
  const options = (failOn: "warning" | "error"): SharpOptions => ({
    failOn,
    ignoreIcc: true,
    autoOrient: false,
    animated: false,
    limitInputPixels: Math.max(1, maxPixels),
  });
  let cmyk: boolean;
  try {
    cmyk = (await sharp(bytes, options("warning")).metadata()).space === "cmyk";
  } catch (e) {
    throw corruptImage(fileLabel, kind, cleanMessage(e));
  }
  const run = (failOn: "warning" | "error") => {
    const s = sharp(bytes, options(failOn));
    // Keep libjpeg's CMYK values: converting them is Pillow's job below, not a colour-managed transform.
    if (cmyk) s.pipelineColourspace("cmyk").toColourspace("cmyk");
    return s.raw().toBuffer({ resolveWithObject: true });
  };
  let out: Awaited<ReturnType<typeof run>>;
  try {
    out = await run("warning");
  } catch (e) {
    const msg = cleanMessage(e);
    if (TRUNCATED.test(msg)) throw truncatedImage(fileLabel, kind, "inside its image data");
    if (!HARMLESS_WARNING.test(msg)) throw corruptImage(fileLabel, kind, msg);
    try {
      out = await run("error");
    } catch (e2) {
      throw corruptImage(fileLabel, kind, cleanMessage(e2));
    }
  }
  const { data, info } = out;
  const { width, height, channels } = info;
  // One byte per sample: a deeper image would show as a length mismatch.
  if (data.length !== width * height * channels || (cmyk && channels !== 4)) {
    throw corruptImage(
      fileLabel,
      kind,
      `decoded ${data.length} bytes in ${channels} channels for ${width}x${height}`,
    );
  }
  return { width, height, data: cmyk ? cmykToRgb(data) : toRgb(data, channels) };
}

/** Pillow's `convert("RGB")` of L, LA, RGB, RGBA: gray replicated, alpha dropped. */
function toRgb(src: Uint8Array, channels: number): Uint8Array {
  if (channels === 3) return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  const n = src.length / channels;
  const out = new Uint8Array(n * 3);
  const gray = channels < 3;
  for (let i = 0, s = 0, d = 0; i < n; i++, s += channels, d += 3) {
    out[d] = src[s];
    out[d + 1] = gray ? src[s] : src[s + 1];
    out[d + 2] = gray ? src[s] : src[s + 2];
  }
  return out;
}

/** Pillow's `cmyk2rgb`: each of R, G, B = (255 − K) − C·(255 − K)/255, with its rounded integer division by 255. */
function cmykToRgb(src: Uint8Array): Uint8Array {
  const n = src.length / 4;
  const out = new Uint8Array(n * 3);
  const mulDiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let i = 0, s = 0, d = 0; i < n; i++, s += 4, d += 3) {
    const nk = 255 - src[s + 3];
    out[d] = nk - mulDiv255(src[s], nk);
    out[d + 1] = nk - mulDiv255(src[s + 1], nk);
    out[d + 2] = nk - mulDiv255(src[s + 2], nk);
  }
  return out;
}

/** sharp's message without its library prefix ("VipsJpeg: ", "Input buffer has corrupt header: "). */
function cleanMessage(e: unknown): string {
  return errText(e)
    .replace(/^Input buffer (has corrupt header|contains unsupported image format):?\s*/i, "")
    .replace(/^(VipsJpeg|VipsForeignLoad\w*|webp2vips|jpeg2vips):\s*/i, "")
    .replace(/^Corrupt JPEG data:\s*/i, "");
}
