/**
 * WebP: the RIFF chunks are read here (proof that the file is complete, the canvas size for the pixel limit, the
 * EXIF and XMP chunks Pillow reads for the orientation), the pixels by libwebp through sharp. Of an animation,
 * the first frame is decoded, as Pillow's `Image.open` shows it.
 */

import { metadataOrientation } from "./image-orientation.js";
import { decodeWithSharp } from "./image-sharp.js";
import { checkPixelCount, corruptImage, type StoredImage, truncatedImage } from "./image-types.js";

interface WebpChunks {
  width: number;
  height: number;
  exif?: Uint8Array;
  xmp?: Uint8Array;
}

const u32le = (b: Uint8Array, o: number) =>
  (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const u24le = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8) | (b[o + 2] << 16);
const fourcc = (b: Uint8Array, o: number) => String.fromCharCode(b[o], b[o + 1], b[o + 2], b[o + 3]);

/** Whether the bytes start like a WebP file ("RIFF", size, "WEBP"). */
export function isWebp(bytes: Uint8Array): boolean {
  return bytes.length >= 12 && fourcc(bytes, 0) === "RIFF" && fourcc(bytes, 8) === "WEBP";
}

function scanWebpChunks(bytes: Uint8Array, fileLabel: string): WebpChunks {
  const riffEnd = 8 + u32le(bytes, 4);
  if (riffEnd > bytes.length) throw truncatedImage(fileLabel, "WebP", "before the size its header declares");
  let size: [number, number] | undefined;
  let exif: Uint8Array | undefined;
  let xmp: Uint8Array | undefined;
  let extended = false;
  for (let pos = 12; pos < riffEnd; ) {
    if (pos + 8 > riffEnd) throw corruptImage(fileLabel, "WebP", `no valid chunk at byte ${pos}`);
    const type = fourcc(bytes, pos);
    const len = u32le(bytes, pos + 4);
    const start = pos + 8;
    if (start + len > riffEnd)
      throw corruptImage(fileLabel, "WebP", `the ${type.trim()} chunk overruns the file`);
    const data = bytes.subarray(start, start + len);
    if (pos === 12 && type === "VP8X" && len >= 10) {
      extended = true;
      size = [1 + u24le(data, 4), 1 + u24le(data, 7)];
    } else if (size === undefined && type === "VP8 " && len >= 10) {
      size = [(data[6] | (data[7] << 8)) & 0x3fff, (data[8] | (data[9] << 8)) & 0x3fff];
    } else if (size === undefined && type === "VP8L" && len >= 5) {
      const bits = u32le(data, 1);
      size = [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
    } else if (extended && type === "EXIF" && exif === undefined) {
      exif = data;
    } else if (extended && type === "XMP " && xmp === undefined) {
      xmp = data;
    }
    pos = start + len + (len & 1); // chunks are padded to an even size
  }
  if (size === undefined) throw corruptImage(fileLabel, "WebP", "no image header");
  return { width: size[0], height: size[1], exif, xmp };
}

/** Decodes WebP bytes (the caller has checked the signature) to 8-bit RGB as stored, plus its orientation. */
export async function decodeWebp(
  bytes: Uint8Array,
  fileLabel: string,
  maxPixels: number,
): Promise<StoredImage> {
  const chunks = scanWebpChunks(bytes, fileLabel);
  checkPixelCount(fileLabel, "WebP", chunks.width, chunks.height, maxPixels);
  const image = await decodeWithSharp(bytes, fileLabel, "WebP", maxPixels);
  // Only extended (VP8X) files carry metadata chunks; libwebp's demuxer, which Pillow uses, reads only those.
  return { image, orientation: metadataOrientation(chunks.exif, chunks.xmp) };
}
