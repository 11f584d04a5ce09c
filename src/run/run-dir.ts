/**
 * Reading and writing run directories. Writes are atomic: everything goes to a temp dir beside the target
 * and is renamed into place, so a crash never leaves a half run that looks complete. The manifest is checked
 * against its schema on both ways; format-1 runs open converted to format 2 (./v1.ts) and stay format 1 on
 * disk when an analysis adds to them.
 *
 * Reads trust nothing inside a run: every file a run is read from must be a regular file inside its folder —
 * never a symlink (a run that came from elsewhere could point at any file of the host), a FIFO or a device —
 * and errors name files relative to the run, never by host path.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { imageSizeOf } from "../hf/image-size.js";
import {
  SafetensorsError,
  SafetensorsFile,
  type TensorInfo,
  type TensorToWrite,
  writeSafetensors,
} from "../hf/safetensors.js";
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
import { checkNewDir, checkNotExisting, makeDirs, makeTempDir } from "./out-dir.js";
import { manifestFromV1, positionsFromV1 } from "./v1.js";
import { unpackWindowed } from "./window-attention.js";

export const MANIFEST_FILE = "manifest.json";
export const TENSORS_FILE = "tensors.safetensors";
/** The patch grid [t, h, w] of patch-sequence pixel_values (Qwen2-VL's image_grid_thw): I64 [1, 3]. */
export const IMAGE_GRID_TENSOR = "image_grid_thw";
/** Sequence position of every image token, separators included: I64 [P]. */
export const IMAGE_POSITIONS_TENSOR = "image_token_positions";
/** Each image token's box in original-image pixels (x0, y0, x1, y1), NaN rows for separators: F32 [P, 4]. */
export const IMAGE_BOXES_TENSOR = "image_token_boxes";

/** With a windowed tower block stored packed: the window of every tower token (I64 [N]). */
export function vitWindowTensorName(layer: number): string {
  return `vit_attn_window.${layer}`;
}

export class RunError extends Error {
  override name = "RunError";
}

/** A run file that cannot be read as such: missing, a symlink, or not a regular file. */
export class RunFileError extends RunError {
  override name = "RunFileError";
  constructor(
    readonly file: string,
    readonly reason: "missing" | "symlink" | "not-regular",
  ) {
    super(
      reason === "missing"
        ? `${file} is missing from the run`
        : reason === "symlink"
          ? `${file} is a symbolic link; a run's files must be regular files inside its folder`
          : `${file} is not a regular file`,
    );
  }
}

const PLAIN_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/**
 * Checks that `rel` (a `/`-separated path inside the run) names a regular file reached through real folders
 * only, without following any link; throws {@link RunFileError} otherwise.
 */
export function checkRunFile(dir: string, rel: string): void {
  const parts = rel.split("/");
  if (!parts.every((p) => PLAIN_NAME_RE.test(p)))
    throw new RunError(`${JSON.stringify(rel)} is not a plain file name`);
  let p = dir;
  for (let i = 0; i < parts.length; i++) {
    p = path.join(p, parts[i]);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      throw new RunFileError(rel, "missing");
    }
    if (st.isSymbolicLink()) throw new RunFileError(parts.slice(0, i + 1).join("/"), "symlink");
    const last = i === parts.length - 1;
    if (last ? !st.isFile() : !st.isDirectory())
      throw new RunFileError(parts.slice(0, i + 1).join("/"), "not-regular");
  }
}

/**
 * Opens a file of a run for reading after {@link checkRunFile}; O_NOFOLLOW and the fstat check close the gap
 * in which the file could be swapped for a link, O_NONBLOCK keeps a FIFO from hanging the open.
 */
export function openRunFile(dir: string, rel: string): number {
  checkRunFile(dir, rel);
  let fd: number;
  try {
    fd = fs.openSync(
      path.join(dir, rel),
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RunFileError(rel, code === "ELOOP" ? "symlink" : code === "ENOENT" ? "missing" : "not-regular");
  }
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    throw new RunFileError(rel, "not-regular");
  }
  return fd;
}

/** The bytes of a run's file (see {@link openRunFile}). */
export function readRunFile(dir: string, rel: string): Buffer {
  const fd = openRunFile(dir, rel);
  try {
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const OVERWRITE_HINT = "choose another --out, remove it, or pass --overwrite";

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
        return imageSizeOf(readRunFile(dir, name));
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
    return parseManifest(JSON.parse(readRunFile(dir, MANIFEST_FILE).toString("utf8")), dir).manifest;
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
  // Checked again here (not only before the work, by checkRunOut): the folder may have appeared since.
  checkNotExisting(outDir, { overwrite: opts.overwrite, overwriteHint: OVERWRITE_HINT });
  // What is written must read back: the writer holds itself to the reader's schema.
  const checked = manifestSchema.safeParse(contents.manifest);
  if (!checked.success) throw new RunError(`manifest to write: ${zodMessage(checked.error)}`);
  const problem = manifestProblem(checked.data);
  if (problem) throw new RunError(`manifest to write: ${problem}`);
  makeDirs(path.dirname(target), outDir);
  const tmp = makeTempDir(path.dirname(target), `.${path.basename(target)}.tmp-`, outDir);
  try {
    writeSafetensors(path.join(tmp, TENSORS_FILE), contents.tensors);
    for (const f of contents.files) {
      makeDirs(path.dirname(path.join(tmp, f.name)));
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

/**
 * Fails fast, before a run is computed, when `writeRun(outDir)` could not write it: the folder exists (and is
 * not empty) without `overwrite`, or no folder can be created where it would go.
 */
export function checkRunOut(outDir: string, opts: { overwrite?: boolean } = {}): void {
  checkNewDir(outDir, { overwrite: opts.overwrite, overwriteHint: OVERWRITE_HINT });
}

/** Write a file inside a run atomically (temp file + rename). */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  makeDirs(path.dirname(file));
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
    const extra = manifest.tensor_files ?? [];
    if (!Array.isArray(extra) || !extra.every((f) => typeof f === "string" && PLAIN_NAME_RE.test(f)))
      throw new RunError(`${MANIFEST_FILE}: tensor_files must list plain file names of the run folder`);
    try {
      for (const name of [TENSORS_FILE, ...extra]) this.openTensorFile(name);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Opens one safetensors file of the run (regular file, no link followed); errors name it relative to the run. */
  private openTensorFile(name: string): SafetensorsFile {
    checkRunFile(this.dir, name);
    let f: SafetensorsFile;
    try {
      f = SafetensorsFile.open(path.join(this.dir, name), { label: name, noFollow: true });
    } catch (e) {
      if (e instanceof SafetensorsError) throw new RunError(e.message);
      throw e;
    }
    this.files.push(f);
    for (const t of f.tensors.keys()) this.byName.set(t, f);
    return f;
  }

  static open(dir: string): Run {
    let bytes: Buffer;
    try {
      bytes = readRunFile(dir, MANIFEST_FILE);
    } catch (e) {
      if (e instanceof RunFileError && e.reason === "missing")
        throw new RunError(`${dir}: not a run directory (no ${MANIFEST_FILE})`);
      throw e;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(bytes.toString("utf8"));
    } catch (e) {
      throw new RunError(`${MANIFEST_FILE}: invalid JSON (${(e as Error).message})`);
    }
    const { manifest, v1 } = parseManifest(raw, dir);
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
    if (!f) throw new RunError(`the run has no tensor ${JSON.stringify(name)}`);
    return f.info(name);
  }

  /** A tensor widened to float32. */
  tensor(name: string): Tensor {
    const f = this.byName.get(name);
    if (!f) throw new RunError(`the run has no tensor ${JSON.stringify(name)}`);
    return { shape: [...f.info(name).shape], data: f.readF32(name) };
  }

  /** Fills `dst` with a tensor's bytes from `byteOffset` on (partial reads of large tensors). */
  readTensorBytes(name: string, byteOffset: number, dst: Uint8Array): void {
    const f = this.byName.get(name);
    if (!f) throw new RunError(`the run has no tensor ${JSON.stringify(name)}`);
    f.readInto(name, byteOffset, dst);
  }

  /** LLM attention of layer l: [heads, S, S]. */
  llmAttention(layer: number): Tensor {
    return this.tensor(`llm_attn.${layer}`);
  }

  /**
   * Vision-tower attention of layer l as the tower computed it: [heads, P, P] ([n, heads, P, P] for tiles);
   * a windowed block stored packed ([heads, N, w] with `vit_attn_window.{l}`) is rebuilt dense.
   */
  vitAttention(layer: number): Tensor {
    const t = this.tensor(`vit_attn.${layer}`);
    const wname = vitWindowTensorName(layer);
    if (!this.has(wname)) return t;
    const windows = this.ints(wname);
    const heads = t.shape[0];
    try {
      return { shape: [heads, windows.length, windows.length], data: unpackWindowed(t.data, heads, windows) };
    } catch (e) {
      throw new RunError(`vit_attn.${layer} with ${wname}: ${(e as Error).message}`);
    }
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
    this.openTensorFile(fileName);
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
