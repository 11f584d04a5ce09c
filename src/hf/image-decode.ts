/**
 * Image decoding to 8-bit RGB exactly as Hugging Face's processors receive it: transformers' `load_image` is
 * PIL's `Image.open(f)` + `ImageOps.exif_transpose` + `convert("RGB")`, and this gives the same pixels.
 *
 * * The format is sniffed from the magic bytes, never from the file name: PNG via pngjs (image-png.ts), JPEG
 *   and WebP via libjpeg-turbo / libwebp through sharp (image-jpeg.ts, image-webp.ts, image-sharp.ts), the
 *   libraries inside Pillow.
 * * The EXIF orientation (or XMP `tiff:Orientation` without one) is applied with `exif_transpose` semantics.
 * * A decoded-pixel limit (`maxPixels`) is checked from the header before any pixel buffer is allocated.
 * * A truncated or corrupt file is refused, never decoded in part.
 *
 * Every failure is an {@link ImageError} whose one-line message starts with the file label.
 */
import * as fs from "node:fs";
import { PNG } from "pngjs";
import { decodeJpeg } from "./image-jpeg.js";
import { applyExifOrientation } from "./image-orientation.js";
import { decodePng } from "./image-png.js";
import { ImageError, type RgbImage, type StoredImage } from "./image-types.js";
import { decodeWebp, isWebp } from "./image-webp.js";

export { applyExifOrientation, readExifOrientation } from "./image-orientation.js";
export { ImageError, type RgbImage } from "./image-types.js";

export interface DecodeOptions {
  /** Largest accepted decoded pixel count (width × height). Default {@link DEFAULT_MAX_PIXELS}. */
  maxPixels?: number;
}

/** 50 megapixels. */
export const DEFAULT_MAX_PIXELS = 50_000_000;

export type ImageFormat = "png" | "jpeg" | "webp";

/** The file extension each format is stored under. */
export const IMAGE_EXTENSIONS: Record<ImageFormat, string> = { png: ".png", jpeg: ".jpg", webp: ".webp" };

/** Each format's media type (what the server accepts and serves). */
export const IMAGE_MEDIA_TYPES: Record<ImageFormat, string> = {
  png: "image/png",
  jpeg: "image/jpeg",
  webp: "image/webp",
};

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Identifies PNG / JPEG / WebP from the first bytes; `null` for anything else. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return "png";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
  if (isWebp(bytes)) return "webp";
  return null;
}

/** Decodes PNG, JPEG or WebP bytes to 8-bit RGB (orientation applied). */
export async function decodeImage(
  bytes: Uint8Array,
  fileLabel: string,
  opts: DecodeOptions = {},
): Promise<RgbImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (bytes.length === 0) throw new ImageError(`${fileLabel}: empty file (not a PNG, JPEG or WebP image)`);
  const format = sniffImageFormat(bytes);
  let stored: StoredImage;
  if (format === "png") stored = decodePng(bytes, fileLabel, maxPixels);
  else if (format === "jpeg") stored = await decodeJpeg(bytes, fileLabel, maxPixels);
  else if (format === "webp") stored = await decodeWebp(bytes, fileLabel, maxPixels);
  else throw new ImageError(`${fileLabel}: not a PNG, JPEG or WebP image`);
  return oriented(stored);
}

/**
 * Decodes PNG bytes only, synchronously (orientation applied): for the PNGs this tool writes itself, such as a
 * run's `image.png`, where a JPEG or WebP would be a mistake.
 */
export function decodePngImage(bytes: Uint8Array, fileLabel: string, opts: DecodeOptions = {}): RgbImage {
  if (sniffImageFormat(bytes) !== "png") throw new ImageError(`${fileLabel}: not a PNG image`);
  return oriented(decodePng(bytes, fileLabel, opts.maxPixels ?? DEFAULT_MAX_PIXELS));
}

function oriented({ image, orientation }: StoredImage): RgbImage {
  return orientation === undefined ? image : applyExifOrientation(image, orientation);
}

/** Reads and decodes an image file; a missing or unreadable file is an {@link ImageError}. */
export async function loadImageFile(path: string, opts: DecodeOptions = {}): Promise<RgbImage> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.promises.readFile(path);
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
