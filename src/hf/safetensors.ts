/**
 * safetensors reading and writing. The reader validates the header against the file (a hostile or truncated
 * header must fail with a clear message, never read out of bounds) and reads each tensor on demand, so a
 * multi-GB shard is never held in one buffer.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { f16ToF32 } from "../tensor/half.js";

export type DType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

export const DTYPE_BYTES: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  byteLength: number;
  file: string;
}

/** Thrown for any malformed safetensors file; the message names the file and the problem. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface OpenOptions {
  /** How messages name the file (default: its path). Servers pass a name without host folders. */
  label?: string;
  /** Refuse a symlink (O_NOFOLLOW) and never block on a FIFO: for files of untrusted folders. */
  noFollow?: boolean;
}

/** A value from a hostile header, quoted for a one-line message: JSON, cut short, never recursing deeply. */
function quote(v: unknown): string {
  if (v === undefined) return "(none)";
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    // Too deeply nested to print (the stack would overflow): show its kind and first level only.
    s = Array.isArray(v) ? "[[[…" : "{…}";
  }
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/** Element count of a shape, or null when it is not an exact integer (a hostile shape can overflow). */
function elementCount(shape: number[]): number | null {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return null;
  }
  return n;
}

export class SafetensorsFile {
  readonly tensors = new Map<string, TensorInfo>();
  metadata: Record<string, string> = {};
  private fd: number;

  private constructor(
    readonly file: string,
    fd: number,
    private readonly label: string,
  ) {
    this.fd = fd;
  }

  static open(file: string, opts: OpenOptions = {}): SafetensorsFile {
    const label = opts.label ?? file;
    const flags = opts.noFollow
      ? fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK
      : fs.constants.O_RDONLY;
    let fd: number;
    try {
      fd = fs.openSync(file, flags);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ELOOP") throw new SafetensorsError(`${label}: is a symbolic link, not a regular file`);
      if (code === "ENOENT") throw new SafetensorsError(`${label}: no such file`);
      throw new SafetensorsError(`${label}: cannot open (${code ?? e})`);
    }
    const st = new SafetensorsFile(file, fd, label);
    try {
      const stat = fs.fstatSync(fd);
      if (!stat.isFile()) st.fail("not a regular file");
      st.parseHeader(stat.size);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return st;
  }

  private fail(msg: string): never {
    throw new SafetensorsError(`${this.label}: ${msg}`);
  }

  private parseHeader(fileSize: number): void {
    if (fileSize < 8) this.fail(`file is ${fileSize} bytes, too short for a safetensors header`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(this.fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen > fileSize - 8)
      this.fail(`header length ${headerLen} goes beyond the file (${fileSize} bytes)`);
    if (headerLen > MAX_HEADER_BYTES) this.fail(`header length ${headerLen} is implausibly large`);
    const hb = Buffer.alloc(headerLen);
    if (fs.readSync(this.fd, hb, 0, headerLen, 8) !== headerLen) this.fail("the header is cut short");
    let header: unknown;
    try {
      header = JSON.parse(hb.toString("utf8"));
    } catch {
      this.fail("header is not valid JSON (corrupt or not a safetensors file)");
    }
    if (typeof header !== "object" || header === null || Array.isArray(header))
      this.fail("header is not a JSON object");
    const dataStart = 8 + headerLen;
    const dataSize = fileSize - dataStart;
    const spans: [number, number, string][] = [];
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (
          typeof raw !== "object" ||
          raw === null ||
          Array.isArray(raw) ||
          !Object.values(raw).every((v) => typeof v === "string")
        )
          this.fail(`__metadata__ must map names to strings, got ${quote(raw)}`);
        this.metadata = raw as Record<string, string>;
        continue;
      }
      const q = quote(name);
      if (typeof raw !== "object" || raw === null || Array.isArray(raw))
        this.fail(`entry ${q} is not an object`);
      const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const dtype = e.dtype as DType;
      // Own keys only: "toString" or "__proto__" are no dtypes.
      if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_BYTES, dtype))
        this.fail(`tensor ${q} has unknown dtype ${quote(e.dtype)}`);
      const shape = e.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        this.fail(`tensor ${q} has an invalid shape ${quote(shape)}`);
      }
      const offs = e.data_offsets;
      if (
        !Array.isArray(offs) ||
        offs.length !== 2 ||
        !offs.every((o) => Number.isSafeInteger(o) && o >= 0)
      ) {
        this.fail(`tensor ${q} has invalid data_offsets ${quote(offs)}`);
      }
      const [b, end] = offs as [number, number];
      if (end < b) this.fail(`tensor ${q} has data_offsets end < begin`);
      if (end > dataSize)
        this.fail(
          `tensor ${q} data [${b}, ${end}) lies outside the data section (${dataSize} bytes); file truncated?`,
        );
      const n = elementCount(shape as number[]);
      const need = n === null ? null : n * DTYPE_BYTES[dtype];
      if (need === null || !Number.isSafeInteger(need))
        this.fail(`tensor ${q} has a shape ${quote(shape)} whose element count is too large`);
      if (need !== end - b) {
        this.fail(`tensor ${q} holds ${end - b} bytes but ${dtype}${quote(shape)} needs ${need}`);
      }
      spans.push([b, end, name]);
      this.tensors.set(name, {
        name,
        dtype,
        shape: shape as number[],
        offset: dataStart + b,
        byteLength: end - b,
        file: this.file,
      });
    }
    spans.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i][0] < spans[i - 1][1])
        this.fail(`tensors ${quote(spans[i - 1][2])} and ${quote(spans[i][2])} overlap`);
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) this.fail(`tensor ${quote(name)} not found`);
    return t;
  }

  /** Raw little-endian bytes of a tensor in a fresh, suitably aligned ArrayBuffer. */
  readBytes(name: string): ArrayBuffer {
    const t = this.info(name);
    let buf: ArrayBuffer;
    try {
      buf = new ArrayBuffer(t.byteLength);
    } catch {
      this.fail(`tensor ${quote(name)} (${t.byteLength} bytes) is too large to read into memory`);
    }
    let done = 0;
    const view = new Uint8Array(buf);
    while (done < t.byteLength) {
      const chunk = Math.min(1 << 30, t.byteLength - done);
      const r = fs.readSync(this.fd, view, done, chunk, t.offset + done);
      if (r <= 0) this.fail(`unexpected end of file reading ${quote(name)}`);
      done += r;
    }
    return buf;
  }

  /**
   * Fills `dst` with the tensor's bytes from `byteOffset` on, through the file this reader opened (never by
   * reopening its path, which may have been swapped for a symlink since).
   */
  readInto(name: string, byteOffset: number, dst: Uint8Array): void {
    const t = this.info(name);
    if (byteOffset < 0 || byteOffset + dst.length > t.byteLength)
      this.fail(`bytes [${byteOffset}, ${byteOffset + dst.length}) lie outside tensor ${quote(name)}`);
    for (let done = 0; done < dst.length; ) {
      const r = fs.readSync(this.fd, dst, done, dst.length - done, t.offset + byteOffset + done);
      if (r <= 0) this.fail(`unexpected end of file reading ${quote(name)}`);
      done += r;
    }
  }

  /** The tensor widened to float32 (F32/F16/BF16/F64/integers). */
  readF32(name: string): Float32Array {
    return toF32(this.info(name).dtype, this.readBytes(name));
  }

  /** Integer tensors as plain numbers (I64 values must be safe integers). */
  readInts(name: string): number[] {
    const t = this.info(name);
    const buf = this.readBytes(name);
    switch (t.dtype) {
      case "I64":
        return Array.from(new BigInt64Array(buf), Number);
      case "U64":
        return Array.from(new BigUint64Array(buf), Number);
      case "I32":
        return Array.from(new Int32Array(buf));
      case "U8":
      case "BOOL":
        return Array.from(new Uint8Array(buf));
      default:
        return Array.from(toF32(t.dtype, buf));
    }
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

export function toF32(dtype: DType, buf: ArrayBuffer): Float32Array {
  switch (dtype) {
    case "F32":
      return new Float32Array(buf);
    case "F64":
      return Float32Array.from(new Float64Array(buf));
    case "BF16": {
      const src = new Uint16Array(buf);
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case "F16": {
      const src = new Uint16Array(buf);
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = f16ToF32(src[i]);
      return out;
    }
    case "I64":
      return Float32Array.from(new BigInt64Array(buf), Number);
    case "I32":
      return Float32Array.from(new Int32Array(buf));
    case "I16":
      return Float32Array.from(new Int16Array(buf));
    case "I8":
      return Float32Array.from(new Int8Array(buf));
    case "U8":
    case "BOOL":
      return Float32Array.from(new Uint8Array(buf));
    case "U16":
      return Float32Array.from(new Uint16Array(buf));
    case "U32":
      return Float32Array.from(new Uint32Array(buf));
    case "U64":
      return Float32Array.from(new BigUint64Array(buf), Number);
  }
}

/** A checkpoint's weights: one file or a sharded set (`model.safetensors.index.json`). */
export class WeightFiles {
  private constructor(
    readonly files: SafetensorsFile[],
    private readonly byName: Map<string, SafetensorsFile>,
  ) {}

  static openDir(dir: string): WeightFiles {
    const single = path.join(dir, "model.safetensors");
    const index = path.join(dir, "model.safetensors.index.json");
    if (fs.existsSync(single)) {
      const f = SafetensorsFile.open(single);
      return new WeightFiles([f], new Map([...f.tensors.keys()].map((n) => [n, f])));
    }
    if (!fs.existsSync(index)) {
      throw new SafetensorsError(
        `${dir}: no model.safetensors or model.safetensors.index.json (is this a llava-hf checkpoint folder?)`,
      );
    }
    let map: Record<string, string>;
    try {
      map = JSON.parse(fs.readFileSync(index, "utf8")).weight_map;
    } catch (e) {
      throw new SafetensorsError(`${index}: not valid JSON (${(e as Error).message})`);
    }
    if (!map || typeof map !== "object") throw new SafetensorsError(`${index}: missing "weight_map"`);
    const shards = new Map<string, SafetensorsFile>();
    const byName = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of Object.entries(map)) {
        if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\")) {
          throw new SafetensorsError(`${index}: invalid shard name for "${name}"`);
        }
        let f = shards.get(shard);
        if (!f) {
          f = SafetensorsFile.open(path.join(dir, shard));
          shards.set(shard, f);
        }
        if (!f.has(name))
          throw new SafetensorsError(`${f.file}: tensor "${name}" listed in the index is missing`);
        byName.set(name, f);
      }
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    return new WeightFiles([...shards.values()], byName);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.byName.get(name);
    if (!f) throw new SafetensorsError(`weights: tensor "${name}" not found`);
    return f.info(name);
  }

  file(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) throw new SafetensorsError(`weights: tensor "${name}" not found`);
    return f;
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /** The bytes, or what makes them when the tensor's turn comes (so a large run never holds them all). */
  data: ArrayBufferView | (() => ArrayBufferView);
}

/** Bytes the tensor's dtype and shape call for. */
function tensorBytes(t: TensorToWrite): number {
  return t.shape.reduce((a, d) => a * d, 1) * DTYPE_BYTES[t.dtype];
}

function checkBytes(t: TensorToWrite, data: ArrayBufferView, bytes: number): ArrayBufferView {
  if (data.byteLength !== bytes)
    throw new Error(
      `writeSafetensors: "${t.name}" has ${data.byteLength} bytes, ${t.dtype}[${t.shape}] needs ${bytes}`,
    );
  return data;
}

/**
 * Write a safetensors file, streaming tensor after tensor (so large attention stacks never need one buffer;
 * a tensor given as a function is made when its turn comes and let go after).
 * Data offsets are aligned to 8 bytes so every dtype can be viewed in place.
 */
export function writeSafetensors(
  file: string,
  tensors: TensorToWrite[],
  metadata: Record<string, string> = {},
): void {
  const header: Record<string, unknown> = { __metadata__: { format: "pt", ...metadata } };
  let offset = 0;
  const offsets: number[] = [];
  const sizes: number[] = [];
  for (const t of tensors) {
    const bytes = tensorBytes(t);
    if (typeof t.data !== "function") checkBytes(t, t.data, bytes);
    offset = Math.ceil(offset / 8) * 8;
    offsets.push(offset);
    sizes.push(bytes);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  // Pad the header with spaces so the data section starts 8-byte aligned.
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const hb = Buffer.from(json, "utf8");
  const fd = fs.openSync(file, "w");
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hb.length));
    fs.writeSync(fd, len);
    fs.writeSync(fd, hb);
    let pos = 0;
    const zeros = Buffer.alloc(8);
    tensors.forEach((t, i) => {
      if (offsets[i] > pos) fs.writeSync(fd, zeros, 0, offsets[i] - pos);
      const data = typeof t.data === "function" ? checkBytes(t, t.data(), sizes[i]) : t.data;
      const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      for (let done = 0; done < view.length; ) {
        done += fs.writeSync(fd, view, done, Math.min(1 << 30, view.length - done));
      }
      pos = offsets[i] + data.byteLength;
    });
  } finally {
    fs.closeSync(fd);
  }
}
