/**
 * Full validation of a run folder that came from elsewhere (an imported archive) or leaves the server (an
 * export): the manifest's structure and internal consistency, safe file names, regular files only (no links),
 * every tensor the views read with the shape the manifest implies, and an image that decodes. A run that passes
 * can be opened by every view without surprises, and its export imports back.
 *
 * Validation parses safetensors headers and decodes an image — seconds of CPU for a hostile run — so the
 * server calls {@link validateRunDirOffThread}, which runs it on a worker thread.
 */
import { Worker } from "node:worker_threads";
import { decodePngImage } from "../hf/image-decode.js";
import type { RunManifest } from "../run/manifest.js";
import {
  checkRunFile,
  IMAGE_BOXES_TENSOR,
  IMAGE_POSITIONS_TENSOR,
  MANIFEST_FILE,
  parseManifest,
  Run,
  RunError,
  RunFileError,
  readRunFile,
  TENSORS_FILE,
} from "../run/run-dir.js";

export { zodMessage } from "../run/manifest.js";

export class RunValidationError extends Error {
  override name = "RunValidationError";
}

function fail(msg: string): never {
  throw new RunValidationError(msg);
}

/**
 * Validates a run folder (format 2, or format 1, converted) against the manifest schema the writer and the
 * reader use; returns its manifest (format 2) or throws {@link RunValidationError} naming the first problem.
 */
export function validateRunDir(dir: string): RunManifest {
  let bytes: Buffer;
  try {
    bytes = readRunFile(dir, MANIFEST_FILE);
  } catch (e) {
    if (e instanceof RunFileError && e.reason === "missing") fail(`no ${MANIFEST_FILE} in the run folder`);
    throw e instanceof RunError ? new RunValidationError(e.message) : e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString("utf8"));
  } catch (e) {
    fail(`${MANIFEST_FILE} is not valid JSON (${(e as Error).message})`);
  }
  let m: RunManifest;
  let v1 = false;
  try {
    const read = parseManifest(raw, dir);
    m = read.manifest;
    v1 = read.v1 !== null;
  } catch (e) {
    fail((e as Error).message);
  }
  let run: Run;
  try {
    for (const f of [TENSORS_FILE, m.image_file, m.original_image_file, ...m.tensor_files])
      checkRunFile(dir, f);
    run = Run.open(dir);
  } catch (e) {
    if (e instanceof RunError) fail(e.message);
    throw e;
  }
  try {
    const S = m.seq_len;
    const expect = (name: string, shape: number[]) => {
      if (!run.has(name)) fail(`tensor ${name} is missing`);
      const got = run.info(name).shape;
      if (got.length !== shape.length || got.some((d, i) => shape[i] >= 0 && d !== shape[i])) {
        fail(
          `tensor ${name} has shape [${got.join(", ")}], expected [${shape.map((d) => (d < 0 ? "*" : d)).join(", ")}]`,
        );
      }
      const dt = run.info(name).dtype;
      if (!["F32", "F16", "BF16"].includes(dt)) fail(`tensor ${name} has dtype ${dt}, expected a float type`);
    };
    const G = m.generated_ids.length;
    for (let l = 0; l < m.model.llm_layers; l++) expect(`llm_attn.${l}`, [m.model.llm_heads, S, S]);
    expect("logits", [G, -1]);
    if (!v1) {
      const P = m.image_layout.token_count;
      expect(IMAGE_BOXES_TENSOR, [P, 4]);
      if (!run.has(IMAGE_POSITIONS_TENSOR)) fail(`tensor ${IMAGE_POSITIONS_TENSOR} is missing`);
      const info = run.info(IMAGE_POSITIONS_TENSOR);
      if (info.dtype !== "I64" || info.shape.length !== 1 || info.shape[0] !== P)
        fail(
          `tensor ${IMAGE_POSITIONS_TENSOR} must be I64 [${P}], got ${info.dtype} [${info.shape.join(", ")}]`,
        );
      const pos = run.ints(IMAGE_POSITIONS_TENSOR);
      const T = m.input_ids.length;
      if (pos.some((p, i) => !Number.isInteger(p) || p < 0 || p >= T || (i > 0 && p <= pos[i - 1])))
        fail(`tensor ${IMAGE_POSITIONS_TENSOR}: positions must rise strictly inside the prompt (0…${T - 1})`);
    }
    if (m.model.vit_layers > 0 && run.has("vit_attn.0")) {
      // [H, Sv, Sv] per tower pass, [n, H, Sv, Sv] for tiles.
      const shape = run.info("vit_attn.0").shape;
      const want = shape.length === 4 ? [-1, m.model.vit_heads, -1, -1] : [m.model.vit_heads, -1, -1];
      for (let l = 0; l < m.model.vit_layers; l++) expect(`vit_attn.${l}`, want);
    }
  } finally {
    run.close();
  }
  try {
    decodePngImage(readRunFile(dir, m.image_file), m.image_file, { maxPixels: 16_000_000 });
  } catch (e) {
    fail((e as Error).message);
  }
  return m;
}

type ValidateReply =
  | { id: number; ok: true; manifest: RunManifest }
  | { id: number; ok: false; invalid: boolean; message: string };

/**
 * {@link validateRunDir} on a worker thread, so a hostile run's headers and image never stall the server. One
 * worker, started on first use, serves the calls in turn; it does not keep the process alive while idle.
 */
export function validateRunDirOffThread(dir: string): Promise<RunManifest> {
  return validatorPool.call(dir);
}

class ValidatorWorker {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (m: RunManifest) => void; reject: (e: Error) => void }
  >();

  call(dir: string): Promise<RunManifest> {
    const w = this.ensure();
    const id = this.nextId++;
    return new Promise<RunManifest>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      w.ref();
      w.postMessage({ id, dir });
    });
  }

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL("./run-validate-worker.js", import.meta.url));
    w.on("message", (r: ValidateReply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (this.pending.size === 0) w.unref();
      if (r.ok) p.resolve(r.manifest);
      else p.reject(r.invalid ? new RunValidationError(r.message) : new Error(r.message));
    });
    const fail = (msg: string) => {
      if (this.worker === w) this.worker = null;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new Error(msg));
      }
    };
    w.on("error", (e) => fail(`run validation worker crashed: ${e.message}`));
    w.on("exit", (code) => fail(`run validation worker exited (code ${code})`));
    w.unref();
    this.worker = w;
    return w;
  }
}

const validatorPool = new ValidatorWorker();
