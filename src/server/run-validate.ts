/**
 * Full validation of a run folder that came from elsewhere (an imported archive): the manifest's structure and
 * internal consistency, safe file names, every tensor the views read with the shape the manifest implies, and
 * an image that decodes. A run that passes can be opened by every view without surprises.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { decodeImage } from "../hf/image-decode.js";
import type { RunManifest } from "../run/manifest.js";
import {
  IMAGE_BOXES_TENSOR,
  IMAGE_POSITIONS_TENSOR,
  MANIFEST_FILE,
  parseManifest,
  Run,
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
  const mf = path.join(dir, MANIFEST_FILE);
  if (!fs.existsSync(mf)) fail(`no ${MANIFEST_FILE} in the archive's run folder`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(mf, "utf8"));
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
  for (const f of [TENSORS_FILE, m.image_file, m.original_image_file, ...m.tensor_files]) {
    const p = path.join(dir, f);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      fail(`${f} is missing`);
    }
    if (!st.isFile()) fail(`${f} is not a plain file`);
  }
  let run: Run;
  try {
    run = Run.open(dir);
  } catch (e) {
    fail((e as Error).message.replace(dir, "run"));
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
  const img = fs.readFileSync(path.join(dir, m.image_file));
  try {
    decodeImage(img, m.image_file, { maxPixels: 16_000_000 });
  } catch (e) {
    fail((e as Error).message);
  }
  return m;
}
