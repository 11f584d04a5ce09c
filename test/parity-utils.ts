/**
 * What every fixture-parity test does first: the fixture's greedy trace through the public API (registry →
 * traceWithModel) once per kernel set, and the per-layer attention comparison against the reference.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after } from "node:test";
import type { SafetensorsFile } from "../src/hf/safetensors.js";
import { createKernels } from "../src/kernels/index.js";
import type { Kernels } from "../src/kernels/types.js";
import { loadModel } from "../src/models/registry.js";
import type { VisionLanguageModel } from "../src/models/types.js";
import type { RunManifest } from "../src/run/manifest.js";
import { Run } from "../src/run/run-dir.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { type TraceRequest, traceWithModel } from "../src/trace.js";
import { tempDir } from "./fixture-utils.js";

/** Both kernel sets: every parity test runs once with each. */
export const KERNEL_IMPLS = ["ts", "ort"] as const;
export type KernelImpl = (typeof KERNEL_IMPLS)[number];

export interface TracedFixture {
  /** expected.json of the fixture. */
  // biome-ignore lint/suspicious/noExplicitAny: the fixtures' expected.json differ per family.
  e: any;
  model: VisionLanguageModel;
  kernels: Kernels;
  /** The run directory the trace wrote. */
  out: string;
  manifest: RunManifest;
  run: Run;
}

/** A greedy, seeded trace of the picture at `imagePath` with f32 attention, the way the references were made. */
export function greedyTrace(
  imagePath: string,
  prompt: string,
  maxNewTokens: number,
  out: string,
): TraceRequest {
  return {
    image: { bytes: fs.readFileSync(imagePath), name: path.basename(imagePath) },
    prompt,
    maxNewTokens,
    temperature: 0,
    topP: 1,
    seed: 0,
    imageMode: "default",
    attnDtype: "f32",
    out,
  };
}

/**
 * The fixture's question traced greedily for as many tokens as the reference generated (f32 attention,
 * "default" image mode) into a temp run, opened. Closed and removed in an `after` hook of the calling suite.
 */
export async function traceFixture(dir: string, impl: KernelImpl, tmpPrefix: string): Promise<TracedFixture> {
  const e = JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8"));
  const model = loadModel(dir);
  const kernels = await createKernels(impl);
  const out = path.join(tempDir(tmpPrefix), "run");
  const { manifest } = await traceWithModel(
    model,
    kernels,
    greedyTrace(path.join(dir, "image.png"), e.question, e.generated_ids.length, out),
  );
  const run = Run.open(out);
  after(async () => {
    run.close();
    model.close();
    await kernels.dispose();
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  });
  return { e, model, kernels, out, manifest, run };
}

/**
 * Every LLM layer's attention [H, T_full, T_full] against the reference stacked over layers
 * (`llm.attentions_full`), max |Δ| within `tol`.
 */
export function assertLlmAttentions(t: TracedFixture, want: Float32Array, tol: number): void {
  const L = t.manifest.model.llm_layers;
  const per = want.length / L;
  for (let l = 0; l < L; l++) {
    const a = t.run.llmAttention(l);
    assert.deepEqual(a.shape, [t.manifest.model.llm_heads, t.e.T_full, t.e.T_full]);
    const d = maxAbsDiff(a.data, want.subarray(l * per, (l + 1) * per));
    assert.ok(d <= tol, `layer ${l}: max |Δ| = ${d}`);
  }
}

/**
 * Rows 0…tokens−1 of a stored LLM relevancy tensor [tokens, S] against the reference's raw last rows
 * (`rel_exact.<t>.last_row_raw`, the prompt-and-answer prefix of each row), max |Δ| within relTol·max|row|.
 */
export function assertRelevancyRows(
  rel: { data: Float32Array; shape: number[] },
  ref: SafetensorsFile,
  tokens: number,
  relTol: number,
): void {
  const S = rel.shape[1];
  for (let t = 0; t < tokens; t++) {
    const want = ref.readF32(`rel_exact.${t}.last_row_raw`);
    let max = 0;
    for (const v of want) max = Math.max(max, Math.abs(v));
    const d = maxAbsDiff(rel.data.subarray(t * S, t * S + want.length), want);
    assert.ok(d <= relTol * max, `token ${t}: max |Δ| ${d} > ${relTol * max}`);
  }
}
