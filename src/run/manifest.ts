/**
 * The run directory's manifest, written once as zod schemas: the writer checks what it writes, the reader
 * what it reads, the server what it imports, and the TypeScript types are inferred from them.
 * Format "lvlm-trace/2" (docs/trace-format.md); "lvlm-trace/1" runs are read and converted (./v1.ts).
 */
import { z } from "zod";
import { ATTN_DTYPES, IMAGE_MODES, WEIGHT_FORMATS, type WeightFormat } from "../contracts/lists.js";
import { imageLayoutSchema, layoutProblem } from "../models/image-layout.js";

export const RUN_FORMAT = "lvlm-trace/2";
export const RUN_FORMAT_V1 = "lvlm-trace/1";

const int = z.number().int();
const nat = int.nonnegative();
const pos = int.positive();
/** A file inside the run folder: a plain name, never a path. */
export const runFileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, "a plain file name");

export const runSettingsSchema = z.object({
  max_new_tokens: pos,
  temperature: z.number().nonnegative(),
  top_p: z.number().min(0).max(1),
  seed: int,
  image_mode: z.enum(IMAGE_MODES),
});

/** Fields both formats share, unchanged. */
const common = {
  created_at: z.string(),
  prompt: z.string(),
  chat_text: z.string(),
  /** Expanded prompt ids (one image token per image feature, separators included). */
  input_ids: z.array(nat).min(1),
  generated_ids: z.array(nat).min(1),
  generated_tokens: z.array(z.string()),
  answer: z.string(),
  /** len(input_ids) + len(generated_ids) − 1: positions ever fed to the model. */
  seq_len: pos,
  settings: runSettingsSchema,
  timings_ms: z.record(z.string(), z.number()),
  image_file: runFileName,
  original_image_file: runFileName,
  attn_dtype: z.enum(ATTN_DTYPES),
  /** Extra safetensors files (added by later analyses) merged into the run's tensor namespace. */
  tensor_files: z.array(runFileName.regex(/\.safetensors$/, "a .safetensors file name")),
  /** Free-form records added by analyses (e.g. relevancy token lists). */
  extras: z.record(z.string(), z.unknown()).optional(),
};

const modelCommon = {
  /** Absolute path of the checkpoint folder. */
  dir: z.string(),
  text_model_type: z.string(),
  vision_model_type: z.string(),
  llm_layers: pos,
  llm_heads: pos,
  llm_kv_heads: pos,
  vit_layers: nat,
  vit_heads: nat,
  has_cls: z.boolean(),
  vision_feature_layer: int,
};

export const runModelSchema = z.object({
  ...modelCommon,
  /** config.json model_type: the family. */
  model_type: z.string().min(1),
  /** Rows of the position ids the decoder used (1, or 3 for M-RoPE). */
  position_axes: pos,
  /** "int8" when the run's model had its language-model matrices quantised (opt-in); absent: as stored. */
  weights: z.enum(WEIGHT_FORMATS).optional(),
});

export const manifestSchema = z.object({
  format: z.literal(RUN_FORMAT),
  model: runModelSchema,
  ...common,
  /** Where every image token comes from in the original picture (segments, rows × cols, separators). */
  image_layout: imageLayoutSchema,
});

/** Format 1: one contiguous square image span, described by its start, count and patch grid. */
export const manifestV1Schema = z.object({
  format: z.literal(RUN_FORMAT_V1),
  model: z.object({ ...modelCommon, patch_grid: z.tuple([pos, pos]) }),
  ...common,
  image_token_start: nat,
  image_token_count: pos,
});

export type RunModelInfo = z.infer<typeof runModelSchema>;
export type RunSettings = z.infer<typeof runSettingsSchema>;
export type RunManifest = z.infer<typeof manifestSchema>;
export type RunManifestV1 = z.infer<typeof manifestV1Schema>;

/** How the run's model weights were loaded (older runs and runs as stored have no field). */
export function runWeightFormat(m: RunManifest): WeightFormat {
  return m.model.weights ?? "stored";
}

/**
 * Why a loaded model cannot recompute this run's numbers because its weights are loaded otherwise, or null.
 * Runs traced with int8 weights are analysed with int8 weights, and runs as stored as stored.
 */
export function weightsMismatch(loaded: WeightFormat, m: RunManifest): string | null {
  const run = runWeightFormat(m);
  if (loaded === run) return null;
  return `the run was traced with ${run} weights but the model is loaded with ${loaded} weights (load it with --weights ${run})`;
}

/** Human-readable first problem of a zod error: `field.path: message`. */
export function zodMessage(e: z.ZodError): string {
  const i = e.issues[0];
  const where = i.path.length ? i.path.join(".") : "value";
  return `${where}: ${i.message}`;
}

/**
 * Consistency the schema cannot express (ids vs tokens vs seq_len, the layout's token count); the first
 * problem as a message, or null.
 */
export function manifestProblem(m: RunManifest | RunManifestV1): string | null {
  const T = m.input_ids.length;
  const G = m.generated_ids.length;
  if (m.generated_tokens.length !== G)
    return `${G} generated ids but ${m.generated_tokens.length} generated tokens`;
  if (m.seq_len !== T + G - 1)
    return `seq_len ${m.seq_len} should be len(input_ids) + len(generated_ids) − 1 = ${T + G - 1}`;
  if (m.model.llm_kv_heads > m.model.llm_heads) return "more KV heads than heads";
  if (m.format === RUN_FORMAT_V1) {
    if (m.image_token_start + m.image_token_count > T) return "the image tokens end past the prompt";
    const [r, c] = m.model.patch_grid;
    if (r * c !== m.image_token_count)
      return `patch grid ${r}×${c} does not hold ${m.image_token_count} image tokens`;
  } else {
    const p = layoutProblem(m.image_layout);
    if (p) return `image_layout: ${p}`;
    if (m.image_layout.token_count > T) return "the image has more tokens than the prompt";
  }
  return null;
}
