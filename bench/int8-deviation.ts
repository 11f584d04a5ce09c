/**
 * npm run bench:int8-deviation -- --model DIR [--image FILE] [--prompt TEXT] [--tokens N] [--json]
 *
 * How far `--weights int8` moves a checkpoint's numbers from the weights as stored: the same greedy trace
 * both ways, then exact LLM relevancy of the first answer token. Reports the first answer token's logits
 * (largest difference, and the total variation between the two softmaxes), the prompt rows' attention
 * probabilities in every layer (identical inputs both ways), how many answer tokens agree before the answers
 * part, and the relevancy row (Pearson correlation, largest difference). Default input: the checkpoint's
 * image.png and the question of its expected.json (the fixtures have both).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { computeRelevancy } from "../src/interpret/relevancy/index.js";
import { createKernels } from "../src/kernels/index.js";
import { loadModel } from "../src/models/registry.js";
import { Run } from "../src/run/run-dir.js";
import { traceWithModel } from "../src/trace.js";
import { flag } from "./args.js";

const dir = flag("--model");
if (!dir) {
  console.error("error: --model DIR is required (a checkpoint folder)");
  process.exit(1);
}
if (!fs.existsSync(path.join(dir, "config.json"))) {
  console.error(`error: ${dir}: not a checkpoint folder (no config.json)`);
  process.exit(1);
}
const image = flag("--image") ?? path.join(dir, "image.png");
const expected = path.join(dir, "expected.json");
const prompt =
  flag("--prompt") ??
  (fs.existsSync(expected)
    ? JSON.parse(fs.readFileSync(expected, "utf8")).question
    : "Describe the picture.");
const tokens = Number(flag("--tokens") ?? 6);
if (!Number.isInteger(tokens) || tokens < 1 || tokens > 4096) {
  console.error(`error: --tokens ${flag("--tokens")}: give a whole number of answer tokens from 1 to 4096`);
  process.exit(1);
}
const json = process.argv.includes("--json");
if (!fs.existsSync(image)) {
  console.error(`error: ${image}: no such image (pass --image FILE)`);
  process.exit(1);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), "int8-deviation-"));
const kernels = await createKernels("auto");
const runs: Record<string, Run> = {};
const seconds: Record<string, { trace: number; relevancy: number }> = {};
try {
  for (const weights of ["stored", "int8"] as const) {
    const model = loadModel(dir, { weights });
    const out = path.join(work, weights);
    try {
      const t0 = performance.now();
      await traceWithModel(model, kernels, {
        image: { bytes: fs.readFileSync(image), name: path.basename(image) },
        prompt,
        maxNewTokens: tokens,
        temperature: 0,
        topP: 1,
        seed: 0,
        imageMode: "default",
        attnDtype: "f32",
        out,
      });
      const t1 = performance.now();
      await computeRelevancy(out, { mode: "exact", tokens: [0], model, kernels });
      seconds[weights] = { trace: (t1 - t0) / 1000, relevancy: (performance.now() - t1) / 1000 };
    } finally {
      model.close();
    }
    runs[weights] = Run.open(out);
  }
  const a = runs.stored;
  const b = runs.int8;
  const ga = a.manifest.generated_ids;
  const gb = b.manifest.generated_ids;
  let agree = 0;
  while (agree < Math.min(ga.length, gb.length) && ga[agree] === gb[agree]) agree++;
  const la = a.tensor("logits");
  const lb = b.tensor("logits");
  const V = la.shape[1];
  const first = (x: Float32Array) => x.subarray(0, V);
  const pa = softmax(first(la.data));
  const pb = softmax(first(lb.data));
  let tv = 0;
  for (let i = 0; i < V; i++) tv += Math.abs(pa[i] - pb[i]) / 2;
  const T = a.manifest.input_ids.length;
  let attention = 0;
  for (let l = 0; l < a.manifest.model.llm_layers; l++) {
    const x = a.tensor(`llm_attn.${l}`);
    const y = b.tensor(`llm_attn.${l}`);
    const [H, S] = x.shape;
    for (let h = 0; h < H; h++)
      for (let i = 0; i < T; i++) {
        const o = (h * S + i) * S;
        for (let j = 0; j <= i; j++) attention = Math.max(attention, Math.abs(x.data[o + j] - y.data[o + j]));
      }
  }
  const ra = a.tensor("rel.llm.exact");
  const rb = b.tensor("rel.llm.exact");
  const S = ra.shape[1];
  const result = {
    model: path.resolve(dir),
    prompt_tokens: T,
    answer_stored: a.manifest.answer,
    answer_int8: b.manifest.answer,
    answer_tokens_agreeing: agree,
    answer_tokens: ga.length,
    first_token_logits_max_abs_diff: maxAbsDiff(first(la.data), first(lb.data)),
    first_token_logits_max_abs: maxAbsDiff(first(la.data), new Float32Array(V)),
    first_token_probability_total_variation: tv,
    prompt_attention_max_abs_diff: attention,
    relevancy_token0_pearson: pearson(ra.data.subarray(0, S), rb.data.subarray(0, S)),
    relevancy_token0_max_abs_diff: maxAbsDiff(ra.data.subarray(0, S), rb.data.subarray(0, S)),
    relevancy_token0_max_abs: maxAbsDiff(ra.data.subarray(0, S), new Float32Array(S)),
    seconds,
  };
  if (json) console.log(JSON.stringify(result));
  else for (const [k, v] of Object.entries(result)) console.log(`${k}: ${JSON.stringify(v)}`);
} finally {
  await kernels.dispose();
  fs.rmSync(work, { recursive: true, force: true });
}

function softmax(x: Float32Array): Float64Array {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of x) m = Math.max(m, v);
  const e = Float64Array.from(x, (v) => Math.exp(v - m));
  const s = e.reduce((p, q) => p + q, 0);
  return e.map((v) => v / s);
}

function maxAbsDiff(x: Float32Array, y: Float32Array): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

function pearson(x: Float32Array, y: Float32Array): number {
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i] / n;
    my += y[i] / n;
  }
  let sxy = 0;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sx += (x[i] - mx) ** 2;
    sy += (y[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sx * sy);
}
