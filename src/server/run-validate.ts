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
import { z } from "zod";
import { decodePngImage } from "../hf/image-decode.js";
import { RUN_FORMAT, type RunManifest } from "../run/manifest.js";
import {
  checkRunFile,
  MANIFEST_FILE,
  Run,
  RunError,
  RunFileError,
  readRunFile,
  TENSORS_FILE,
} from "../run/run-dir.js";

export class RunValidationError extends Error {
  override name = "RunValidationError";
}

const int = z.number().int();
const nat = int.nonnegative();
const pos = int.positive();
const fileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, "a plain file name");

export const manifestSchema = z.object({
  format: z.literal(RUN_FORMAT),
  created_at: z.string(),
  model: z.object({
    dir: z.string(),
    text_model_type: z.string(),
    vision_model_type: z.string(),
    llm_layers: pos,
    llm_heads: pos,
    llm_kv_heads: pos,
    vit_layers: nat,
    vit_heads: nat,
    patch_grid: z.tuple([pos, pos]),
    has_cls: z.boolean(),
    vision_feature_layer: int,
  }),
  prompt: z.string(),
  chat_text: z.string(),
  input_ids: z.array(nat).min(1),
  image_token_start: nat,
  image_token_count: pos,
  generated_ids: z.array(nat).min(1),
  generated_tokens: z.array(z.string()),
  answer: z.string(),
  seq_len: pos,
  settings: z.object({
    max_new_tokens: pos,
    temperature: z.number().nonnegative(),
    top_p: z.number().min(0).max(1),
    seed: int,
    image_mode: z.enum(["default", "pad", "resize"]),
  }),
  timings_ms: z.record(z.string(), z.number()),
  image_file: fileName,
  original_image_file: fileName,
  attn_dtype: z.enum(["f32", "f16"]),
  tensor_files: z.array(fileName.regex(/\.safetensors$/, "a .safetensors file name")),
  extras: z.record(z.string(), z.unknown()).optional(),
});

/** Human-readable first problem of a zod error: `field.path: message`. */
export function zodMessage(e: z.ZodError): string {
  const i = e.issues[0];
  const where = i.path.length ? i.path.join(".") : "value";
  return `${where}: ${i.message}`;
}

function fail(msg: string): never {
  throw new RunValidationError(msg);
}

/** Validates a run folder; returns its manifest or throws {@link RunValidationError} naming the first problem. */
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
  if (
    raw &&
    typeof raw === "object" &&
    "format" in raw &&
    (raw as { format: unknown }).format !== RUN_FORMAT
  ) {
    fail(
      `${MANIFEST_FILE}: format ${JSON.stringify((raw as { format: unknown }).format)} is not "${RUN_FORMAT}"`,
    );
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) fail(`${MANIFEST_FILE}: ${zodMessage(parsed.error)}`);
  const m = parsed.data as RunManifest;
  const T = m.input_ids.length;
  const G = m.generated_ids.length;
  if (m.generated_tokens.length !== G)
    fail(`${MANIFEST_FILE}: ${G} generated ids but ${m.generated_tokens.length} generated tokens`);
  if (m.seq_len !== T + G - 1)
    fail(
      `${MANIFEST_FILE}: seq_len ${m.seq_len} should be len(input_ids) + len(generated_ids) − 1 = ${T + G - 1}`,
    );
  if (m.image_token_start + m.image_token_count > T)
    fail(`${MANIFEST_FILE}: the image tokens end past the prompt`);
  const [r, c] = m.model.patch_grid;
  if (r * c !== m.image_token_count)
    fail(`${MANIFEST_FILE}: patch grid ${r}×${c} does not hold ${m.image_token_count} image tokens`);
  if (m.model.llm_kv_heads > m.model.llm_heads) fail(`${MANIFEST_FILE}: more KV heads than heads`);
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
    for (let l = 0; l < m.model.llm_layers; l++) expect(`llm_attn.${l}`, [m.model.llm_heads, S, S]);
    expect("logits", [G, -1]);
    if (m.model.vit_layers > 0 && run.has("vit_attn.0")) {
      for (let l = 0; l < m.model.vit_layers; l++) expect(`vit_attn.${l}`, [m.model.vit_heads, -1, -1]);
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
