/**
 * The HTTP API's payloads, written once as zod schemas: what every route of src/server/routes/ takes (path
 * parameters, queries, bodies, form fields) and what it answers. The server parses requests with these
 * schemas and builds its answers as the inferred types; the library's views (src/interpret/views/) return
 * those types; the web app imports them type-only (web/src/api.ts), so zod never reaches the browser;
 * test/contracts.test.ts checks every route's answer against its schema. The run manifest's schema lives in
 * ../run/manifest.ts (the run's settings and model below are its schemas, not copies).
 */
import { z } from "zod";
import { boxSchema } from "../models/image-layout.js";
import { runModelSchema, runSettingsSchema } from "../run/manifest.js";
import {
  ATTN_DTYPES,
  IMAGE_MODES,
  JOB_KINDS,
  JOB_STATES,
  MAP_GROUPINGS,
  RELEVANCY_MAP_KINDS,
  RELEVANCY_MODES,
  RUN_SOURCES,
} from "./lists.js";

const int = z.number().int();
const nat = int.nonnegative();
/** A numeric query or path value ("3"). */
const natText = z.coerce.number().int().min(0);
const relevancyMode = z.enum(RELEVANCY_MODES);
const mapKind = z.enum(RELEVANCY_MAP_KINDS);

// ─── Requests ────────────────────────────────────────────────────────────────────────────────────────────

export const runIdParams = z.object({ id: z.string() });
export const jobIdParams = z.object({ id: z.string().regex(/^job-[a-z0-9]+-[0-9a-f]{8}$/, "not a job id") });

/** "1,2,5" or "" → numbers; used for token lists in query strings. */
export const intList = z
  .string()
  .max(20000)
  .regex(/^(\d+(,\d+)*)?$/, "a comma-separated list of non-negative integers")
  .transform((s) => (s ? s.split(",").map(Number) : []));

/** GET /api/runs/:id/attention/summary */
export const attentionSummaryQuery = z.object({ tokens: intList.optional() });
/** GET /api/runs/:id/attention/heads */
export const attentionHeadsQuery = z.object({ layer: natText, tokens: intList.optional() });
/** POST /api/runs/:id/attention/patches */
export const attentionPatchesBody = z.object({
  layer: nat,
  patches: z.array(nat).min(1, "select at least one image patch").max(100_000),
});

/** GET /api/runs/:id/relevancy/maps */
export const relevancyMapsQuery = z.object({
  mode: relevancyMode.default("exact"),
  kind: mapKind.default("llm"),
  by: z.enum(MAP_GROUPINGS).default("word"),
  normalized: z.enum(["true", "false"]).default("true"),
});
/** GET /api/runs/:id/relevancy/text */
export const relevancyTextQuery = z.object({ mode: relevancyMode.default("exact"), token: natText });
/** GET /api/runs/:id/relevancy/reliance */
export const relevancyRelianceQuery = z.object({ mode: relevancyMode.default("exact") });
/** GET /api/runs/:id/causal/:token */
export const causalParams = z.object({ id: z.string(), token: natText });

/** POST /api/import: the archive's file name, shown with the imported run (any path is stripped). */
export const importQuery = z.object({ name: z.string().max(1000).optional() });

/** GET /api/compare */
export const compareQuery = z.object({
  a: z.string().min(1, "name run A (?a=<run id>)"),
  b: z.string().min(1, "name run B (?b=<run id>)"),
  mode: relevancyMode.default("exact"),
  token: natText.default(0),
});

/** POST /api/runs/:id/relevancy (an absent body is `{}`). */
export const relevancyJobBody = z.object({
  mode: relevancyMode.default("exact"),
  kind: mapKind.default("llm"),
  tokens: z.union([z.literal("all"), z.array(nat).min(1).max(100_000)]).default("all"),
});
/** POST /api/runs/:id/causal */
export const causalJobBody = z.object({ token: nat, layer: nat.optional() });

/** A faithfulness map spec ("attn:3:mean", "rollout", "rel:exact:llm", "causal"; src/interpret/faithfulness/maps.ts). */
const mapSpec = z.string().min(1).max(100);
/** Defaults of the faithfulness check (the CLI's too): 10 steps of 10 %, 3 random maps. */
export const FAITHFULNESS_DEFAULTS = { steps: 10, seeds: 3 } as const;
/** POST /api/runs/:id/faithfulness */
export const faithfulnessJobBody = z.object({
  token: nat,
  map: mapSpec,
  steps: int.min(1).max(100).default(FAITHFULNESS_DEFAULTS.steps),
  seeds: int.min(1).max(20).default(FAITHFULNESS_DEFAULTS.seeds),
});
/** GET /api/runs/:id/faithfulness */
export const faithfulnessQuery = z.object({ token: natText, map: mapSpec });

/** POST /api/generate: the multipart form's text fields (the image is its file field "image"). */
export const generateFields = z.object({
  prompt: z.string().trim().min(1, "ask a question (the prompt is empty)"),
  max_new_tokens: z.coerce.number().int().min(1).default(32),
  temperature: z.coerce.number().min(0).max(10).default(0),
  top_p: z.coerce.number().gt(0).max(1).default(1),
  seed: z.coerce
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .default(0),
  image_mode: z.enum(IMAGE_MODES).default("default"),
  attn_dtype: z.enum(ATTN_DTYPES).default("f16"),
});

// ─── Answers: the server and its jobs ────────────────────────────────────────────────────────────────────

/** Every 4xx/5xx: one readable line. */
export const errorResponse = z.object({ error: z.string() });

export const modelStatus = z.object({
  state: z.enum(["loading", "ready", "error"]),
  message: z.string().optional(),
});

export const serverLimits = z.object({
  /** Largest image upload, bytes. */
  maxUploadBytes: nat,
  /** Largest decoded image, pixels. */
  maxPixels: nat,
  maxPromptChars: nat,
  maxNewTokens: nat,
  /** Largest run archive upload (compressed), bytes. */
  maxImportBytes: nat,
  /** Largest run archive content (the unpacked tar stream), bytes. */
  maxUnpackedBytes: nat,
  /** Largest unpacked ÷ compressed ratio of a run archive (past 16 MiB unpacked): refuses decompression bombs. */
  maxImportRatio: z.number().positive(),
});

/** GET /api/health */
export const healthResponse = z.object({
  ok: z.literal(true),
  model: modelStatus,
  /** Jobs waiting or running. */
  queue: nat,
});

/** GET /api/config */
export const configResponse = z.object({
  model: z.object({
    name: z.string(),
    model_type: z.string(),
    text_model_type: z.string(),
    vision_model_type: z.string(),
    llm_layers: nat,
    llm_heads: nat,
    vit_layers: nat,
    status: modelStatus,
  }),
  limits: serverLimits,
  image_types: z.array(z.string()),
});

export const jobInfo = z.object({
  id: z.string(),
  kind: z.enum(JOB_KINDS),
  runId: z.string().nullable(),
  label: z.string(),
  state: z.enum(JOB_STATES),
  /** Jobs ahead of this one (the running one included); 0 when running or finished. */
  position: nat,
  created_at: z.string(),
  result: z.record(z.string(), z.unknown()).nullable(),
  error: z.string().nullable(),
  /** What was asked (the request's fields, never file contents), so an interrupted job can be asked again. */
  request: z.record(z.string(), z.unknown()),
});

/** GET /api/jobs */
export const jobsResponse = z.object({ jobs: z.array(jobInfo) });
/** POST /api/runs/:id/relevancy and /causal (202). */
export const jobSubmitted = z.object({ job: jobInfo });
/** POST /api/generate (202). */
export const generateResponse = z.object({
  job: jobInfo,
  runId: z.string(),
  /** Things to know about the question (e.g. text the tokenizer reads as unknown tokens). */
  warnings: z.array(z.string()),
});
/** DELETE /api/jobs/:id */
export const jobDismissed = z.object({ dismissed: z.string() });
/** POST /api/jobs/:id/cancel */
export const jobCancelled = z.object({
  id: z.string(),
  cancelled: z.boolean(),
  state: z.enum(JOB_STATES).optional(),
});

/**
 * GET /api/jobs/:id/events: the data of each server-sent event type. "failed" rather than "error": EventSource
 * reserves "error" for connection problems.
 */
export const jobEventData = {
  state: z.object({ state: z.enum(["queued", "running"]), position: nat }),
  progress: z.object({ stage: z.string(), done: z.number(), total: z.number() }),
  /** `special`: a control token (e.g. "</s>") that the answer text leaves out. */
  token: z.object({ index: nat, text: z.string(), special: z.boolean() }),
  /** The job's result (e.g. a generation's { runId, answer, tokens }). */
  done: z.record(z.string(), z.unknown()),
  failed: z.object({ message: z.string(), interrupted: z.boolean().optional() }),
  cancelled: z.object({}),
};

// ─── Answers: runs ───────────────────────────────────────────────────────────────────────────────────────

export const runSummary = z.object({
  id: z.string(),
  created_at: z.string(),
  prompt: z.string(),
  answer: z.string(),
  n_tokens: nat,
  seq_len: nat,
  model: z.string(),
  image_mode: z.string(),
  source: z.enum(RUN_SOURCES),
  /** When the run was indexed here (for an import: when it was imported). */
  indexed_at: z.string(),
  /** An imported run's archive file name as uploaded (null for other runs, older indexes, unnamed uploads). */
  origin: z.string().nullable(),
});

/** GET /api/runs */
export const runsResponse = z.object({ runs: z.array(runSummary) });
/** POST /api/import (201). */
export const importResponse = z.object({ run: runSummary });
/** DELETE /api/runs/:id */
export const runDeleted = z.object({ deleted: z.string() });

/** A grid segment of the image as the web app draws it. */
export const gridView = z.object({
  name: z.string(),
  /** Index of the segment's first image token. */
  first: nat,
  rows: nat,
  cols: nat,
  /** Each row ends with a separator token (no box). */
  rowSeparator: z.boolean(),
  /** [x0, y0, x1, y1] the grid covers in original-image pixels (may extend past the image). */
  frame: boxSchema,
});

/** The image side of a run: where each image token is on the original picture (maps are one value per token). */
export const imageGeometry = z.object({
  /** Original image size. */
  width: nat,
  height: nat,
  /** Sequence position of each image token. */
  positions: z.array(nat),
  /** Each image token's box [x0, y0, x1, y1] in original pixels (clipped), null when it has no place. */
  boxes: z.array(boxSchema.nullable()),
  /** Each image token's label ("patch 3,4", "tiles 1,5", "newline 2", "cls"). */
  labels: z.array(z.string()),
  grids: z.array(gridView),
});

/** Per relevancy mode, per map kind: the answer tokens whose relevancy is stored. */
export const relevancyComputed = z.partialRecord(relevancyMode, z.partialRecord(mapKind, z.array(nat)));

/** GET /api/runs/:id */
export const runDetail = z.object({
  id: z.string(),
  /** Its row in the run index. */
  index: runSummary,
  created_at: z.string(),
  prompt: z.string(),
  answer: z.string(),
  tokens: z.array(z.string()),
  settings: runSettingsSchema,
  timings_ms: z.record(z.string(), z.number()),
  attn_dtype: z.enum(ATTN_DTYPES),
  /** The manifest's model, its folder as a name only (no host path). */
  model: runModelSchema,
  layout: z.object({ T: nat, G: nat, S: nat, layers: nat, heads: nat }),
  image: imageGeometry,
  prompt_tokens: z.array(z.string()),
  /** Things to know about the question (e.g. text the tokenizer reads as unknown tokens). */
  warnings: z.array(z.string()),
  analyses: z.object({ relevancy: relevancyComputed, causal: z.array(nat) }),
});

// ─── Answers: views of a run ─────────────────────────────────────────────────────────────────────────────

/** GET /api/runs/:id/attention/summary: LVLM-Interpret's image/question-to-answer layer × head heatmaps. */
export const attentionSummary = z.object({
  layers: nat,
  heads: nat,
  /** The answer tokens averaged over. */
  tokens: z.array(nat),
  /** [layer][head]: mean attention from the answer tokens to the image tokens. */
  image: z.array(z.array(z.number())),
  /** [layer][head]: mean attention from the answer tokens to the question tokens (empty span → 0). */
  question: z.array(z.array(z.number())),
  /** Number of image tokens averaged over (their positions: the run's image_token_positions). */
  imageTokens: nat,
  questionSpan: z.tuple([nat, nat]),
});

export const headImageMap = z.object({
  head: nat,
  /** Mean of `map`: the head's mean attention to the image for the chosen tokens. */
  mean: z.number(),
  max: z.number(),
  /** Attention to each image token (its box: image_token_boxes), averaged over the chosen tokens. */
  map: z.array(z.number()),
});

/** GET /api/runs/:id/attention/heads */
export const headImageMaps = z.object({
  layer: nat,
  tokens: z.array(nat),
  /** Every head, sorted by `mean`, largest first. */
  heads: z.array(headImageMap),
  /** Per-head mean attention in head order (the strip under the maps). */
  headMeans: z.array(z.number()),
  /** Smallest and largest value over all maps (for a shared colour scale). */
  min: z.number(),
  max: z.number(),
});

/** POST /api/runs/:id/attention/patches: the patch selector. */
export const patchAttention = z.object({
  layer: nat,
  patches: z.array(nat),
  /** [head][answer token]: mean attention from the token to the selected patches. */
  perHeadToken: z.array(z.array(z.number())),
  /** Per answer token, averaged over heads. */
  tokenMean: z.array(z.number()),
  /** Per head, averaged over answer tokens. */
  headMean: z.array(z.number()),
  /** Per answer token, the attention *mass* on the selected patches (sum over patches), averaged over heads. */
  tokenSum: z.array(z.number()),
});

/** One value per image token; null where the map has none (e.g. a separator under a tower map). */
const tokenMap = z.array(z.number().nullable());

export const relevancyMapItem = z.object({
  /** The word (or token) as displayed. */
  label: z.string(),
  /** Answer tokens it covers. */
  tokens: z.array(nat),
  /** Punctuation, whitespace or a special token (the tool leaves these out of its gallery). */
  separator: z.boolean(),
  map: tokenMap,
  min: z.number(),
  max: z.number(),
});

/** GET /api/runs/:id/relevancy/maps */
export const relevancyMapsView = z.object({
  mode: relevancyMode,
  kind: mapKind,
  by: z.enum(MAP_GROUPINGS),
  normalized: z.boolean(),
  /** Tokens with stored relevancy of this kind. */
  computed: z.array(nat),
  /** Words (or tokens) whose tokens are all computed, in answer order. */
  items: z.array(relevancyMapItem),
});

export const textRelevancyEntry = z.object({
  /** Display label: the token text, or "<image>" for the collapsed image. */
  label: z.string(),
  /** Sequence positions the entry stands for (all image positions for the image entry). */
  positions: z.array(nat),
  value: z.number(),
});

export const wordsVsImage = z.object({
  /** The top-k question words by relevancy, then "max_img". */
  bars: z.array(z.object({ label: z.string(), value: z.number() })),
  imageMax: z.number(),
  /**
   * Image-vs-text reliance in [0, 1]: the fraction of the bar values strictly below the image maximum
   * (scipy's percentileofscore(kind="strict") / 100, as the tool computes it). 1 = the image beats every
   * top word.
   */
  reliance: z.number(),
});

/** GET /api/runs/:id/relevancy/text */
export const relevancyTextView = z.object({
  mode: relevancyMode,
  token: nat,
  /** Relevancy of every prompt position (the image collapsed to its mean), normalised. */
  entries: z.array(textRelevancyEntry),
  /** The tool's bars: top-3 question words and the image maximum, and the reliance score. */
  wordsVsImage,
});

export const tokenReliance = z.object({ token: nat, reliance: z.number(), imageMax: z.number() });
/** GET /api/runs/:id/relevancy/reliance */
export const relevancyRelianceView = z.object({ mode: relevancyMode, tokens: z.array(tokenReliance) });

/** PAG edge-end marks. */
export const pagMark = z.enum(["arrow", "tail", "circle"]);

export const causalGraphNode = z.object({
  /** Sequence position. */
  id: nat,
  kind: z.enum(["image", "text", "target"]),
  label: z.string(),
  /** Image-token index (image nodes): its box is the run's image_token_boxes[patch]. */
  patch: nat.nullable(),
  /** Smallest PDS-tree level the node appears on (0 = the target), null if outside the explanation. */
  radius: nat.nullable(),
  inExplanation: z.boolean(),
});

export const causalGraphEdge = z.object({
  source: nat,
  target: nat,
  /** PAG mark at the source / target end. */
  sourceMark: pagMark,
  targetMark: pagMark,
  text: z.string(),
});

export const causalGrowthStep = z.object({
  radius: nat,
  /** Distinct explanation nodes at levels ≤ radius (target included). */
  total: nat,
  image: nat,
  text: nat,
});

export const causalHeadView = z.object({
  head: nat,
  importance: z.number().nullable(),
  nodes: z.array(causalGraphNode),
  edges: z.array(causalGraphEdge),
  explanationPatches: z.array(nat),
  patchWeights: z.array(z.number()),
  growth: z.array(causalGrowthStep),
});

/** The CLEANN parameters a causal explanation was computed with (as causal/<k>.json records them). */
export const causalParamsRecord = z.object({
  p_val_th: z.number(),
  num_samples: nat,
  max_range: nat,
  att_th: z.number(),
  max_num_image_tokens: nat,
});

const curvePair = z.object({
  /** Probability at each fraction with the top tokens deleted. */
  deletion: z.array(z.number()),
  /** Probability at each fraction with only the top tokens kept. */
  insertion: z.array(z.number()),
  /** curveArea(deletion): lower = the map found what the token depends on. */
  deletion_auc: z.number(),
  /** curveArea(insertion): higher = the map's top patches suffice for the token. */
  insertion_auc: z.number(),
});

/** GET /api/runs/:id/faithfulness: a stored check (faithfulness/<k>.<map>.json in the run, as written). */
export const faithfulnessResult = z.object({
  format: z.literal("lvlm-faithfulness/1"),
  /** Canonical map spec ("attn:3:mean", "rel:exact:llm", …). */
  map: z.string(),
  token: nat,
  token_id: nat,
  token_text: z.string(),
  steps: nat,
  /** Fractions of the located image tokens deleted (or kept): 0, 1/steps, …, 1. */
  fractions: z.array(z.number()),
  /** Image tokens with a place in the picture (the ones deleted). */
  located_tokens: nat,
  /** The token's probability as generated (softmax of the run's logits row k). */
  run_probability: z.number(),
  curves: curvePair,
  random: curvePair.extend({ seeds: nat }),
  /** How a patch is deleted (src/interpret/faithfulness/perturb.ts). */
  perturbation: z.string(),
  forwards: nat,
  seconds: z.number(),
  created_at: z.string(),
});

/** GET /api/runs/:id/causal/:token */
export const causalView = z.object({
  token: nat,
  tokenText: z.string(),
  layer: nat,
  target: nat,
  params: causalParamsRecord,
  heads: z.array(causalHeadView),
  /** Σ over heads of patch weights, normalised to max 1: one value per image token. */
  patchWeights: z.array(z.number()),
});

/**
 * How one token's (normalised) relevancy splits between the image and the question text: the compare view's
 * bars and the batch report's image_share (one function, imageQuestionSplit in interpret/views/relevancy-views.ts).
 */
export const relevancyShare = z.object({
  /** Sum of the non-negative relevancy on the image tokens. */
  image: z.number(),
  /**
   * Sum of the non-negative relevancy on the question: the prompt text after the image, up to the chat
   * template's tail, separator tokens left out.
   */
  question: z.number(),
  /** image / (image + question), in [0, 1]; 0.5 when both are 0. */
  imageShare: z.number(),
});

/** One run's side of a comparison. */
export const compareSide = z.object({
  id: z.string(),
  prompt: z.string(),
  answer: z.string(),
  tokens: z.array(z.string()),
  token: nat,
  tokenText: z.string(),
  /** The normalised LLM relevancy map of the token, one value per image token, as shares (sum 1). */
  map: tokenMap,
  min: z.number(),
  max: z.number(),
  share: relevancyShare,
  /** LVLM-Interpret's reliance: the fraction of the top-3 question words the image maximum beats. */
  reliance: z.number(),
});

export const mapDifference = z.object({ map: tokenMap, absMax: z.number() });

/** GET /api/compare: two runs' answer token side by side. */
export const compareView = z.object({
  mode: relevancyMode,
  token: nat,
  sameImage: z.boolean(),
  sameQuestion: z.boolean(),
  a: compareSide,
  b: compareSide,
  /** A − B of the two maps' shares, when both runs share the picture and its layout. */
  difference: mapDifference.nullable(),
  /** Why there is no difference map (null when there is one). */
  differenceReason: z.string().nullable(),
});

export const batchItemView = z.object({
  id: z.string(),
  pair: z.string().nullable(),
  question: z.string(),
  answer: z.string().nullable(),
  expected: z.string().nullable(),
  correct: z.boolean().nullable(),
  /** LVLM-Interpret's reliance and the image share of the first answer token (null: not computed). */
  lvlm: z.number().nullable(),
  image_share: z.number().nullable(),
  error: z.string().nullable(),
  /** The item's run in the data folder (null: not indexed there). */
  run_id: z.string().nullable(),
  /** The run of the other item of its pair, when indexed. */
  pair_run_id: z.string().nullable(),
  /** How the pair fared: both right, one, none; null outside a complete, judged pair. */
  pair_result: z.enum(["both", "one", "none"]).nullable(),
});

export const pairCounts = z.object({ n: nat, both: nat, one: nat, none: nat });

/** GET /api/batch: the data folder's batch report joined to the indexed runs. */
export const batchView = z.object({
  name: z.string(),
  created_at: z.string().nullable(),
  complete: z.boolean(),
  accuracy: z.number().nullable(),
  pairs: pairCounts.nullable(),
  items: z.array(batchItemView),
});

// ─── Every JSON route and what it answers ────────────────────────────────────────────────────────────────

/**
 * Each route that answers JSON, with its success status and schema (errors: {@link errorResponse}). The
 * image, export and event-stream routes answer bytes, not JSON.
 */
export const JSON_ROUTES = {
  "GET /api/health": { status: 200, response: healthResponse },
  "GET /api/config": { status: 200, response: configResponse },
  "GET /api/runs": { status: 200, response: runsResponse },
  "GET /api/runs/:id": { status: 200, response: runDetail },
  "DELETE /api/runs/:id": { status: 200, response: runDeleted },
  "GET /api/runs/:id/attention/summary": { status: 200, response: attentionSummary },
  "GET /api/runs/:id/attention/heads": { status: 200, response: headImageMaps },
  "POST /api/runs/:id/attention/patches": { status: 200, response: patchAttention },
  "GET /api/runs/:id/relevancy/maps": { status: 200, response: relevancyMapsView },
  "GET /api/runs/:id/relevancy/text": { status: 200, response: relevancyTextView },
  "GET /api/runs/:id/relevancy/reliance": { status: 200, response: relevancyRelianceView },
  "GET /api/runs/:id/causal/:token": { status: 200, response: causalView },
  "GET /api/compare": { status: 200, response: compareView },
  "GET /api/batch": { status: 200, response: batchView },
  "POST /api/runs/:id/relevancy": { status: 202, response: jobSubmitted },
  "POST /api/runs/:id/causal": { status: 202, response: jobSubmitted },
  "POST /api/runs/:id/faithfulness": { status: 202, response: jobSubmitted },
  "GET /api/runs/:id/faithfulness": { status: 200, response: faithfulnessResult },
  "POST /api/import": { status: 201, response: importResponse },
  "POST /api/generate": { status: 202, response: generateResponse },
  "GET /api/jobs": { status: 200, response: jobsResponse },
  "GET /api/jobs/:id": { status: 200, response: jobInfo },
  "DELETE /api/jobs/:id": { status: 200, response: jobDismissed },
  "POST /api/jobs/:id/cancel": { status: 200, response: jobCancelled },
} as const;

/** Routes that answer bytes (images, archives, server-sent events) rather than JSON. */
export const BYTE_ROUTES = [
  "GET /api/runs/:id/image",
  "GET /api/runs/:id/input",
  "GET /api/runs/:id/export",
  "GET /api/jobs/:id/events",
] as const;

// ─── Types, inferred ─────────────────────────────────────────────────────────────────────────────────────

export type AttentionPatchesBody = z.infer<typeof attentionPatchesBody>;
/** The body a client sends (fields with defaults may be left out). */
export type RelevancyJobRequest = z.input<typeof relevancyJobBody>;
export type CausalJobRequest = z.input<typeof causalJobBody>;
export type FaithfulnessJobRequest = z.input<typeof faithfulnessJobBody>;
export type GenerateFields = z.infer<typeof generateFields>;
export type ErrorResponse = z.infer<typeof errorResponse>;
export type ModelStatus = z.infer<typeof modelStatus>;
export type ServerLimits = z.infer<typeof serverLimits>;
export type HealthResponse = z.infer<typeof healthResponse>;
export type ConfigResponse = z.infer<typeof configResponse>;
export type JobInfo = z.infer<typeof jobInfo>;
export type JobsResponse = z.infer<typeof jobsResponse>;
export type JobSubmitted = z.infer<typeof jobSubmitted>;
export type GenerateResponse = z.infer<typeof generateResponse>;
export type JobDismissed = z.infer<typeof jobDismissed>;
export type JobCancelled = z.infer<typeof jobCancelled>;
export type JobEventType = keyof typeof jobEventData;
export type JobEventData = { [K in JobEventType]: z.infer<(typeof jobEventData)[K]> };
export type RunSummary = z.infer<typeof runSummary>;
export type RunsResponse = z.infer<typeof runsResponse>;
export type ImportResponse = z.infer<typeof importResponse>;
export type RunDeleted = z.infer<typeof runDeleted>;
export type GridView = z.infer<typeof gridView>;
export type ImageGeometry = z.infer<typeof imageGeometry>;
export type RelevancyComputed = z.infer<typeof relevancyComputed>;
export type RunDetail = z.infer<typeof runDetail>;
export type AttentionSummary = z.infer<typeof attentionSummary>;
export type HeadImageMap = z.infer<typeof headImageMap>;
export type HeadImageMaps = z.infer<typeof headImageMaps>;
export type PatchAttention = z.infer<typeof patchAttention>;
export type RelevancyMapItem = z.infer<typeof relevancyMapItem>;
export type RelevancyMapsView = z.infer<typeof relevancyMapsView>;
export type TextRelevancyEntry = z.infer<typeof textRelevancyEntry>;
export type WordsVsImage = z.infer<typeof wordsVsImage>;
export type RelevancyTextView = z.infer<typeof relevancyTextView>;
export type TokenReliance = z.infer<typeof tokenReliance>;
export type RelevancyRelianceView = z.infer<typeof relevancyRelianceView>;
export type PagMark = z.infer<typeof pagMark>;
export type CausalGraphNode = z.infer<typeof causalGraphNode>;
export type CausalGraphEdge = z.infer<typeof causalGraphEdge>;
export type CausalGrowthStep = z.infer<typeof causalGrowthStep>;
export type CausalHeadView = z.infer<typeof causalHeadView>;
export type CausalParamsRecord = z.infer<typeof causalParamsRecord>;
export type CausalView = z.infer<typeof causalView>;
export type FaithfulnessResult = z.infer<typeof faithfulnessResult>;
export type CurvePair = FaithfulnessResult["curves"];
export type RelevancyShare = z.infer<typeof relevancyShare>;
export type CompareSide = z.infer<typeof compareSide>;
export type MapDifference = z.infer<typeof mapDifference>;
export type CompareView = z.infer<typeof compareView>;
export type BatchItemView = z.infer<typeof batchItemView>;
export type PairCounts = z.infer<typeof pairCounts>;
export type BatchView = z.infer<typeof batchView>;
