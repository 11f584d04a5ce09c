import { type DType, WeightFiles } from "../hf/safetensors.js";
import {
  dequantizeRowsInto,
  quantizeChunkRows,
  quantizeRowsInt8,
  type WeightFormat,
} from "../kernels/quantize.js";
import type { WeightMatrix } from "../kernels/types.js";
import { bf16ToF32Into, f16ToF32, f16ToF32Into } from "../tensor/half.js";

export class WeightError extends Error {}

/**
 * What `--weights int8` quantises: the decoder layers' projections and the LM head (unless tied to the
 * embeddings, which are looked up row by row), i.e. nearly all of a 7B's weights and all of its decode-time
 * reading. The vision tower and projector (a few % of the weights, run once per image) stay as stored.
 */
const QUANTISED = /^(text\.layers\.\d+\.(self_attn|mlp)\.[a-z]+_proj\.weight|lm_head)$/;
const FLOAT_DTYPES = new Set(["F32", "F16", "BF16"]);

/**
 * One on-disk naming of a checkpoint: a canonical name `<scope>.<rest>` ("text.layers.0…", "vision.…",
 * "projector.…") is stored as `scopes[scope] + rest`, and "lm_head" as `lmHead`. A family lists the namings its
 * checkpoints come in (e.g. llava-hf's classic and newer transformers names).
 */
export interface WeightNaming {
  scopes: Readonly<Record<string, string>>;
  lmHead: string;
}

export class ModelWeights {
  private readonly matrices = new Map<string, WeightMatrix>();
  /** Reused by `readQuantised`. */
  private readScratch = new ArrayBuffer(0);
  private readonly vectors = new Map<string, Float32Array>();

  private constructor(
    private readonly files: WeightFiles,
    private readonly naming: WeightNaming,
    readonly dir: string,
    /** "int8": the language model's projection matrices (and an untied LM head) are quantised as loaded. */
    readonly format: WeightFormat,
  ) {}

  /**
   * Opens the safetensors of `dir` in the first of `namings` under which the canonical tensor `probe` exists
   * (default: the language model's embedding).
   */
  static open(
    dir: string,
    namings: readonly WeightNaming[],
    probe = "text.embed_tokens.weight",
    format: WeightFormat = "stored",
  ): ModelWeights {
    const files = WeightFiles.openDir(dir);
    const naming = namings.find((n) => files.has(diskNameIn(n, probe)));
    if (!naming) {
      files.close();
      const expected = namings.map((n) => `"${diskNameIn(n, probe)}"`).join(" or ");
      throw new WeightError(`${dir}: no language-model embedding (expected ${expected})`);
    }
    return new ModelWeights(files, naming, dir, format);
  }

  /** On-disk name of a canonical name: "<scope>.*" or "lm_head". */
  diskName(canonical: string): string {
    return diskNameIn(this.naming, canonical);
  }

  has(canonical: string): boolean {
    return this.files.has(this.diskName(canonical));
  }

  private checkShape(canonical: string, expected: number[]): { name: string; dtype: DType } {
    const name = this.diskName(canonical);
    if (!this.files.has(name)) throw new WeightError(`${this.dir}: missing tensor "${name}"`);
    const info = this.files.info(name);
    const same = info.shape.length === expected.length && info.shape.every((d, i) => d === expected[i]);
    if (!same) {
      throw new WeightError(
        `${this.dir}: tensor "${name}" has shape [${info.shape}] but config.json implies [${expected}] (config/weights mismatch)`,
      );
    }
    return { name, dtype: info.dtype };
  }

  /** A Linear weight [out, in] (also conv kernels flattened to [out, rest]). */
  matrix(canonical: string, shape: number[]): WeightMatrix {
    const hit = this.matrices.get(canonical);
    if (hit) return hit;
    const { name, dtype } = this.checkShape(canonical, shape);
    const rows = shape[0];
    const cols = shape.slice(1).reduce((a, b) => a * b, 1);
    if (this.format === "int8" && QUANTISED.test(canonical) && FLOAT_DTYPES.has(dtype)) {
      const m = this.readQuantised(name, dtype as "F32" | "F16" | "BF16", rows, cols);
      this.matrices.set(canonical, m);
      return m;
    }
    const bytes = this.files.file(name).readBytes(name);
    let m: WeightMatrix;
    if (dtype === "F32") m = { rows, cols, dtype, data: new Float32Array(bytes) };
    else if (dtype === "F16" || dtype === "BF16") m = { rows, cols, dtype, data: new Uint16Array(bytes) };
    else
      throw new WeightError(
        `${this.dir}: tensor "${name}" has dtype ${dtype}; weights must be F32, F16 or BF16`,
      );
    this.matrices.set(canonical, m);
    return m;
  }

  /**
   * A matrix quantised to int8 as it is read, a chunk of rows at a time through one reused buffer: neither
   * the tensor as stored nor its float copy is ever whole in memory (at 7B, 13.5 GB of short-lived buffers
   * that were allocated, page-faulted and collected one matrix at a time).
   */
  private readQuantised(
    name: string,
    dtype: "F32" | "F16" | "BF16",
    rows: number,
    cols: number,
  ): WeightMatrix {
    const file = this.files.file(name);
    const size = dtype === "F32" ? 4 : 2;
    const need = Math.min(rows, quantizeChunkRows(cols)) * cols * size;
    if (this.readScratch.byteLength < need) this.readScratch = new ArrayBuffer(need);
    const scratch = this.readScratch;
    return quantizeRowsInt8(rows, cols, (r0, count, out) => {
      const n = count * cols;
      file.readInto(name, r0 * cols * size, new Uint8Array(scratch, 0, n * size));
      if (dtype === "F32") out.set(new Float32Array(scratch, 0, n));
      else if (dtype === "BF16") bf16ToF32Into(new Uint16Array(scratch, 0, n), out, 0, n);
      else f16ToF32Into(new Uint16Array(scratch, 0, n), out, 0, n);
    });
  }

  /** A small tensor (norm weights, biases, embeddings of the vision tower) widened to float32. */
  vector(canonical: string, shape: number[]): Float32Array {
    const hit = this.vectors.get(canonical);
    if (hit) return hit;
    const { name, dtype } = this.checkShape(canonical, shape);
    if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16") {
      throw new WeightError(
        `${this.dir}: tensor "${name}" has dtype ${dtype}; weights must be F32, F16 or BF16`,
      );
    }
    const v = this.files.file(name).readF32(name);
    this.vectors.set(canonical, v);
    return v;
  }

  /** The matrices quantised at load (with `format` "int8"). */
  quantisedMatrices(): WeightMatrix[] {
    return [...this.matrices.values()].filter((m) => m.dtype === "Q8");
  }

  /** Every tensor loaded so far, by canonical name (training walks them; F32 checkpoints only). */
  loadedTensors(): { name: string; shape: number[]; data: Float32Array }[] {
    const out: { name: string; shape: number[]; data: Float32Array }[] = [];
    for (const [name, m] of this.matrices) {
      if (!(m.data instanceof Float32Array))
        throw new WeightError(`${this.dir}: "${name}" is ${m.dtype}; training needs F32 weights`);
      out.push({ name, shape: this.files.info(this.diskName(name)).shape, data: m.data });
    }
    for (const [name, v] of this.vectors)
      out.push({ name, shape: this.files.info(this.diskName(name)).shape, data: v });
    return out;
  }

  optionalVector(canonical: string, shape: number[]): Float32Array | null {
    return this.has(canonical) ? this.vector(canonical, shape) : null;
  }

  close(): void {
    this.files.close();
  }
}

/** Copy row `row` of a weight matrix into `out` as float32 (embedding lookup). */
export function matrixRow(m: WeightMatrix, row: number, out: Float32Array): void {
  const o = row * m.cols;
  if (m.dtype === "Q8") dequantizeRowsInto(m, row, 1, out);
  else if (m.dtype === "F32") {
    out.set((m.data as Float32Array).subarray(o, o + m.cols));
  } else if (m.dtype === "BF16") {
    const src = m.data as Uint16Array;
    const u = new Uint32Array(out.buffer, out.byteOffset, m.cols);
    for (let i = 0; i < m.cols; i++) u[i] = src[o + i] << 16;
  } else {
    const src = m.data as Uint16Array;
    for (let i = 0; i < m.cols; i++) out[i] = f16ToF32(src[o + i]);
  }
}

function diskNameIn(n: WeightNaming, canonical: string): string {
  if (canonical === "lm_head") return n.lmHead;
  const dot = canonical.indexOf(".");
  const prefix = n.scopes[canonical.slice(0, dot)];
  if (prefix === undefined) throw new WeightError(`no weight scope for "${canonical}"`);
  return prefix + canonical.slice(dot + 1);
}
