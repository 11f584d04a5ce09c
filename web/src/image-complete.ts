/**
 * Is an image file complete? Browsers draw a PNG, JPEG or WebP that ends early as a partial picture without any
 * error, and a painted picture is uploaded as the canvas, so a cut-short file must be caught before it is shown.
 * The same structural checks as the server's decoder (src/hf/image-png.ts, image-jpeg.ts, image-webp.ts): the PNG
 * chunks run to IEND, a JPEG has its end-of-image marker after the image data, a WebP is as long as its header says.
 */

const u32be = (b: Uint8Array, o: number) =>
  ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
const u32le = (b: Uint8Array, o: number) =>
  (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const ascii = (b: Uint8Array, o: number, n: number) => String.fromCharCode(...b.subarray(o, o + n));
const isLetter = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);

const truncated = (kind: string, where: string) =>
  `truncated ${kind} image: the file ends ${where} (a cut-short download or copy?); use the complete file`;

/** Why the file cannot be used whole (a message without the file name), or null: complete, or not PNG/JPEG/WebP. */
export function incompleteImage(b: Uint8Array): string | null {
  if (b.length >= 8 && b[0] === 0x89 && ascii(b, 1, 3) === "PNG") return pngProblem(b);
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return jpegProblem(b);
  if (b.length >= 12 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") {
    return 8 + u32le(b, 4) > b.length ? truncated("WebP", "before the size its header declares") : null;
  }
  return null;
}

function pngProblem(b: Uint8Array): string | null {
  for (let pos = 8; ; ) {
    if (pos + 8 > b.length) return truncated("PNG", "before its end chunk (IEND)");
    const len = u32be(b, pos);
    if (![4, 5, 6, 7].every((k) => isLetter(b[pos + k])) || len > 0x7fffffff) {
      return `corrupt PNG image (no valid chunk at byte ${pos}); use an intact copy or re-save it with an image editor`;
    }
    const type = ascii(b, pos + 4, 4);
    if (pos + 12 + len > b.length) {
      return truncated("PNG", type === "IDAT" ? "inside its image data" : `inside its ${type} chunk`);
    }
    if (type === "IEND") return null;
    pos += 12 + len;
  }
}

function jpegProblem(b: Uint8Array): string | null {
  // Marker segments up to the first SOS; entropy-coded data escapes 0xFF, so a later FF D9 can only be the end.
  let pos = 2;
  for (;;) {
    if (pos + 4 > b.length) return truncated("JPEG", "inside its header");
    if (b[pos] !== 0xff) return null; // not a marker: leave the verdict to the decoder
    const marker = b[pos + 1];
    if (marker === 0xff) {
      pos++;
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === 0xd9) return null;
    const len = (b[pos + 2] << 8) | b[pos + 3];
    if (pos + 2 + len > b.length) return truncated("JPEG", "inside its header");
    pos += 2 + len;
    if (marker === 0xda) break;
  }
  for (let i = b.length - 2; i >= pos; i--) if (b[i] === 0xff && b[i + 1] === 0xd9) return null;
  return truncated("JPEG", "before its end-of-image marker");
}
