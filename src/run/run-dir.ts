/**
 * Reading and writing run directories. Writes are atomic: everything goes to a temp dir beside the target
 * and is renamed into place, so a crash never leaves a half run that looks complete. The manifest is checked
 * against its schema on both ways; format-1 runs open converted to format 2 (./v1.ts) and stay format 1 on
 * disk when an analysis adds to them.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { imageSizeOf } from "../hf/image-size.js";
import { SafetensorsFile, type TensorInfo, type TensorToWrite, writeSafetensors } from "../hf/safetensors.js";
import { type ImageLayout, layoutBoxes } from "../models/image-layout.js";
import type { Tensor } from "../tensor/tensor.js";
import {
  manifestProblem,
  manifestSchema,
  manifestV1Schema,
  RUN_FORMAT,
  RUN_FORMAT_V1,
  type RunManifest,
  type RunManifestV1,
  zodMessage,
} from "./manifest.js";
import { manifestFromV1, positionsFromV1 } from "./v1.js";

export const MANIFEST_FILE = "manifest.json";
export const TENSORS_FILE = "tensors.safetensors";
/** Sequence position of every image token, separators included: I64 [P]. */
export const IMAGE_POSITIONS_TENSOR = "image_token_positions";
/** Each image token's box in original-image pixels (x0, y0, x1, y1), NaN rows for separators: F32 [P, 4]. */
export const IMAGE_BOXES_TENSOR = "image_token_boxes";

export class RunError extends Error {}

/** Where the image tokens are: sequence positions, boxes in the original picture, and the layout. */
export interface ImageTokens {
  positions: number[];
  /** [P, 4] float32, NaN rows for tokens without a place. */
  boxes: Float32Array;
  layout: ImageLayout;
}

/** A manifest as read from a run folder: the format-2 view, and the format-1 original when converted. */
export interface ReadManifest {
  manifest: RunManifest;
  v1: RunManifestV1 | null;
}

/**
 * Parses a manifest.json (any supported format) into format 2; `dir` supplies the image sizes a format-1
 * conversion needs. Throws a one-line RunError naming the first problem.
 */
export function parseManifest(raw: unknown, dir: string, label = MANIFEST_FILE): ReadManifest {
  const format = raw && typeof raw === "object" ? (raw as { format?: unknown }).format : undefined;
  if (format === RUN_FORMAT) {
    const r = manifestSchema.safeParse(raw);
    if (!r.success) throw new RunError(`${label}: ${zodMessage(r.error)}`);
    const problem = manifestProblem(r.data);
    if (problem) throw new RunError(`${label}: ${problem}`);
    return { manifest: r.data, v1: null };
  }
  if (format === RUN_FORMAT_V1) {
    const r = manifestV1Schema.safeParse(raw);
    if (!r.success) throw new RunError(`${label}: ${zodMessage(r.error)}`);
    const problem = manifestProblem(r.data);
    if (problem) throw new RunError(`${label}: ${problem}`);
    const sizeOf = (name: string) => {
      try {
        return imageSizeOf(fs.readFileSync(path.join(dir, name)));
      } catch {
        return null;
      }
    };
    const seen = sizeOf(r.data.image_file);
    const side = seen ? seen[0] : r.data.model.patch_grid[1] * 14;
    return {
      manifest: manifestFromV1(r.data, { original: sizeOf(r.data.original_image_file), side }),
      v1: r.data,
    };
  }
  throw new RunError(
    `${label}: format ${JSON.stringify(format)}, expected "${RUN_FORMAT}" (or "${RUN_FORMAT_V1}", read and converted)`,
  );
}

/** The manifest of a run folder, converted to format 2; null when it is missing or not a readable run. */
export function readRunManifest(dir: string): RunManifest | null {
  try {
    const mf = path.join(dir, MANIFEST_FILE);
    if (!fs.lstatSync(mf).isFile()) return null;
    return parseManifest(JSON.parse(fs.readFileSync(mf, "utf8")), dir).manifest;
  } catch {
    return null;
  }
}

export interface RunContents {
  manifest: RunManifest;
  tensors: TensorToWrite[];
  /** Other files, by name relative to the run dir. */
  files: { name: string; data: Uint8Array }[];
}

/** Write a complete run into `outDir` atomically. Refuses to overwrite a non-empty directory unless told. */
export function writeRun(outDir: string, contents: RunContents, opts: { overwrite?: boolean } = {}): void {
  const target = path.resolve(outDir);
  if (fs.existsSync(target)) {
    const nonEmpty = fs.statSync(target).isDirectory() ? fs.readdirSync(target).length > 0 : true;
    if (nonEmpty && !opts.overwrite)
      throw new RunError(`${outDir}: already exists and is not empty (choose another --out or remove it)`);
  }
  fs.mkdirSync(path.dirname(target), { recursive: true });
  // What is written must read back: the writer holds itself to the reader's schema.
  const checked = manifestSchema.safeParse(contents.manifest);
  if (!checked.success) throw new RunError(`manifest to write: ${zodMessage(checked.error)}`);
  const problem = manifestProblem(checked.data);
  if (problem) throw new RunError(`manifest to write: ${problem}`);
  const tmp = fs.mkdtempSync(path.join(path.dirname(target), `.${path.basename(target)}.tmp-`));
  try {
    writeSafetensors(path.join(tmp, TENSORS_FILE), contents.tensors);
    for (const f of contents.files) {
      fs.mkdirSync(path.dirname(path.join(tmp, f.name)), { recursive: true });
      fs.writeFileSync(path.join(tmp, f.name), f.data);
    }
    fs.writeFileSync(path.join(tmp, MANIFEST_FILE), `${JSON.stringify(contents.manifest, null, 1)}\n`);
    fs.chmodSync(tmp, 0o755);
    if (fs.existsSync(target)) fs.rmSync(target, { recursive: true, force: true });
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Write a file inside a run atomically (temp file + rename). */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** An opened run: manifest plus lazy access to every tensor of its safetensors files. */
export class Run {
  private readonly files: SafetensorsFile[] = [];
  private readonly byName = new Map<string, SafetensorsFile>();

  private imageCache: ImageTokens | null = null;

  private constructor(
    readonly dir: string,
    public manifest: RunManifest,
    /** The format-1 manifest this run was converted from (null for format 2). */
    private readonly v1: RunManifestV1 | null,
  ) {
    for (const name of [TENSORS_FILE, ...(manifest.tensor_files ?? [])]) {
      const f = SafetensorsFile.open(path.join(dir, name));
      this.files.push(f);
      for (const t of f.tensors.keys()) this.byName.set(t, f);
    }
  }

  static open(dir: string): Run {
    const mf = path.join(dir, MANIFEST_FILE);
    if (!fs.existsSync(mf)) throw new RunError(`${dir}: not a run directory (no ${MANIFEST_FILE})`);
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(mf, "utf8"));
    } catch (e) {
      throw new RunError(`${mf}: invalid JSON (${(e as Error).message})`);
    }
    const { manifest, v1 } = parseManifest(raw, dir, mf);
    return new Run(dir, manifest, v1);
  }

  /** The format the run is stored in (1: converted on read). */
  get storedFormat(): 1 | 2 {
    return this.v1 ? 1 : 2;
  }

  /** Image-token positions and boxes (format 1: derived from its one contiguous span and grid). */
  imageTokens(): ImageTokens {
    if (this.imageCache) return this.imageCache;
    const layout = this.manifest.image_layout;
    const P = layout.token_count;
    let positions: number[];
    let boxes: Float32Array;
    if (this.v1) {
      positions = positionsFromV1(this.v1);
      boxes = layoutBoxes(layout);
    } else {
      positions = this.ints(IMAGE_POSITIONS_TENSOR);
      boxes = this.tensor(IMAGE_BOXES_TENSOR).data;
    }
    if (positions.length !== P || boxes.length !== P * 4)
      throw new RunError(
        `${this.dir}: ${positions.length} image positions and ${boxes.length / 4} boxes for ${P} image tokens`,
      );
    this.imageCache = { positions, boxes, layout };
    return this.imageCache;
  }

  /** An integer tensor as numbers. */
  ints(name: string): number[] {
    const f = this.byName.get(name);
    if (!f) throw new RunError(`${this.dir}: run has no tensor "${name}"`);
    return f.readInts(name);
  }

  tensorNames(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): TensorInfo {
    const f = this.byName.get(name);
    if (!f) throw new RunError(`${this.dir}: run has no tensor "${name}"`);
    return f.info(name);
  }

  /** A tensor widened to float32. */
  tensor(name: string): Tensor {
    const f = this.byName.get(name);
    if (!f) throw new RunError(`${this.dir}: run has no tensor "${name}"`);
    return { shape: [...f.info(name).shape], data: f.readF32(name) };
  }

  /** LLM attention of layer l: [heads, S, S]. */
  llmAttention(layer: number): Tensor {
    return this.tensor(`llm_attn.${layer}`);
  }

  /** Vision-tower attention of layer l: [heads, P, P]. */
  vitAttention(layer: number): Tensor {
    return this.tensor(`vit_attn.${layer}`);
  }

  /**
   * Add tensors to the run as a new safetensors file (atomic) and record it in the manifest. An existing
   * file of the same name is replaced.
   */
  addTensors(fileName: string, tensors: TensorToWrite[]): void {
    if (fileName === TENSORS_FILE || fileName.includes("/") || !fileName.endsWith(".safetensors")) {
      throw new RunError(`invalid tensor file name ${fileName}`);
    }
    const file = path.join(this.dir, fileName);
    const tmp = `${file}.tmp-${process.pid}`;
    writeSafetensors(tmp, tensors);
    const old = this.files.findIndex((f) => path.basename(f.file) === fileName);
    if (old >= 0) {
      const f = this.files[old];
      for (const t of f.tensors.keys()) this.byName.delete(t);
      f.close();
      this.files.splice(old, 1);
    }
    fs.renameSync(tmp, file);
    const f = SafetensorsFile.open(file);
    this.files.push(f);
    for (const t of f.tensors.keys()) this.byName.set(t, f);
    if (!this.manifest.tensor_files.includes(fileName)) {
      this.manifest = { ...this.manifest, tensor_files: [...this.manifest.tensor_files, fileName] };
      this.saveManifest();
    }
  }

  /**
   * Writes the manifest back. A format-1 run stays format 1: its original manifest with the fields analyses
   * change (tensor_files, extras).
   */
  saveManifest(): void {
    const out = this.v1
      ? { ...this.v1, tensor_files: this.manifest.tensor_files, extras: this.manifest.extras }
      : this.manifest;
    writeFileAtomic(path.join(this.dir, MANIFEST_FILE), `${JSON.stringify(out, null, 1)}\n`);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
