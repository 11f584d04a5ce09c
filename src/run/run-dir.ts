/**
 * Reading and writing run directories. Writes are atomic: everything goes to a temp dir beside the target
 * and is renamed into place, so a crash never leaves a half run that looks complete.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SafetensorsFile, type TensorInfo, type TensorToWrite, writeSafetensors } from "../hf/safetensors.js";
import type { Tensor } from "../tensor/tensor.js";
import { RUN_FORMAT, type RunManifest } from "./manifest.js";
import { checkNewDir, checkNotExisting, makeDirs, makeTempDir } from "./out-dir.js";

export const MANIFEST_FILE = "manifest.json";
export const TENSORS_FILE = "tensors.safetensors";

export class RunError extends Error {}

const OVERWRITE_HINT = "choose another --out, remove it, or pass --overwrite";

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

  private constructor(
    readonly dir: string,
    public manifest: RunManifest,
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
    let manifest: RunManifest;
    try {
      manifest = JSON.parse(fs.readFileSync(mf, "utf8"));
    } catch (e) {
      throw new RunError(`${mf}: invalid JSON (${(e as Error).message})`);
    }
    if (manifest.format !== RUN_FORMAT)
      throw new RunError(`${mf}: format ${JSON.stringify(manifest.format)}, expected "${RUN_FORMAT}"`);
    return new Run(dir, manifest);
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

  saveManifest(): void {
    writeFileAtomic(path.join(this.dir, MANIFEST_FILE), `${JSON.stringify(this.manifest, null, 1)}\n`);
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}
