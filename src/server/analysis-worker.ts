/**
 * Worker thread for read-only queries over saved runs (attention aggregates, relevancy and causal views): the
 * library functions read tensors from disk and reduce them to small JSON, off the HTTP thread. Opened runs are
 * cached and reopened when their manifest changes (an analysis job added tensors).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import type { RelevancyRelianceView } from "../contracts/http.js";
import type { MapGrouping, RelevancyMapKind, RelevancyMode } from "../contracts/lists.js";
import { SafetensorsError } from "../hf/safetensors.js";
import type { TextProcessor } from "../hf/tokenizer.js";
import { CAUSAL_FORMAT, type CausalDocument, CausalError } from "../interpret/causal/explain-run.js";
import {
  MapSpecError,
  parseMapSpec,
  readFaithfulness,
  readTokenMap,
} from "../interpret/faithfulness/index.js";
import {
  AttentionQueryError,
  attentionSummary,
  headImageMaps,
  patchAttention,
} from "../interpret/views/attention.js";
import { causalView } from "../interpret/views/causal-view.js";
import { compareRuns } from "../interpret/views/compare-view.js";
import { imageGeometry } from "../interpret/views/image-tokens.js";
import {
  RelevancyViewError,
  relevancyImageMaps,
  relevancyReliance,
  relevancyStatus,
  relevancyText,
} from "../interpret/views/relevancy-panels.js";
import { templateTailLength } from "../interpret/views/relevancy-views.js";
import { loadTextProcessor } from "../models/registry.js";
import { checkRunFile, MANIFEST_FILE, Run, RunError, RunFileError, readRunFile } from "../run/run-dir.js";
import type { AnalysisWorkerData, FromAnalysisWorker, ToAnalysisWorker } from "./worker-protocol.js";

const port = parentPort!;
const data = workerData as AnalysisWorkerData;

let tokenizer: TextProcessor | null = null;
/** The server model's tokenizer (never a model named by a run). */
function serverTokenizer(): TextProcessor {
  if (!tokenizer) tokenizer = loadTextProcessor(data.modelDir);
  return tokenizer;
}
/** The prompt's token strings. */
function tokenStrings(ids: number[]): string[] {
  const tp = serverTokenizer();
  return ids.map((id) => tp.idToToken(id));
}
const promptTokens = (run: Run) => tokenStrings(run.manifest.input_ids);

/**
 * Where a run's question is: up to the chat template's tail ("ASSISTANT:" is not a question word), as the
 * batch report counts it, so every view's reliance agrees.
 */
function questionSpan(run: Run): { to: number } {
  const m = run.manifest;
  const tail = templateTailLength(
    (q) => serverTokenizer().encodePrompt(q, m.image_layout.token_count).inputIds,
  );
  return { to: m.input_ids.length - tail };
}

/** Not-yet-computed analyses: the view has nothing to show (404), the client offers to compute it. */
export class NotComputedError extends Error {}

interface Cached {
  run: Run;
  mtimeMs: number;
}
const cache = new Map<string, Cached>();
const MAX_OPEN = 8;

function openRun(dir: string): Run {
  checkRunFile(dir, MANIFEST_FILE);
  const mtimeMs = fs.lstatSync(path.join(dir, MANIFEST_FILE)).mtimeMs;
  const c = cache.get(dir);
  if (c && c.mtimeMs === mtimeMs) {
    cache.delete(dir);
    cache.set(dir, c);
    return c.run;
  }
  if (c) {
    c.run.close();
    cache.delete(dir);
  }
  const run = Run.open(dir);
  cache.set(dir, { run, mtimeMs });
  while (cache.size > MAX_OPEN) {
    const [k, v] = cache.entries().next().value as [string, Cached];
    v.run.close();
    cache.delete(k);
  }
  return run;
}

/** The original image's digest per opened run (a run is reopened, so rehashed, when its manifest changes). */
const imageDigests = new WeakMap<Run, string>();

/** A query error the user caused (400) rather than a broken run (500). */
export class QueryError extends Error {}

/** Each query the server can ask; the routes' answers are what these return (typed by contracts/http.ts). */
const handlers = {
  summary: (dir: string, tokens?: number[]) => attentionSummary(openRun(dir), tokens),
  heads: (dir: string, layer: number, tokens?: number[]) => headImageMaps(openRun(dir), layer, tokens),
  patches: (dir: string, layer: number, patches: number[]) => patchAttention(openRun(dir), layer, patches),
  runExtras: (dir: string) => {
    const run = openRun(dir);
    const causalDir = path.join(dir, "causal");
    const st = fs.lstatSync(causalDir, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) throw new RunError("causal is not a folder inside the run (a link?)");
    const causal = st
      ? fs
          .readdirSync(causalDir)
          .map((f) => /^(\d+)\.json$/.exec(f))
          .filter((x): x is RegExpExecArray => x !== null)
          .map((x) => Number(x[1]))
          .sort((a, b) => a - b)
      : [];
    const unknown = serverTokenizer().unknownTokenWarning(String(run.manifest.prompt ?? ""));
    return {
      promptTokens: promptTokens(run),
      image: imageGeometry(run.imageTokens()),
      relevancy: relevancyStatus(run).computed,
      causal,
      warnings: unknown ? [unknown] : [],
    };
  },
  relMaps: (dir: string, mode: RelevancyMode, kind: RelevancyMapKind, by: MapGrouping, normalized: boolean) =>
    relevancyImageMaps(
      openRun(dir),
      mode,
      kind,
      by,
      normalized,
      tokenStrings(openRun(dir).manifest.generated_ids),
    ),
  relText: (dir: string, mode: RelevancyMode, token: number) => {
    const run = openRun(dir);
    return relevancyText(run, mode, token, promptTokens(run), questionSpan(run));
  },
  relReliance: (dir: string, mode: RelevancyMode): RelevancyRelianceView => {
    const run = openRun(dir);
    return { mode, tokens: relevancyReliance(run, mode, promptTokens(run), questionSpan(run)) };
  },
  causal: (dir: string, token: number) => {
    const run = openRun(dir);
    const rel = `causal/${token}.json`;
    let bytes: Buffer;
    try {
      bytes = readRunFile(dir, rel);
    } catch (e) {
      if (e instanceof RunFileError && e.reason === "missing" && e.file === rel)
        throw new NotComputedError(`no causal explanation computed for answer token ${token} yet`);
      throw e;
    }
    let doc: CausalDocument;
    try {
      doc = JSON.parse(bytes.toString("utf8"));
    } catch (e) {
      throw new RunError(`${rel}: invalid JSON (${(e as Error).message})`);
    }
    if (doc?.format !== CAUSAL_FORMAT || !Array.isArray(doc.heads))
      throw new RunError(`causal/${token}.json: not a "${CAUSAL_FORMAT}" document`);
    return causalView(doc, run.manifest, run.imageTokens(), promptTokens(run));
  },
  compare: (dirA: string, dirB: string, idA: string, idB: string, mode: RelevancyMode, token: number) => {
    const side = (dir: string, id: string) => {
      const run = openRun(dir);
      let digest = imageDigests.get(run);
      if (!digest) {
        digest = createHash("sha256")
          .update(readRunFile(dir, run.manifest.original_image_file))
          .digest("hex");
        imageDigests.set(run, digest);
      }
      return {
        id,
        run,
        promptTokens: promptTokens(run),
        imageDigest: digest,
        questionEnd: questionSpan(run).to,
      };
    };
    return compareRuns(side(dirA, idA), side(dirB, idB), mode, token);
  },
  /** Throws a MapSpecError (400) when the run cannot give the map yet (relevancy or causal not computed). */
  faithCheckable: (dir: string, map: string, token: number) => {
    const spec = parseMapSpec(map);
    // Rollout reads every layer's attention; it exists whenever the run does.
    if (spec.kind !== "rollout") readTokenMap(openRun(dir), spec, token);
    return true;
  },
  faithfulness: (dir: string, map: string, token: number) => {
    const r = readFaithfulness(dir, token, parseMapSpec(map));
    if (!r) throw new NotComputedError(`no faithfulness check of ${map} for answer token ${token} yet`);
    return r;
  },
  forget: (dir: string) => {
    const c = cache.get(dir);
    if (c) c.run.close();
    cache.delete(dir);
    return true;
  },
} satisfies Record<string, (...args: never[]) => unknown>;

/** The worker's queries by name, for the typed client (analysis-client.ts). */
export type AnalysisHandlers = typeof handlers;

port.on("message", async (m: ToAnalysisWorker) => {
  let reply: FromAnalysisWorker;
  try {
    if (!Object.hasOwn(handlers, m.fn)) throw new Error(`unknown analysis ${m.fn}`);
    const h = handlers[m.fn as keyof AnalysisHandlers] as (...args: unknown[]) => unknown;
    reply = { id: m.id, ok: true, value: await h(...m.args) };
  } catch (e) {
    const err = e as Error;
    const status =
      err instanceof AttentionQueryError ||
      err instanceof QueryError ||
      err instanceof CausalError ||
      err instanceof MapSpecError
        ? 400
        : err instanceof NotComputedError || err instanceof RelevancyViewError
          ? 404
          : err instanceof RunError || err instanceof SafetensorsError
            ? 422
            : 500;
    // Messages name a run's files relative to it; any host path that slips through is cut out here.
    // (Every absolute path among the arguments: a comparison names two run folders.)
    let message = String(err?.message ?? e).split("\n")[0];
    for (const a of m.args)
      if (typeof a === "string" && a.length > 1 && (a === m.args[0] || path.isAbsolute(a)))
        message = message.split(a).join("run");
    reply = { id: m.id, ok: false, message, status };
  }
  port.postMessage(reply);
});
