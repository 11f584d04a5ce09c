/**
 * Image decoding to 8-bit RGB (what PIL's `Image.open(f)` + `ImageOps.exif_transpose` + `convert("RGB")` gives,
 * the way transformers' `load_image` reads an image), and PNG encoding of RGB images.
 *
 * * The format is sniffed from the magic bytes, never from the file name.
 * * PNG via `pngjs`: grayscale → R=G=B; palette → its colours; alpha is dropped (PIL's `convert("RGB")` drops
 *   alpha, it does not composite); 1/2/4-bit samples are scaled to 0..255 (×255, ×85, ×17); 16-bit samples keep
 *   their high byte (PIL's unpacker for 16-bit RGB(A)/LA does the same). A `tRNS` colour key leaves the colour
 *   untouched, as in PIL. An `eXIf` chunk's orientation is applied, as `exif_transpose` would.
 * * JPEG via `jpeg-js` (baseline + progressive). The EXIF orientation tag (APP1 "Exif") is applied with PIL's
 *   `exif_transpose` semantics. jpeg-js is not libjpeg-turbo: decoded JPEG pixels can differ from PIL's by a few
 *   levels (IDCT and chroma-upsampling differences); PNG decoding is exact.
 * * A decoded-pixel limit (`maxPixels`) is checked from the header before any pixel buffer is allocated.
 *
 * Every failure is an {@link ImageError} whose one-line message starts with the file label.
 */
import * as fs from "node:fs";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";

/** 8-bit RGB image, row-major HWC, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Thrown for an unreadable, unsupported, corrupt or oversized image; the message names the file. */
export class ImageError extends Error {
  override name = "ImageError";
}

export interface DecodeOptions {
  /** Largest accepted decoded pixel count (width × height). Default {@link DEFAULT_MAX_PIXELS}. */
  maxPixels?: number;
}

/** 50 megapixels. */
export const DEFAULT_MAX_PIXELS = 50_000_000;

export type ImageFormat = "png" | "jpeg";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Identifies PNG / JPEG from the first bytes; `null` for anything else. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return "png";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
  return null;
}

/** Decodes PNG or JPEG bytes to 8-bit RGB (EXIF orientation applied). */
export function decodeImage(bytes: Uint8Array, fileLabel: string, opts: DecodeOptions = {}): RgbImage {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (bytes.length === 0) throw new ImageError(`${fileLabel}: empty file (not a PNG or JPEG image)`);
  const format = sniffImageFormat(bytes);
  if (format === "png") return decodePng(bytes, fileLabel, maxPixels);
  if (format === "jpeg") return decodeJpeg(bytes, fileLabel, maxPixels);
  throw new ImageError(`${fileLabel}: not a PNG or JPEG image`);
}

/** Reads and decodes an image file; a missing or unreadable file is an {@link ImageError}. */
export function loadImageFile(path: string, opts: DecodeOptions = {}): RgbImage {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ImageError(`${path}: no such file`);
    if (code === "EISDIR") throw new ImageError(`${path}: is a directory, not an image file`);
    throw new ImageError(`${path}: cannot read (${code ?? (e as Error).message})`);
  }
  return decodeImage(bytes, path, opts);
}

/** Encodes an RGB image as an 8-bit RGB PNG (no alpha). */
export function encodePng(img: RgbImage): Uint8Array {
  checkRgb(img);
  const meta = {
    width: img.width,
    height: img.height,
    data: Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength),
  };
  const out = PNG.sync.write(meta as unknown as PNG, {
    colorType: 2,
    inputColorType: 2,
    inputHasAlpha: false,
    bitDepth: 8,
    deflateLevel: 6,
  });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

function checkRgb(img: RgbImage): void {
  if (!Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width <= 0 || img.height <= 0) {
    throw new ImageError(`invalid image size ${img.width}x${img.height}`);
  }
  if (img.data.length !== img.width * img.height * 3) {
    throw new ImageError(
      `image data has ${img.data.length} bytes, expected ${img.width * img.height * 3} for ${img.width}x${img.height} RGB`,
    );
  }
}

function checkPixelCount(
  fileLabel: string,
  kind: string,
  width: number,
  height: number,
  maxPixels: number,
): void {
  if (width <= 0 || height <= 0)
    throw new ImageError(`${fileLabel}: corrupt ${kind} (image size ${width}x${height})`);
  if (width * height > maxPixels) {
    throw new ImageError(
      `${fileLabel}: image is ${width}x${height} = ${((width * height) / 1e6).toFixed(1)} megapixels, over the ${(maxPixels / 1e6).toFixed(1)} megapixel limit`,
    );
  }
}

function errText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/\s+/g, " ").trim() || "unknown error";
}

// ---------------------------------------------------------------------------------------------------------------
// PNG

interface PngChunks {
  width: number;
  height: number;
  colorType: number;
  bitDepth: number;
  trns?: Uint8Array;
  exif?: Uint8Array;
}

const u32be = (b: Uint8Array, o: number) =>
  ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
const u16be = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];

/** Walks the chunk list for the few chunks pngjs does not report. Lenient: stops at the first inconsistency. */
function scanPngChunks(bytes: Uint8Array, fileLabel: string): PngChunks {
  if (bytes.length < 8 + 8 + 13 || String.fromCharCode(...bytes.subarray(12, 16)) !== "IHDR") {
    throw new ImageError(`${fileLabel}: corrupt PNG (missing or truncated IHDR header)`);
  }
  const info: PngChunks = {
    width: u32be(bytes, 16),
    height: u32be(bytes, 20),
    bitDepth: bytes[24],
    colorType: bytes[25],
  };
  let pos = 8;
  while (pos + 8 <= bytes.length) {
    const len = u32be(bytes, pos);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    const start = pos + 8;
    if (start + len > bytes.length) break;
    if (type === "tRNS") info.trns = bytes.subarray(start, start + len);
    else if (type === "eXIf" && info.exif === undefined) info.exif = bytes.subarray(start, start + len);
    else if (type === "IEND") break;
    pos = start + len + 4;
  }
  return info;
}

function decodePng(bytes: Uint8Array, fileLabel: string, maxPixels: number): RgbImage {
  const chunks = scanPngChunks(bytes, fileLabel);
  checkPixelCount(fileLabel, "PNG", chunks.width, chunks.height, maxPixels);
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { skipRescale: true });
  } catch (e) {
    throw new ImageError(`${fileLabel}: corrupt PNG (${errText(e)})`);
  }
  const { width, height } = png;
  const depth = png.depth as number;
  const colorType = png.colorType as number;
  const src = png.data as unknown as ArrayLike<number>;
  if (src.length !== width * height * 4) {
    throw new ImageError(`${fileLabel}: corrupt PNG (decoded ${src.length} samples for ${width}x${height})`);
  }
  // Palette entries are already 8-bit; otherwise samples are raw (skipRescale) at the file's bit depth.
  const paletted = colorType === 3;
  const scale = (v: number): number => {
    if (paletted || depth === 8) return v;
    if (depth === 16) return v >> 8;
    return Math.floor((v * 255) / ((1 << depth) - 1) + 0.5);
  };
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let i = 0, j = 0; i < n * 4; i += 4, j += 3) {
    out[j] = scale(src[i]);
    out[j + 1] = scale(src[i + 1]);
    out[j + 2] = scale(src[i + 2]);
  }
  // pngjs blanks pixels matching a tRNS colour key to (0,0,0,0); PIL keeps their colour. Only grey/RGB without an
  // alpha channel have a colour key, and there alpha is otherwise always the maximum, so alpha 0 marks them.
  if ((colorType === 0 || colorType === 2) && chunks.trns) {
    const t = chunks.trns;
    const key =
      colorType === 0 && t.length >= 2
        ? [u16be(t, 0), u16be(t, 0), u16be(t, 0)]
        : colorType === 2 && t.length >= 6
          ? [u16be(t, 0), u16be(t, 2), u16be(t, 4)]
          : null;
    if (key) {
      const rgb = key.map(scale);
      for (let i = 0, j = 0; i < n * 4; i += 4, j += 3) {
        if (src[i + 3] === 0) {
          out[j] = rgb[0];
          out[j + 1] = rgb[1];
          out[j + 2] = rgb[2];
        }
      }
    }
  }
  let img: RgbImage = { width, height, data: out };
  if (chunks.exif) {
    const orientation = readExifOrientation(stripExifHeader(chunks.exif));
    if (orientation !== undefined) img = applyExifOrientation(img, orientation);
  }
  return img;
}

// ---------------------------------------------------------------------------------------------------------------
// JPEG

interface JpegMarkers {
  width?: number;
  height?: number;
  exif?: Uint8Array;
  sosAt?: number;
}

/** Walks the JPEG marker segments up to the first SOS: frame size and the first EXIF APP1 payload (TIFF data). */
function scanJpegMarkers(bytes: Uint8Array): JpegMarkers {
  const info: JpegMarkers = {};
  let pos = 2;
  while (pos + 1 < bytes.length) {
    if (bytes[pos] !== 0xff) break;
    let marker = bytes[pos + 1];
    while (marker === 0xff && pos + 2 < bytes.length) {
      pos++;
      marker = bytes[pos + 1];
    }
    pos += 2;
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // standalone
    if (marker === 0xd9) break; // EOI
    if (pos + 2 > bytes.length) break;
    const len = u16be(bytes, pos);
    if (len < 2 || pos + len > bytes.length) break;
    const payload = bytes.subarray(pos + 2, pos + len);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof && payload.length >= 5 && info.width === undefined) {
      info.height = u16be(payload, 1);
      info.width = u16be(payload, 3);
    } else if (marker === 0xe1 && info.exif === undefined && isExifHeader(payload)) {
      info.exif = payload.subarray(6);
    } else if (marker === 0xda) {
      info.sosAt = pos + len;
      break;
    }
    pos += len;
  }
  return info;
}

function isExifHeader(b: Uint8Array): boolean {
  return (
    b.length >= 6 &&
    b[0] === 0x45 &&
    b[1] === 0x78 &&
    b[2] === 0x69 &&
    b[3] === 0x66 &&
    b[4] === 0 &&
    b[5] === 0
  );
}

/** PNG eXIf chunks hold bare TIFF data, but some writers keep the "Exif\0\0" prefix. */
function stripExifHeader(b: Uint8Array): Uint8Array {
  return isExifHeader(b) ? b.subarray(6) : b;
}

function hasEoiAfter(bytes: Uint8Array, from: number): boolean {
  // Scan backwards: the marker is normally in the last two bytes (or just before trailing junk).
  for (let i = bytes.length - 2; i >= Math.max(from, 0); i--) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return true;
  }
  return false;
}

function decodeJpeg(bytes: Uint8Array, fileLabel: string, maxPixels: number): RgbImage {
  const markers = scanJpegMarkers(bytes);
  if (markers.width === undefined || markers.height === undefined) {
    throw new ImageError(`${fileLabel}: corrupt JPEG (no frame header before the image data)`);
  }
  checkPixelCount(fileLabel, "JPEG", markers.width, markers.height, maxPixels);
  if (markers.sosAt === undefined) throw new ImageError(`${fileLabel}: corrupt JPEG (no image data)`);
  // Entropy-coded data escapes 0xFF bytes, so an FF D9 after the first SOS can only be the end-of-image marker.
  if (!hasEoiAfter(bytes, markers.sosAt)) {
    throw new ImageError(`${fileLabel}: corrupt JPEG (truncated: no end-of-image marker)`);
  }
  let decoded: { width: number; height: number; data: Uint8Array };
  try {
    decoded = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      tolerantDecoding: true,
      maxResolutionInMP: Math.max(1, Math.ceil(maxPixels / 1e6)),
      // Output buffer plus per-component planes and coefficient blocks: a generous 16 bytes per pixel.
      maxMemoryUsageInMB: Math.max(64, Math.ceil((maxPixels * 16) / (1024 * 1024))),
    });
  } catch (e) {
    throw new ImageError(`${fileLabel}: corrupt JPEG (${errText(e)})`);
  }
  const { width, height, data } = decoded;
  if (width <= 0 || height <= 0 || data.length !== width * height * 3) {
    throw new ImageError(`${fileLabel}: corrupt JPEG (decoded ${data.length} bytes for ${width}x${height})`);
  }
  let img: RgbImage = { width, height, data };
  if (markers.exif) {
    const orientation = readExifOrientation(markers.exif);
    if (orientation !== undefined) img = applyExifOrientation(img, orientation);
  }
  return img;
}

// ---------------------------------------------------------------------------------------------------------------
// EXIF orientation

/**
 * Reads the Orientation tag (0x0112) from IFD0 of TIFF-structured EXIF data (the bytes after "Exif\0\0").
 * Returns 1..8, or undefined when absent, out of range or unparsable (a broken EXIF block is ignored, as PIL does).
 */
export function readExifOrientation(tiff: Uint8Array): number | undefined {
  if (tiff.length < 8) return undefined;
  let le: boolean;
  if (tiff[0] === 0x49 && tiff[1] === 0x49) le = true;
  else if (tiff[0] === 0x4d && tiff[1] === 0x4d) le = false;
  else return undefined;
  const u16 = (o: number) => (le ? tiff[o] | (tiff[o + 1] << 8) : (tiff[o] << 8) | tiff[o + 1]);
  const u32 = (o: number) =>
    le
      ? (tiff[o] | (tiff[o + 1] << 8) | (tiff[o + 2] << 16) | (tiff[o + 3] << 24)) >>> 0
      : ((tiff[o] << 24) | (tiff[o + 1] << 16) | (tiff[o + 2] << 8) | tiff[o + 3]) >>> 0;
  if (u16(2) !== 42) return undefined;
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return undefined;
  const count = u16(ifd);
  for (let k = 0; k < count; k++) {
    const e = ifd + 2 + k * 12;
    if (e + 12 > tiff.length) return undefined;
    if (u16(e) !== 0x0112) continue;
    const type = u16(e + 2);
    let v: number;
    if (type === 3)
      v = u16(e + 8); // SHORT
    else if (type === 4)
      v = u32(e + 8); // LONG (non-standard but seen)
    else return undefined;
    return v >= 1 && v <= 8 ? v : undefined;
  }
  return undefined;
}

/**
 * Applies an EXIF orientation (1..8) the way PIL's `ImageOps.exif_transpose` does:
 * 2 mirror left-right, 3 rotate 180°, 4 mirror top-bottom, 5 transpose, 6 rotate 90° clockwise,
 * 7 transverse, 8 rotate 90° counter-clockwise. 1 (or anything else) returns the image unchanged.
 */
export function applyExifOrientation(img: RgbImage, orientation: number): RgbImage {
  if (orientation < 2 || orientation > 8 || !Number.isInteger(orientation)) return img;
  const { width: W, height: H, data } = img;
  const swap = orientation >= 5;
  const ow = swap ? H : W;
  const oh = swap ? W : H;
  const out = new Uint8Array(ow * oh * 3);
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2: // FLIP_LEFT_RIGHT
          sx = W - 1 - ox;
          sy = oy;
          break;
        case 3: // ROTATE_180
          sx = W - 1 - ox;
          sy = H - 1 - oy;
          break;
        case 4: // FLIP_TOP_BOTTOM
          sx = ox;
          sy = H - 1 - oy;
          break;
        case 5: // TRANSPOSE
          sx = oy;
          sy = ox;
          break;
        case 6: // ROTATE_270 (clockwise 90°)
          sx = oy;
          sy = H - 1 - ox;
          break;
        case 7: // TRANSVERSE
          sx = W - 1 - oy;
          sy = H - 1 - ox;
          break;
        default: // 8: ROTATE_90 (counter-clockwise 90°)
          sx = W - 1 - oy;
          sy = ox;
          break;
      }
      const s = (sy * W + sx) * 3;
      const d = (oy * ow + ox) * 3;
      out[d] = data[s];
      out[d + 1] = data[s + 1];
      out[d + 2] = data[s + 2];
    }
  }
  return { width: ow, height: oh, data: out };
}
