/**
 * Text inside a PNG: iTXt chunks (UTF-8, uncompressed) inserted after the header, so an exported figure
 * carries its question and answer in a form other tools read (exiftool, Pillow's `info`).
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One iTXt chunk: length, type, keyword NUL, no compression, empty language and translated keyword, text. */
function itxtChunk(keyword: string, text: string): Uint8Array {
  const enc = new TextEncoder();
  const body = [...enc.encode(`iTXt${keyword}`), 0, 0, 0, 0, 0, ...enc.encode(text)];
  const out = new Uint8Array(12 + body.length - 4);
  const view = new DataView(out.buffer);
  view.setUint32(0, body.length - 4);
  out.set(body, 4);
  view.setUint32(out.length - 4, crc32(Uint8Array.from(body)));
  return out;
}

/** The PNG with `entries` as iTXt chunks right after IHDR (8-byte signature + 25-byte IHDR chunk). */
export function withPngText(png: Uint8Array, entries: [keyword: string, text: string][]): Uint8Array {
  const at = 8 + 25;
  const chunks = entries.map(([k, t]) => itxtChunk(k, t));
  const out = new Uint8Array(png.length + chunks.reduce((s, c) => s + c.length, 0));
  out.set(png.subarray(0, at), 0);
  let o = at;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  out.set(png.subarray(at), o);
  return out;
}
