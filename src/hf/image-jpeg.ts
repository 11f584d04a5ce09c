/**
 * JPEG: the marker segments are read here (frame size for the pixel limit, the EXIF and XMP segments Pillow reads
 * for the orientation, proof that the file is complete), the pixels by libjpeg-turbo through sharp.
 */

import { isExifHeader, metadataOrientation } from "./image-orientation.js";
import { decodeWithSharp } from "./image-sharp.js";
import { checkPixelCount, corruptImage, type StoredImage, truncatedImage } from "./image-types.js";

interface JpegMarkers {
  width?: number;
  height?: number;
  exif?: Uint8Array;
  xmp?: Uint8Array;
  sosAt?: number;
  /** The segments ran past the end of the file before the image data began. */
  cut?: boolean;
}

const u16be = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const XMP_HEADER = "http://ns.adobe.com/xap/1.0/\0";

function startsWithText(b: Uint8Array, text: string): boolean {
  if (b.length < text.length) return false;
  for (let i = 0; i < text.length; i++) if (b[i] !== text.charCodeAt(i)) return false;
  return true;
}

/**
 * Walks the marker segments up to the first SOS, as Pillow's JPEG plugin does: every EXIF APP1 payload is
 * appended to the first (Pillow's `info["exif"]`), the last XMP APP1 packet wins (`info["xmp"]`).
 */
function scanJpegMarkers(bytes: Uint8Array): JpegMarkers {
  const info: JpegMarkers = {};
  const exifParts: Uint8Array[] = [];
  let pos = 2;
  for (;;) {
    if (pos + 2 > bytes.length) {
      info.cut = true;
      break;
    }
    if (bytes[pos] !== 0xff) break;
    let marker = bytes[pos + 1];
    while (marker === 0xff && pos + 2 < bytes.length) {
      pos++;
      marker = bytes[pos + 1];
    }
    pos += 2;
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // standalone
    if (marker === 0xd9) break; // EOI
    if (pos + 2 > bytes.length) {
      info.cut = true;
      break;
    }
    const len = u16be(bytes, pos);
    if (len < 2) break;
    if (pos + len > bytes.length) {
      info.cut = true;
      break;
    }
    const payload = bytes.subarray(pos + 2, pos + len);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof && payload.length >= 5 && info.width === undefined) {
      info.height = u16be(payload, 1);
      info.width = u16be(payload, 3);
    } else if (marker === 0xe1 && isExifHeader(payload)) {
      exifParts.push(exifParts.length === 0 ? payload : payload.subarray(6));
    } else if (marker === 0xe1 && startsWithText(payload, XMP_HEADER)) {
      info.xmp = payload.subarray(XMP_HEADER.length);
    } else if (marker === 0xda) {
      info.sosAt = pos + len;
      break;
    }
    pos += len;
  }
  if (exifParts.length > 0) info.exif = exifParts.length === 1 ? exifParts[0] : Buffer.concat(exifParts);
  return info;
}

function hasEoiAfter(bytes: Uint8Array, from: number): boolean {
  // Scan backwards: the marker is normally in the last two bytes (or just before trailing junk).
  for (let i = bytes.length - 2; i >= Math.max(from, 0); i--) {
    if (bytes[i] === 0xff && bytes[i + 1] === 0xd9) return true;
  }
  return false;
}

/** Decodes JPEG bytes (the caller has checked the signature) to 8-bit RGB as stored, plus its orientation. */
export async function decodeJpeg(
  bytes: Uint8Array,
  fileLabel: string,
  maxPixels: number,
): Promise<StoredImage> {
  const markers = scanJpegMarkers(bytes);
  if (markers.width === undefined || markers.height === undefined) {
    if (markers.cut) throw truncatedImage(fileLabel, "JPEG", "inside its header");
    throw corruptImage(fileLabel, "JPEG", "no frame header before the image data");
  }
  checkPixelCount(fileLabel, "JPEG", markers.width, markers.height, maxPixels);
  if (markers.sosAt === undefined) {
    if (markers.cut) throw truncatedImage(fileLabel, "JPEG", "before its image data");
    throw corruptImage(fileLabel, "JPEG", "no image data");
  }
  // Entropy-coded data escapes 0xFF bytes, so an FF D9 after the first SOS can only be the end-of-image marker.
  // Without it the file was cut short, even when libjpeg would fill the missing rows in silently.
  if (!hasEoiAfter(bytes, markers.sosAt)) {
    throw truncatedImage(fileLabel, "JPEG", "before its end-of-image marker");
  }
  const image = await decodeWithSharp(bytes, fileLabel, "JPEG", maxPixels);
  return { image, orientation: metadataOrientation(markers.exif, markers.xmp) };
}
