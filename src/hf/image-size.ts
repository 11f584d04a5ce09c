/**
 * An encoded image's pixel size from its header alone (PNG IHDR, JPEG SOFn, WebP VP8/VP8L/VP8X), without
 * decoding it: enough to map a stored run's tokens onto its original picture. An EXIF orientation that
 * turns the picture by 90° (5–8, which decodeImage applies) swaps width and height.
 */
import { readExifOrientation } from "./image-decode.js";

const EXIF_HEADER = [0x45, 0x78, 0x69, 0x66, 0, 0];

function exifTurns(payload: Uint8Array | null): boolean {
  if (!payload) return false;
  const tiff = EXIF_HEADER.every((v, i) => payload[i] === v) ? payload.subarray(6) : payload;
  const o = readExifOrientation(tiff);
  return o !== undefined && o >= 5;
}

/** [width, height] as decoded (EXIF orientation applied), or null for bytes this does not read. */
export function imageSizeOf(b: Uint8Array): [number, number] | null {
  const size = headerSize(b);
  if (!size) return null;
  return exifTurns(exifPayload(b)) ? [size[1], size[0]] : size;
}

/** The EXIF block of a PNG (eXIf before IDAT) or JPEG (APP1 "Exif" before SOS), if any. */
function exifPayload(b: Uint8Array): Uint8Array | null {
  const u32be = (o: number) => ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
  if (b[0] === 0x89 && b[1] === 0x50) {
    for (let o = 8; o + 8 <= b.length; ) {
      const len = u32be(o);
      const type = String.fromCharCode(b[o + 4], b[o + 5], b[o + 6], b[o + 7]);
      if (type === "eXIf") return b.subarray(o + 8, Math.min(b.length, o + 8 + len));
      if (type === "IDAT" || type === "IEND") return null;
      o += 12 + len;
    }
    return null;
  }
  if (b[0] === 0xff && b[1] === 0xd8) {
    for (let o = 2; o + 4 <= b.length; ) {
      if (b[o] !== 0xff) return null;
      const marker = b[o + 1];
      if (marker === 0xda || marker === 0xd9) return null;
      if (marker === 0xff || marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
        o += marker === 0xff ? 1 : 2;
        continue;
      }
      const len = (b[o + 2] << 8) | b[o + 3];
      const payload = b.subarray(o + 4, Math.min(b.length, o + 2 + len));
      if (marker === 0xe1 && EXIF_HEADER.every((v, i) => payload[i] === v)) return payload;
      o += 2 + len;
    }
  }
  return null;
}

function headerSize(b: Uint8Array): [number, number] | null {
  const u16be = (o: number) => (b[o] << 8) | b[o + 1];
  const u32be = (o: number) => ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
  const u16le = (o: number) => b[o] | (b[o + 1] << 8);
  const ok = (w: number, h: number): [number, number] | null => (w > 0 && h > 0 ? [w, h] : null);
  // PNG: signature, then the IHDR chunk's width and height.
  if (b.length >= 24 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47)
    return ok(u32be(16), u32be(20));
  // JPEG: walk the markers to the first start-of-frame.
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let o = 2;
    while (o + 9 < b.length) {
      if (b[o] !== 0xff) return null;
      const marker = b[o + 1];
      if (marker === 0xff) {
        o++;
        continue;
      }
      const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
      if (isSof) return ok(u16be(o + 7), u16be(o + 5));
      if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
        o += 2;
        continue;
      }
      o += 2 + u16be(o + 2);
    }
    return null;
  }
  // WebP: RIFF container with a VP8 / VP8L / VP8X first chunk.
  const tag = (o: number) => String.fromCharCode(b[o], b[o + 1], b[o + 2], b[o + 3]);
  if (b.length >= 30 && tag(0) === "RIFF" && tag(8) === "WEBP") {
    const chunk = tag(12);
    if (chunk === "VP8 ") return ok(u16le(26) & 0x3fff, u16le(28) & 0x3fff);
    if (chunk === "VP8L") {
      const v = b[21] | (b[22] << 8) | (b[23] << 16) | (b[24] << 24);
      return ok((v & 0x3fff) + 1, ((v >>> 14) & 0x3fff) + 1);
    }
    if (chunk === "VP8X")
      return ok(1 + (b[24] | (b[25] << 8) | (b[26] << 16)), 1 + (b[27] | (b[28] << 8) | (b[29] << 16)));
  }
  return null;
}
