/**
 * The orientation an image's metadata asks for, read the way Pillow's `ImageOps.exif_transpose` reads it (which
 * transformers' `load_image` calls): the EXIF Orientation tag of IFD0, or, when the EXIF data has none, a
 * `tiff:Orientation` in the XMP packet; and the transposes that apply it.
 */
import type { RgbImage } from "./image-types.js";

const EXIF_HEADER = [0x45, 0x78, 0x69, 0x66, 0, 0]; // "Exif\0\0"

/** Whether the bytes start with the "Exif\0\0" header of a JPEG APP1 segment. */
export function isExifHeader(b: Uint8Array): boolean {
  return b.length >= 6 && EXIF_HEADER.every((v, i) => b[i] === v);
}

/**
 * The orientation from EXIF data (TIFF data, with or without "Exif\0\0" prefixes, which Pillow strips) and an
 * XMP packet, as Pillow's `getexif()` combines them: the XMP packet is only consulted without an EXIF tag.
 */
export function metadataOrientation(exif?: Uint8Array, xmp?: Uint8Array): number | undefined {
  if (exif) {
    let tiff = exif;
    while (isExifHeader(tiff)) tiff = tiff.subarray(6);
    const o = readExifOrientation(tiff);
    if (o !== undefined) return o;
  }
  return xmp ? xmpOrientation(xmp) : undefined;
}

/** Pillow's XMP fallback: the first `tiff:Orientation="N"` or `tiff:Orientation>N` in the packet. */
export function xmpOrientation(xmp: Uint8Array): number | undefined {
  const m = /tiff:Orientation(="|>)([0-9])/.exec(
    Buffer.from(xmp.buffer, xmp.byteOffset, xmp.byteLength).toString("latin1"),
  );
  if (!m) return undefined;
  const v = Number(m[2]);
  return v >= 1 && v <= 8 ? v : undefined;
}

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
