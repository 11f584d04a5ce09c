/** Messages between the server and its worker threads. */
import type {
  AttnDtype,
  ImageMode,
  KernelChoice,
  RelevancyMode,
  VisionRelevancyKind,
  WeightFormat,
} from "../contracts/lists.js";

export interface GeneratePayload {
  image: Uint8Array;
  imageName: string;
  prompt: string;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  imageMode: ImageMode;
  attnDtype: AttnDtype;
  /** Run folder to create (inside the data dir; chosen by the server, never by a client). */
  out: string;
}

export interface RelevancyPayload {
  runDir: string;
  tokens: number[] | "all";
  mode: RelevancyMode;
  vision: VisionRelevancyKind[];
}

export interface CausalPayload {
  runDir: string;
  token: number;
  layer?: number;
}

export interface FaithfulnessPayload {
  runDir: string;
  token: number;
  /** A map spec (src/interpret/faithfulness/maps.ts), already parsed once by the route. */
  map: string;
  steps: number;
  seeds: number;
}

export type ModelJobRequest =
  | { kind: "generate"; payload: GeneratePayload }
  | { kind: "relevancy"; payload: RelevancyPayload }
  | { kind: "causal"; payload: CausalPayload }
  | { kind: "faithfulness"; payload: FaithfulnessPayload };

export type ToModelWorker = {
  type: "job";
  jobId: string;
  cancel: SharedArrayBuffer;
  request: ModelJobRequest;
};

export type FromModelWorker =
  | { type: "ready" }
  | { type: "load-error"; message: string }
  | { type: "progress"; jobId: string; stage: string; done: number; total: number }
  /** `special`: a control token (end of sequence and the like) that the answer text leaves out. */
  | { type: "token"; jobId: string; index: number; text: string; special: boolean }
  | { type: "done"; jobId: string; result: Record<string, unknown> }
  | { type: "error"; jobId: string; message: string; cancelled: boolean; status?: number };

export interface ModelWorkerData {
  modelDir: string;
  kernels: KernelChoice;
  weights: WeightFormat;
}

export interface AnalysisWorkerData {
  /** The server's model folder: its tokenizer labels prompt tokens. */
  modelDir: string;
}

export type ToAnalysisWorker = { id: number; fn: string; args: unknown[] };
export type FromAnalysisWorker =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; message: string; status: number };
