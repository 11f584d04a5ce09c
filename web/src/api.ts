/**
 * The server's REST + SSE API for the views. All numbers are computed server-side by the library. Every
 * payload's type is the server's contract (src/contracts/http.ts), imported type-only: erased at build, so
 * neither zod nor any server code reaches the bundle.
 */
import type {
  AttentionSummary,
  BatchItemView,
  BatchView,
  CausalHeadView,
  CausalJobRequest,
  CausalView,
  CompareSide,
  CompareView,
  ConfigResponse,
  GenerateResponse,
  HeadImageMaps,
  ImageGeometry,
  ImportResponse,
  JobCancelled,
  JobDismissed,
  JobEventData,
  JobEventType,
  JobInfo,
  JobSubmitted,
  JobsResponse,
  PagMark,
  PatchAttention,
  RelevancyJobRequest,
  RelevancyMapsView,
  RelevancyRelianceView,
  RelevancyTextView,
  RunDeleted,
  RunDetail,
  RunSummary,
  RunsResponse,
} from "../../src/contracts/http";
import type { MapGrouping, RelevancyMapKind, RelevancyMode } from "../../src/contracts/lists";

export type {
  AttentionSummary,
  CausalHeadView,
  CausalView,
  CompareSide,
  CompareView,
  HeadImageMaps,
  ImageGeometry,
  JobInfo,
  MapGrouping,
  PatchAttention,
  RelevancyMapsView,
  RelevancyMode,
  RelevancyTextView,
  RunDetail,
  RunSummary,
};

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

export type RelevancyKind = RelevancyMapKind;
export type ServerConfig = ConfigResponse;
export type RelevancyReliance = RelevancyRelianceView;
export type BatchItem = BatchItemView;
export type BatchReport = BatchView;
export type Mark = PagMark;

export const api = {
  config: () => get<ConfigResponse>("/api/config"),
  runs: () => get<RunsResponse>("/api/runs"),
  run: (id: string) => get<RunDetail>(`/api/runs/${enc(id)}`),
  deleteRun: (id: string) => request<RunDeleted>("DELETE", `/api/runs/${enc(id)}`),
  imageUrl: (id: string) => `/api/runs/${enc(id)}/image`,
  inputUrl: (id: string) => `/api/runs/${enc(id)}/input`,
  exportUrl: (id: string) => `/api/runs/${enc(id)}/export`,
  summary: (id: string) => get<AttentionSummary>(`/api/runs/${enc(id)}/attention/summary`),
  heads: (id: string, layer: number, tokens: number[]) =>
    get<HeadImageMaps>(`/api/runs/${enc(id)}/attention/heads?layer=${layer}&tokens=${tokens.join(",")}`),
  patches: (id: string, layer: number, patches: number[]) =>
    postJson<PatchAttention>(`/api/runs/${enc(id)}/attention/patches`, { layer, patches }),
  generate: (form: FormData) => request<GenerateResponse>("POST", "/api/generate", form),
  jobs: () => get<JobsResponse>("/api/jobs"),
  cancel: (jobId: string) => request<JobCancelled>("POST", `/api/jobs/${enc(jobId)}/cancel`),
  dismissJob: (jobId: string) => request<JobDismissed>("DELETE", `/api/jobs/${enc(jobId)}`),
  importArchive: (file: Blob, name?: string) =>
    request<ImportResponse>("POST", `/api/import${name ? `?name=${encodeURIComponent(name)}` : ""}`, file, {
      "content-type": "application/gzip",
    }),
  computeRelevancy: (id: string, mode: RelevancyMode, kind: RelevancyMapKind, tokens: number[] | "all") =>
    postJson<JobSubmitted>(`/api/runs/${enc(id)}/relevancy`, {
      mode,
      kind,
      tokens,
    } satisfies RelevancyJobRequest),
  relevancyMaps: (id: string, mode: RelevancyMode, kind: RelevancyMapKind, by: MapGrouping) =>
    get<RelevancyMapsView>(`/api/runs/${enc(id)}/relevancy/maps?mode=${mode}&kind=${kind}&by=${by}`),
  relevancyText: (id: string, mode: RelevancyMode, token: number) =>
    get<RelevancyTextView>(`/api/runs/${enc(id)}/relevancy/text?mode=${mode}&token=${token}`),
  relevancyReliance: (id: string, mode: RelevancyMode) =>
    get<RelevancyRelianceView>(`/api/runs/${enc(id)}/relevancy/reliance?mode=${mode}`),
  compare: (a: string, b: string, mode: RelevancyMode, token: number) =>
    get<CompareView>(`/api/compare?a=${enc(a)}&b=${enc(b)}&mode=${mode}&token=${token}`),
  batch: () => get<BatchView>("/api/batch"),
  computeCausal: (id: string, token: number, layer?: number) =>
    postJson<JobSubmitted>(`/api/runs/${enc(id)}/causal`, { token, layer } satisfies CausalJobRequest),
  causal: (id: string, token: number) => get<CausalView>(`/api/runs/${enc(id)}/causal/${token}`),
};

export interface JobHandlers {
  state?: (d: JobEventData["state"]) => void;
  progress?: (d: JobEventData["progress"]) => void;
  token?: (d: JobEventData["token"]) => void;
  done?: (d: JobEventData["done"]) => void;
  error?: (d: JobEventData["failed"]) => void;
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
  const on = <K extends JobEventType>(type: K, f: (d: JobEventData[K]) => void) =>
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
