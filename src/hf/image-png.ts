/**
 * PNG decoding to what Pillow's `Image.open` + `convert("RGB")` gives, via `pngjs` (exact on every colour type and
 * bit depth, checked against Pillow's decodes in test/fixtures/pil-decode):
 *
 * * grayscale → R=G=B; palette → its colours; alpha is dropped (`convert("RGB")` drops alpha, it does not
 *   composite); a `tRNS` colour key leaves the colour untouched;
 * * 1/2/4-bit samples scale to 0..255 (×255, ×85, ×17); 16-bit RGB(A)/LA samples keep their high byte (Pillow's
 *   unpackers), 16-bit grayscale is Pillow's mode "I;16", whose conversion to RGB clips at 255;
 * * embedded colour profiles (iCCP) and gamma (gAMA) are ignored, as Pillow ignores them.
 *
 * The chunk list is walked first: a file that ends before its IEND chunk is refused as truncated (a browser shows
 * such a file half-drawn), a checksum or data error as corrupt. The orientation comes from an eXIf chunk (or a
 * "Raw profile type exif" text chunk) or else the XMP packet, as Pillow reads them.
 */
import * as zlib from "node:zlib";
import { PNG } from "pngjs";
import { metadataOrientation } from "./image-orientation.js";
import {
  checkPixelCount,
  corruptImage,
  errText,
  type RgbImage,
  type StoredImage,
  truncatedImage,
} from "./image-types.js";

interface PngChunks {
  width: number;
  height: number;
  colorType: number;
  bitDepth: number;
  interlaced: boolean;
  /** The IDAT payloads, in order: one zlib stream. */
  data: Uint8Array[];
  trns?: Uint8Array;
  exif?: Uint8Array;
  rawProfileExif?: Uint8Array;
  xmp?: Uint8Array;
}

const u32be = (b: Uint8Array, o: number) =>
  ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
const u16be = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const isLetter = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");

/** Text chunks are small; a cap keeps a hostile zTXt/iTXt from inflating into gigabytes. */
const MAX_TEXT_BYTES = 4 << 20;

/**
 * Walks every chunk up to IEND: the header, the colour key, the metadata Pillow reads for the orientation, and
 * proof that the file is complete (every chunk inside the file, IEND present).
 */
function scanPngChunks(bytes: Uint8Array, fileLabel: string): PngChunks {
  if (bytes.length < 8 + 8 + 13 + 4) throw truncatedImage(fileLabel, "PNG", "inside its header");
  if (String.fromCharCode(...bytes.subarray(12, 16)) !== "IHDR" || u32be(bytes, 8) !== 13) {
    throw corruptImage(fileLabel, "PNG", "no IHDR header chunk at the start");
  }
  const info: PngChunks = {
    width: u32be(bytes, 16),
    height: u32be(bytes, 20),
    bitDepth: bytes[24],
    colorType: bytes[25],
    interlaced: bytes[28] === 1,
    data: [],
  };
  let pos = 8;
  for (;;) {
    if (pos + 8 > bytes.length) {
      throw truncatedImage(
        fileLabel,
        "PNG",
        info.data.length ? "before its end chunk (IEND)" : "before its image data",
      );
    }
    const len = u32be(bytes, pos);
    const typeBytes = bytes.subarray(pos + 4, pos + 8);
    if (!typeBytes.every(isLetter) || len > 0x7fffffff) {
      throw corruptImage(fileLabel, "PNG", `no valid chunk at byte ${pos}`);
    }
    const type = String.fromCharCode(...typeBytes);
    const start = pos + 8;
    if (start + len + 4 > bytes.length) {
      throw truncatedImage(
        fileLabel,
        "PNG",
        type === "IDAT" ? "inside its image data" : `inside its ${type} chunk`,
      );
    }
    const data = bytes.subarray(start, start + len);
    if (type === "IDAT") info.data.push(data);
    else if (type === "IEND") break;
    else if (type === "tRNS") info.trns = data;
    // Pillow keeps the last eXIf (or tEXt "exif") it meets; text chunks may also come after the image data.
    else if (type === "eXIf") info.exif = data;
    else if (type === "tEXt" || type === "zTXt" || type === "iTXt") readTextChunk(type, data, info);
    pos = start + len + 4;
  }
  if (!info.data.length) throw corruptImage(fileLabel, "PNG", "no image data (IDAT chunk)");
  return info;
}

/** The text chunks Pillow turns into orientation metadata; an unreadable one is skipped, as Pillow skips it. */
function readTextChunk(type: string, data: Uint8Array, info: PngChunks): void {
  const nul = data.indexOf(0);
  if (nul <= 0) return;
  const key = latin1(data.subarray(0, nul));
  if (key !== "exif" && key !== "Raw profile type exif" && key !== "XML:com.adobe.xmp") return;
  let value: Uint8Array | undefined;
  try {
    if (type === "tEXt") value = data.subarray(nul + 1);
    else if (type === "zTXt") value = inflateText(data.subarray(nul + 2));
    else {
      // iTXt: key \0 compressed-flag method language \0 translated-key \0 text
      const flag = data[nul + 1];
      if (flag && data[nul + 2] !== 0) return; // an unknown compression method
      let p = data.indexOf(0, nul + 3);
      if (p < 0) return;
      p = data.indexOf(0, p + 1);
      if (p < 0) return;
      const text = data.subarray(p + 1);
      value = flag ? inflateText(text) : text;
    }
  } catch {
    return;
  }
  if (key === "XML:com.adobe.xmp") info.xmp = value;
  else if (key === "exif" && type === "tEXt") info.exif = value;
  else if (key === "Raw profile type exif") info.rawProfileExif = value;
}

function inflateText(b: Uint8Array): Uint8Array {
  return zlib.inflateSync(b, { maxOutputLength: MAX_TEXT_BYTES });
}

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** Bytes of filtered scanlines the header promises: a filter byte per row, per Adam7 pass when interlaced. */
function expectedDataBytes(c: PngChunks): number {
  const bits = (CHANNELS[c.colorType] ?? 4) * c.bitDepth;
  const rows = (w: number, h: number) => (w > 0 && h > 0 ? h * (1 + Math.ceil((w * bits) / 8)) : 0);
  if (!c.interlaced) return rows(c.width, c.height);
  // Adam7 passes: first column, first row, column step, row step.
  const passes = [
    [0, 0, 8, 8],
    [4, 0, 8, 8],
    [0, 4, 4, 8],
    [2, 0, 4, 4],
    [0, 2, 2, 4],
    [1, 0, 2, 2],
    [0, 1, 1, 2],
  ];
  let total = 0;
  for (const [x0, y0, dx, dy] of passes) {
    total += rows(Math.ceil((c.width - x0) / dx), Math.ceil((c.height - y0) / dy));
  }
  return total;
}

/**
 * The compressed image data must hold every row: pngjs (like a browser) fills the rows a stream that ends early
 * leaves out with zeros, which would pass a partial picture off as a whole one.
 */
function checkImageDataComplete(c: PngChunks, fileLabel: string): void {
  const expected = expectedDataBytes(c);
  let got = -1;
  try {
    got = zlib.inflateSync(Buffer.concat(c.data), { maxOutputLength: Math.max(expected, 1) }).length;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      throw corruptImage(fileLabel, "PNG", "more image data than its size needs");
    }
    if (!/unexpected end/i.test(errText(e))) throw corruptImage(fileLabel, "PNG", errText(e));
  }
  if (got < expected) {
    throw corruptImage(fileLabel, "PNG", "its image data ends early: part of the picture is missing");
  }
}

/** ImageMagick's hex dump: three header lines ("", "exif", length), then the hex digits of the EXIF block. */
function rawProfileBytes(text: Uint8Array): Uint8Array | undefined {
  const hex = latin1(text).split("\n").slice(3).join("");
  if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2) return undefined;
  return Buffer.from(hex, "hex");
}

/** Decodes PNG bytes (the caller has checked the signature) to 8-bit RGB as stored, plus its orientation. */
export function decodePng(bytes: Uint8Array, fileLabel: string, maxPixels: number): StoredImage {
  const chunks = scanPngChunks(bytes, fileLabel);
  checkPixelCount(fileLabel, "PNG", chunks.width, chunks.height, maxPixels);
  checkImageDataComplete(chunks, fileLabel);
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { skipRescale: true });
  } catch (e) {
    throw corruptImage(fileLabel, "PNG", errText(e));
  }
  const { width, height } = png;
  const depth = png.depth as number;
  const colorType = png.colorType as number;
  const src = png.data as unknown as ArrayLike<number>;
  if (src.length !== width * height * 4) {
    throw corruptImage(fileLabel, "PNG", `decoded ${src.length} samples for ${width}x${height}`);
  }
  // Palette entries are already 8-bit; otherwise samples are raw (skipRescale) at the file's bit depth.
  const paletted = colorType === 3;
  const scale = (v: number): number => {
    if (paletted || depth === 8) return v;
    if (depth === 16) return colorType === 0 ? Math.min(v, 255) : v >> 8;
    return Math.floor((v * 255) / ((1 << depth) - 1) + 0.5);
  };
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let i = 0, j = 0; i < n * 4; i += 4, j += 3) {
    out[j] = scale(src[i]);
    out[j + 1] = scale(src[i + 1]);
    out[j + 2] = scale(src[i + 2]);
  }
  // pngjs blanks pixels matching a tRNS colour key to (0,0,0,0); Pillow keeps their colour. Only grey/RGB without
  // an alpha channel have a colour key, and there alpha is otherwise always the maximum, so alpha 0 marks them.
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
  const image: RgbImage = { width, height, data: out };
  const exif = chunks.exif ?? (chunks.rawProfileExif && rawProfileBytes(chunks.rawProfileExif));
  return { image, orientation: metadataOrientation(exif, chunks.xmp) };
}
