/** The server's REST + SSE API, typed for the views. All numbers are computed server-side by the library. */
import type { ImageGeometry } from "../../src/interpret/views/image-tokens";

export type { ImageGeometry };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function request<T>(
  method: string,
  url: string,
  body?: BodyInit,
  headers?: Record<string, string>,
): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { method, body, headers });
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${(e as Error).message})`);
  }
  const text = await res.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: reported below when the status is an error.
  }
  if (!res.ok) {
    const msg = (data as { error?: string } | null)?.error ?? (text.slice(0, 200) || res.statusText);
    throw new ApiError(res.status, msg);
  }
  return data as T;
}

const get = <T>(url: string) => request<T>("GET", url);
const postJson = <T>(url: string, body: unknown) =>
  request<T>("POST", url, JSON.stringify(body), { "content-type": "application/json" });
const enc = encodeURIComponent;

export interface RunSummary {
  id: string;
  created_at: string;
  prompt: string;
  answer: string;
  n_tokens: number;
  seq_len: number;
  model: string;
  image_mode: string;
  source: "generated" | "imported" | "found";
  /** When the run was indexed here (for an import: when it was imported). */
  indexed_at?: string;
  /** An imported run's archive file name (absent or null for other runs and older indexes). */
  origin?: string | null;
}

export type RelevancyMode = "exact" | "incremental";
export type RelevancyKind = "llm" | "vit" | "all" | "all_v2" | "chain";

export interface RunDetail {
  id: string;
  created_at: string;
  prompt: string;
  answer: string;
  tokens: string[];
  prompt_tokens: string[];
  /** Things to know about the question (e.g. text the tokenizer reads as unknown tokens). */
  warnings: string[];
  settings: { max_new_tokens: number; temperature: number; top_p: number; seed: number; image_mode: string };
  timings_ms: Record<string, number>;
  attn_dtype: string;
  model: {
    dir: string;
    model_type: string;
    text_model_type: string;
    vision_model_type: string;
    llm_layers: number;
    llm_heads: number;
    vit_layers: number;
  };
  layout: {
    T: number;
    G: number;
    S: number;
    layers: number;
    heads: number;
  };
  /** Where each image token is on the original picture (maps are one value per image token). */
  image: ImageGeometry;
  analyses: {
    relevancy: Partial<Record<RelevancyMode, Partial<Record<RelevancyKind, number[]>>>>;
    causal: number[];
  };
}

export interface ServerConfig {
  model: {
    name: string;
    text_model_type: string;
    vision_model_type: string;
    llm_layers: number;
    llm_heads: number;
    status: { state: string; message?: string };
  };
  limits: {
    maxUploadBytes: number;
    maxPixels: number;
    maxPromptChars: number;
    maxNewTokens: number;
    maxImportBytes: number;
  };
}

export interface AttentionSummary {
  layers: number;
  heads: number;
  tokens: number[];
  image: number[][];
  question: number[][];
}

export interface HeadImageMaps {
  layer: number;
  tokens: number[];
  heads: { head: number; mean: number; max: number; map: number[] }[];
  headMeans: number[];
  min: number;
  max: number;
}

export interface PatchAttention {
  layer: number;
  patches: number[];
  perHeadToken: number[][];
  tokenMean: number[];
  headMean: number[];
  tokenSum: number[];
}

export interface RelevancyMapsView {
  mode: RelevancyMode;
  kind: RelevancyKind;
  by: "word" | "token";
  computed: number[];
  items: {
    label: string;
    tokens: number[];
    separator: boolean;
    map: (number | null)[];
    min: number;
    max: number;
  }[];
}

export interface RelevancyTextView {
  token: number;
  entries: { label: string; positions: number[]; value: number }[];
  wordsVsImage: { bars: { label: string; value: number }[]; imageMax: number; reliance: number };
}

export interface RelevancyReliance {
  tokens: { token: number; reliance: number; imageMax: number }[];
}

/** One run's side of a comparison (GET /api/compare). */
export interface CompareSide {
  id: string;
  prompt: string;
  answer: string;
  tokens: string[];
  token: number;
  tokenText: string;
  /** The token's LLM relevancy map as shares of its image relevancy (sum 1), one value per image token. */
  map: (number | null)[];
  min: number;
  max: number;
  share: { image: number; question: number; imageShare: number };
  reliance: number;
}

export interface CompareView {
  mode: RelevancyMode;
  token: number;
  sameImage: boolean;
  sameQuestion: boolean;
  a: CompareSide;
  b: CompareSide;
  difference: { map: (number | null)[]; absMax: number } | null;
  differenceReason: string | null;
}

/** One item of the served batch report (GET /api/batch). */
export interface BatchItem {
  id: string;
  pair: string | null;
  question: string;
  answer: string | null;
  expected: string | null;
  correct: boolean | null;
  lvlm: number | null;
  image_share: number | null;
  error: string | null;
  run_id: string | null;
  pair_run_id: string | null;
  pair_result: "both" | "one" | "none" | null;
}

export interface BatchReport {
  name: string;
  created_at: string | null;
  complete: boolean;
  accuracy: number | null;
  pairs: { n: number; both: number; one: number; none: number } | null;
  items: BatchItem[];
}

export type Mark = "arrow" | "tail" | "circle";

export interface CausalHeadView {
  head: number;
  importance: number | null;
  nodes: {
    id: number;
    kind: "image" | "text" | "target";
    label: string;
    patch: number | null;
    radius: number | null;
    inExplanation: boolean;
  }[];
  edges: { source: number; target: number; sourceMark: Mark; targetMark: Mark; text: string }[];
  explanationPatches: number[];
  patchWeights: number[];
  growth: { radius: number; total: number; image: number; text: number }[];
}

export interface CausalView {
  token: number;
  tokenText: string;
  layer: number;
  target: number;
  params: {
    p_val_th: number;
    num_samples: number;
    max_range: number;
    att_th: number;
    max_num_image_tokens: number;
  };
  heads: CausalHeadView[];
  patchWeights: number[];
}

export interface JobInfo {
  id: string;
  kind: "generate" | "relevancy" | "causal";
  runId: string | null;
  label: string;
  /** "interrupted": the server stopped before the job finished. */
  state: "queued" | "running" | "done" | "error" | "cancelled" | "interrupted";
  position: number;
  created_at: string;
  result: Record<string, unknown> | null;
  error: string | null;
  /** What was asked (the request's fields). */
  request: Record<string, unknown>;
}

export const api = {
  config: () => get<ServerConfig>("/api/config"),
  runs: () => get<{ runs: RunSummary[] }>("/api/runs"),
  run: (id: string) => get<RunDetail>(`/api/runs/${enc(id)}`),
  deleteRun: (id: string) => request<{ deleted: string }>("DELETE", `/api/runs/${enc(id)}`),
  imageUrl: (id: string) => `/api/runs/${enc(id)}/image`,
  inputUrl: (id: string) => `/api/runs/${enc(id)}/input`,
  exportUrl: (id: string) => `/api/runs/${enc(id)}/export`,
  summary: (id: string) => get<AttentionSummary>(`/api/runs/${enc(id)}/attention/summary`),
  heads: (id: string, layer: number, tokens: number[]) =>
    get<HeadImageMaps>(`/api/runs/${enc(id)}/attention/heads?layer=${layer}&tokens=${tokens.join(",")}`),
  patches: (id: string, layer: number, patches: number[]) =>
    postJson<PatchAttention>(`/api/runs/${enc(id)}/attention/patches`, { layer, patches }),
  generate: (form: FormData) =>
    request<{ job: JobInfo; runId: string; warnings: string[] }>("POST", "/api/generate", form),
  jobs: () => get<{ jobs: JobInfo[] }>("/api/jobs"),
  cancel: (jobId: string) => request<{ cancelled: boolean }>("POST", `/api/jobs/${enc(jobId)}/cancel`),
  dismissJob: (jobId: string) => request<{ dismissed: string }>("DELETE", `/api/jobs/${enc(jobId)}`),
  importArchive: (file: Blob, name?: string) =>
    request<{ run: RunSummary }>(
      "POST",
      `/api/import${name ? `?name=${encodeURIComponent(name)}` : ""}`,
      file,
      { "content-type": "application/gzip" },
    ),
  computeRelevancy: (id: string, mode: RelevancyMode, kind: RelevancyKind, tokens: number[] | "all") =>
    postJson<{ job: JobInfo }>(`/api/runs/${enc(id)}/relevancy`, { mode, kind, tokens }),
  relevancyMaps: (id: string, mode: RelevancyMode, kind: RelevancyKind, by: "word" | "token") =>
    get<RelevancyMapsView>(`/api/runs/${enc(id)}/relevancy/maps?mode=${mode}&kind=${kind}&by=${by}`),
  relevancyText: (id: string, mode: RelevancyMode, token: number) =>
    get<RelevancyTextView>(`/api/runs/${enc(id)}/relevancy/text?mode=${mode}&token=${token}`),
  relevancyReliance: (id: string, mode: RelevancyMode) =>
    get<RelevancyReliance>(`/api/runs/${enc(id)}/relevancy/reliance?mode=${mode}`),
  compare: (a: string, b: string, mode: RelevancyMode, token: number) =>
    get<CompareView>(`/api/compare?a=${enc(a)}&b=${enc(b)}&mode=${mode}&token=${token}`),
  batch: () => get<BatchReport>("/api/batch"),
  computeCausal: (id: string, token: number, layer?: number) =>
    postJson<{ job: JobInfo }>(`/api/runs/${enc(id)}/causal`, { token, layer }),
  causal: (id: string, token: number) => get<CausalView>(`/api/runs/${enc(id)}/causal/${token}`),
};

export interface JobHandlers {
  state?: (d: { state: string; position: number }) => void;
  progress?: (d: { stage: string; done: number; total: number }) => void;
  /** `special`: a control token (e.g. "</s>") that the answer text leaves out. */
  token?: (d: { index: number; text: string; special?: boolean }) => void;
  done?: (d: Record<string, unknown>) => void;
  error?: (d: { message: string }) => void;
  cancelled?: () => void;
}

/** Follows a job's server-sent events until it ends; returns a function that stops listening. */
export function followJob(jobId: string, h: JobHandlers): () => void {
  const es = new EventSource(`/api/jobs/${enc(jobId)}/events`);
  let closed = false;
  const close = () => {
    closed = true;
    es.close();
  };
  const on = (type: string, f: (d: any) => void) =>
    es.addEventListener(type, (ev) => {
      if (closed) return;
      f(JSON.parse((ev as MessageEvent).data));
    });
  on("state", (d) => h.state?.(d));
  on("progress", (d) => h.progress?.(d));
  on("token", (d) => h.token?.(d));
  on("done", (d) => {
    close();
    h.done?.(d);
  });
  on("failed", (d) => {
    close();
    h.error?.(d);
  });
  on("cancelled", () => {
    close();
    h.cancelled?.();
  });
  // A dropped connection is retried by EventSource (the server replays from Last-Event-ID); a refused one ends.
  es.onerror = () => {
    if (!closed && es.readyState === EventSource.CLOSED) {
      close();
      h.error?.({ message: "lost the connection to the server" });
    }
  };
  return close;
}
