/**
 * Worker thread that owns the model: loads it once (from the server's --model flag) and runs model jobs one at a
 * time through the library API, so the HTTP thread stays responsive while a job computes. A job is cancelled
 * through a shared flag checked in every progress/token callback (the message queue of a busy worker is not
 * read until the job yields, the flag is).
 */
import * as os from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { explainRun } from "../interpret/causal/explain-run.js";
import { checkFaithfulness } from "../interpret/faithfulness/index.js";
import { computeRelevancy } from "../interpret/relevancy/index.js";
import { createKernels, type Kernels } from "../kernels/index.js";
import { prepareWeights } from "../models/prepare.js";
import { loadModel } from "../models/registry.js";
import type { VisionLanguageModel } from "../models/types.js";
import { traceWithModel } from "../trace.js";
import type { FromModelWorker, ModelJobRequest, ModelWorkerData, ToModelWorker } from "./worker-protocol.js";

class Cancelled extends Error {}

const data = workerData as ModelWorkerData;
const port = parentPort!;
const send = (m: FromModelWorker) => port.postMessage(m);

let loaded: { model: VisionLanguageModel; kernels: Kernels } | null = null;
let loadError: string | null = null;

async function load(): Promise<{ model: VisionLanguageModel; kernels: Kernels }> {
  if (loaded) return loaded;
  try {
    const model = loadModel(data.modelDir, { weights: data.weights });
    const kernels = await createKernels(data.kernels);
    // Part of loading: an int8 model's sessions are built before its first question, not during it.
    await prepareWeights(model, kernels);
    loaded = { model, kernels };
    loadError = null;
    return loaded;
  } catch (e) {
    loadError = (e as Error).message;
    throw e;
  }
}

async function runJob(
  jobId: string,
  request: ModelJobRequest,
  cancel: Int32Array,
): Promise<Record<string, unknown>> {
  const check = () => {
    if (Atomics.load(cancel, 0) !== 0) throw new Cancelled("cancelled");
  };
  const progress = (stage: string, done: number, total: number) => {
    check();
    send({ type: "progress", jobId, stage, done, total });
  };
  progress("load", 0, 1);
  const { model, kernels } = await load();
  progress("load", 1, 1);
  switch (request.kind) {
    case "generate": {
      const p = request.payload;
      const { manifest } = await traceWithModel(model, kernels, {
        image: { bytes: p.image, name: p.imageName },
        prompt: p.prompt,
        maxNewTokens: p.maxNewTokens,
        temperature: p.temperature,
        topP: p.topP,
        seed: p.seed,
        imageMode: p.imageMode,
        attnDtype: p.attnDtype,
        out: p.out,
        onProgress: progress,
        onToken: (index, id, text) => {
          check();
          // A token that decodes to nothing once special tokens are skipped is one (e.g. "</s>").
          const special = text !== "" && model.text.decode([id], true) === "";
          send({ type: "token", jobId, index, text, special });
        },
      });
      return { answer: manifest.answer, tokens: manifest.generated_tokens.length };
    }
    case "relevancy": {
      const p = request.payload;
      const summary = await computeRelevancy(p.runDir, {
        mode: p.mode,
        vision: p.vision,
        tokens: p.tokens,
        model,
        kernels,
        onProgress: progress,
      });
      return {
        mode: summary.mode,
        tokens: summary.tokens,
        computed: summary.record.computed,
        seconds: summary.seconds,
      };
    }
    case "causal": {
      const p = request.payload;
      // Heads run in parallel helper threads when there are spare cores. A callback of theirs must not throw
      // (it runs in a message handler), so there a cancel waits for the server's hard stop instead.
      const jobs = Math.max(1, Math.min(4, os.availableParallelism() - 1));
      progress("heads", 0, 1);
      const { doc } = await explainRun(p.runDir, {
        token: p.token,
        layer: p.layer,
        jobs,
        onHead: (_r, done, total) => {
          if (jobs === 1) check();
          if (Atomics.load(cancel, 0) === 0) send({ type: "progress", jobId, stage: "heads", done, total });
        },
      });
      return { token: doc.token_index, layer: doc.layer, heads: doc.heads.length };
    }
    case "faithfulness": {
      const p = request.payload;
      const { result } = await checkFaithfulness(p.runDir, {
        token: p.token,
        map: p.map,
        steps: p.steps,
        seeds: p.seeds,
        model,
        kernels,
        onProgress: progress,
      });
      return {
        token: result.token,
        map: result.map,
        deletion_auc: result.curves.deletion_auc,
        insertion_auc: result.curves.insertion_auc,
      };
    }
  }
}

let chain: Promise<void> = Promise.resolve();

port.on("message", (m: ToModelWorker) => {
  if (m.type !== "job") return;
  chain = chain.then(async () => {
    const cancel = new Int32Array(m.cancel);
    try {
      const result = await runJob(m.jobId, m.request, cancel);
      send({ type: "done", jobId: m.jobId, result });
    } catch (e) {
      const cancelled = e instanceof Cancelled || Atomics.load(cancel, 0) !== 0;
      send({ type: "error", jobId: m.jobId, message: (e as Error).message ?? String(e), cancelled });
    }
  });
});

// Load eagerly so the first question does not wait for it; failures are reported and retried per job.
load().then(
  () => send({ type: "ready" }),
  () => send({ type: "load-error", message: loadError ?? "model failed to load" }),
);
