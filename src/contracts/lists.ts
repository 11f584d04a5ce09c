/**
 * The project's closed lists, each written once: the CLI's choices, the server's schemas (./http.ts), the
 * run manifest (../run/manifest.ts), the library and the web app's types all come from here. Plain constants
 * with no imports, so any layer (and the browser) can use them without pulling anything in.
 */

/** How a picture is fitted to the vision tower (hf/image-processor.ts): the processor's own, pad or squash to a square. */
export const IMAGE_MODES = ["default", "pad", "resize"] as const;
export type ImageMode = (typeof IMAGE_MODES)[number];

/** Relevancy propagation: per answer token from scratch ("exact") or accumulated in order (LVLM-Interpret's). */
export const RELEVANCY_MODES = ["exact", "incremental"] as const;
export type RelevancyMode = (typeof RELEVANCY_MODES)[number];

/** Vision-side relevancy maps (interpret/relevancy/vision.ts). */
export const VISION_RELEVANCY_KINDS = ["vit", "all", "all_v2", "chain"] as const;
export type VisionRelevancyKind = (typeof VISION_RELEVANCY_KINDS)[number];

/** Stored relevancy map kinds: the LLM map and the vision-side ones. */
export const RELEVANCY_MAP_KINDS = ["llm", ...VISION_RELEVANCY_KINDS] as const;
export type RelevancyMapKind = (typeof RELEVANCY_MAP_KINDS)[number];

/** How relevancy maps of an answer are grouped: one per word (the tool's gallery) or per token. */
export const MAP_GROUPINGS = ["word", "token"] as const;
export type MapGrouping = (typeof MAP_GROUPINGS)[number];

/** Matmul kernels: "ts" and "ort" force one implementation, "auto" picks by size (kernels/index.ts). */
export const KERNEL_CHOICES = ["auto", "ts", "ort"] as const;
export type KernelChoice = (typeof KERNEL_CHOICES)[number];

/**
 * onnxruntime execution providers the graphs can run on (`LVLM_INTERPRET_EP`); with a GPU one, nodes it
 * cannot take stay on the CPU. Only "cpu" is bundled ready to run (docs/performance.md, "On a GPU").
 */
export const EXECUTION_PROVIDERS = ["cpu", "cuda", "webgpu"] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/**
 * How a model's weights are loaded: as stored on disk, or (opt-in; the numbers change) the language model's
 * matrices quantised to int8 (kernels/quantize.ts).
 */
export const WEIGHT_FORMATS = ["stored", "int8"] as const;
export type WeightFormat = (typeof WEIGHT_FORMATS)[number];

/** Precision of the stored attention tensors. */
export const ATTN_DTYPES = ["f32", "f16"] as const;
export type AttnDtype = (typeof ATTN_DTYPES)[number];

/** What the server's job queue runs. */
export const JOB_KINDS = ["generate", "relevancy", "causal", "faithfulness"] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** A job's state; "interrupted": the server stopped before the job finished (reported after the next start). */
export const JOB_STATES = ["queued", "running", "done", "error", "cancelled", "interrupted"] as const;
export type JobState = (typeof JOB_STATES)[number];

/** How a run came into the server's index. */
export const RUN_SOURCES = ["generated", "imported", "found"] as const;
export type RunSource = (typeof RUN_SOURCES)[number];
