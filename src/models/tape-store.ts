/**
 * Where per-layer arrays wait between the pass that makes them and the one that reads them: a backward tape's
 * activations (a full-depth 7B's tape is ~4 GB on top of its weights), or a generation's prefill attention
 * until the run is written (1.4 GB there). Past a memory budget the layers go to an unlinked temporary file;
 * the reader gets such a layer back when it reaches it (a copy from the page cache, small next to the layer's
 * products) and holds one at a time.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** A layer's activations: Float32Array fields (absent ones allowed). */
export type LayerArrays = object;

export interface LayerTapesOptions {
  /** Bytes of layers kept in memory before the rest go to the file (default: all in memory). */
  memoryBytes?: number;
  /** Folder for the file (default: the OS temporary folder, i.e. `TMPDIR`). */
  dir?: string;
  /** What the layers are, for error messages (default "the backward tape"). */
  what?: string;
  /** How else to run when the file cannot be written, for error messages (e.g. a flag keeping all in memory). */
  otherwise?: string;
}

interface StoredField {
  key: string;
  offset: number;
  length: number;
}

type Slot<T> = { layer: T } | { fields: StoredField[] } | { released: true };

export class LayerTapes<T extends LayerArrays> {
  private readonly slots: Slot<T>[] = [];
  private readonly memoryBytes: number;
  private readonly dir: string;
  private readonly what: string;
  private readonly otherwise: string | undefined;
  private inMemory = 0;
  private file: TapeFile | null = null;
  private last: { i: number; layer: T } | null = null;

  constructor(opts: LayerTapesOptions = {}) {
    this.memoryBytes = opts.memoryBytes ?? Number.POSITIVE_INFINITY;
    this.dir = opts.dir ?? os.tmpdir();
    this.what = opts.what ?? "the backward tape";
    this.otherwise = opts.otherwise;
  }

  /** Layers stored so far. */
  get length(): number {
    return this.slots.length;
  }

  /** Bytes of stored layers that went to the file. */
  get spilledBytes(): number {
    return this.file?.end ?? 0;
  }

  /** Stores the next layer's activations: in memory within the budget, else written out (drop your arrays). */
  push(layer: T): void {
    const arrays = fieldsOf(layer);
    const bytes = bytesOf(arrays);
    if (this.inMemory + bytes <= this.memoryBytes) {
      this.inMemory += bytes;
      this.slots.push({ layer });
      return;
    }
    this.file ??= new TapeFile(this.dir, this.what, this.otherwise);
    const file = this.file;
    this.slots.push({ fields: arrays.map(([key, a]) => ({ key, offset: file.write(a), length: a.length })) });
  }

  /** Layer i's activations (a layer read back from the file is kept until another one is read). */
  get(i: number): T {
    const slot = this.slots[i];
    if (!slot) throw new RangeError(`tape: no layer ${i} (${this.slots.length} stored)`);
    if ("layer" in slot) return slot.layer;
    if ("released" in slot) throw new RangeError(`tape: layer ${i} was released`);
    if (this.last?.i === i) return this.last.layer;
    this.last = null; // the previous layer can go before this one is read
    const layer: Record<string, Float32Array> = {};
    for (const f of slot.fields)
      layer[f.key] = this.openFile().read(f.offset, f.length, `layer ${i}'s ${f.key}`);
    this.last = { i, layer: layer as T };
    return this.last.layer;
  }

  /** Frees layer i (its memory, or its copy read back; its bytes in the file stay until `dispose`). */
  release(i: number): void {
    const slot = this.slots[i];
    if (!slot) throw new RangeError(`tape: no layer ${i} (${this.slots.length} stored)`);
    if ("layer" in slot) this.inMemory -= bytesOf(fieldsOf(slot.layer));
    if (this.last?.i === i) this.last = null;
    this.slots[i] = { released: true };
  }

  /** Frees every layer and closes the file (already unlinked: nothing is left on disk). */
  dispose(): void {
    this.slots.length = 0;
    this.last = null;
    this.inMemory = 0;
    this.file?.close();
  }

  private openFile(): TapeFile {
    if (!this.file) throw new Error("tape: used after dispose()");
    return this.file;
  }
}

function fieldsOf(layer: LayerArrays): [string, Float32Array][] {
  const out: [string, Float32Array][] = [];
  for (const [key, a] of Object.entries(layer)) {
    if (a === undefined) continue;
    if (!(a instanceof Float32Array)) throw new TypeError(`tape: field ${key} is not a Float32Array`);
    out.push([key, a]);
  }
  return out;
}

function bytesOf(arrays: [string, Float32Array][]): number {
  return arrays.reduce((s, [, a]) => s + a.byteLength, 0);
}

/** Bytes per read or write call (one call is capped near 2 GiB). */
const IO_CHUNK = 1 << 30;

/** An append-only file of f32 arrays, unlinked as soon as it is open. */
class TapeFile {
  end = 0;
  private fd: number | null;
  /** The file and its folder when they could not be removed while open (removed at `close`). */
  private leftover: string | null = null;

  constructor(
    private readonly dir: string,
    private readonly what: string,
    private readonly otherwise: string | undefined,
  ) {
    let folder: string;
    try {
      folder = fs.mkdtempSync(path.join(dir, "lvlm-interpret-tape-"));
    } catch (e) {
      throw new Error(`${dir}: cannot create a file for ${this.what} here (${(e as Error).message})`);
    }
    const file = path.join(folder, "tape.bin");
    this.fd = fs.openSync(file, "w+", 0o600);
    // Unlinked while open, the file vanishes with the process however it ends.
    try {
      fs.unlinkSync(file);
      fs.rmdirSync(folder);
    } catch {
      this.leftover = folder;
    }
  }

  /** Appends a's bytes; returns their offset. */
  write(a: Float32Array): number {
    const fd = this.open();
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const at = this.end;
    try {
      for (let done = 0; done < bytes.length; )
        done += fs.writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done), at + done);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === "ENOSPC" ? "no space left on the device" : err.message;
      throw new Error(
        `${this.dir}: writing ${this.what} failed after ${(at / 2 ** 30).toFixed(2)} GiB (${why}); point TMPDIR at a disk with room${this.otherwise ? `, or ${this.otherwise}` : ""}`,
      );
    }
    this.end += bytes.length;
    return at;
  }

  read(offset: number, length: number, what: string): Float32Array {
    const fd = this.open();
    const a = new Float32Array(length);
    const bytes = new Uint8Array(a.buffer);
    for (let done = 0; done < bytes.length; ) {
      const n = fs.readSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.length - done), offset + done);
      if (n === 0) throw new Error(`tape: ${what} ends early in the tape file`);
      done += n;
    }
    return a;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    if (this.leftover) fs.rmSync(this.leftover, { recursive: true, force: true });
    this.leftover = null;
  }

  private open(): number {
    if (this.fd === null) throw new Error("tape: used after dispose()");
    return this.fd;
  }
}
