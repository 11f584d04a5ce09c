/** Damaged images for the tests: the ways a file ends up cut short or incomplete. */
import * as zlib from "node:zlib";

/** The chunks of a PNG: type, start offset, end offset (after the CRC). */
export function pngChunks(png: Uint8Array): { type: string; at: number; end: number }[] {
  const out: { type: string; at: number; end: number }[] = [];
  for (let at = 8; at + 8 <= png.length; ) {
    const len = Buffer.from(png.buffer, png.byteOffset + at, 4).readUInt32BE(0);
    const end = at + 12 + len;
    out.push({ type: Buffer.from(png.subarray(at + 4, at + 8)).toString("latin1"), at, end });
    at = end;
  }
  return out;
}

/** The PNG with its (single) IDAT payload cut to a fraction, as a well-formed chunk with a valid CRC. */
export function pngWithDataCut(png: Buffer, fraction: number): Buffer {
  const idat = pngChunks(png).find((c) => c.type === "IDAT")!;
  const data = png.subarray(idat.at + 8, idat.end - 4);
  const kept = data.subarray(0, Math.floor(data.length * fraction));
  const head = Buffer.alloc(8);
  head.writeUInt32BE(kept.length, 0);
  head.write("IDAT", 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(kept, zlib.crc32("IDAT")), 0);
  return Buffer.concat([png.subarray(0, idat.at), head, kept, crc, png.subarray(idat.end)]);
}
