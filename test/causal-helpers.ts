/** Helpers for the causal tests: run directories built from the public fixtures, and their reference results. */
import * as fs from "node:fs";
import * as path from "node:path";
import type { TensorToWrite } from "../src/hf/safetensors.js";
import { RUN_FORMAT, type RunManifest } from "../src/run/manifest.js";
import { writeRun } from "../src/run/run-dir.js";
import { type FixtureName, loadFixture } from "./fixture-utils.js";
import { gridImage } from "./run-image.js";

/** One head of the fixture's causal.json (the fields we compare). */
export interface RefHead {
  head: number;
  nodes: number[];
  relevant_image_tokens: number[];
  relevant_text_tokens: number[];
  edges: { i: number; j: number; mark_at_i: string; mark_at_j: string; edge: string }[];
  explanation: number[];
  explanation_image_patches: number[];
  explanation_per_radius: Record<string, number | number[]>;
  max_pds_tree_depth: number;
  head_importance: number;
  image_expla_weights: (number | null)[];
  num_high_att: number;
  num_image_tokens: number;
  ci_tests: { n_tests: number; n_independent: number; closest_test: [number, number, number[], number] };
}

export interface RefCausal {
  layer: number;
  token_to_explain: number;
  image_token_start: number;
  image_token_count: number;
  attention_len: number;
  n_generated: number;
  params: {
    p_val_th: number;
    num_samples: number;
    max_range: number;
    att_th: number;
    max_num_image_tokens: number;
  };
  heads: RefHead[];
}

export function readRefCausal(name: FixtureName): RefCausal {
  return JSON.parse(fs.readFileSync(path.join(loadFixture(name).dir, "causal.json"), "utf8"));
}

/** The fixture's full attention stack [L, H, Tf, Tf] as Float32 plus its shape. */
export function fixtureAttention(name: FixtureName): {
  data: Float32Array;
  shape: [number, number, number, number];
} {
  const fx = loadFixture(name);
  const shape = fx.tensors.info("llm.attentions_full").shape as [number, number, number, number];
  return { data: fx.tensors.readF32("llm.attentions_full"), shape };
}

/**
 * Write a run directory equivalent to what the engine produces for the fixture: manifest from expected.json,
 * `llm_attn.{l}` = `llm.attentions_full[l]` (the run's S equals the fixture's T_full).
 */
export function writeFixtureRun(name: FixtureName, dir: string): RunManifest {
  const fx = loadFixture(name);
  const e = fx.expected;
  const { data, shape } = fixtureAttention(name);
  const [L, H, S] = shape;
  const image = gridImage(e.image_token_start, e.patch_grid);
  const manifest: RunManifest = {
    format: RUN_FORMAT,
    created_at: new Date(0).toISOString(),
    model: {
      dir: fx.dir,
      text_model_type: name.includes("gemma") ? "gemma" : "llama",
      vision_model_type: "clip_vision_model",
      llm_layers: L,
      llm_heads: H,
      llm_kv_heads: H,
      vit_layers: 3,
      vit_heads: 4,
      model_type: "llava",
      has_cls: true,
      vision_feature_layer: -2,
      position_axes: 1,
    },
    prompt: e.question,
    chat_text: e.prompt,
    input_ids: e.input_ids,
    image_layout: image.layout,
    generated_ids: e.generated_ids,
    generated_tokens: e.generated_token_texts,
    answer: e.generated_text,
    seq_len: e.input_ids.length + e.generated_ids.length - 1,
    settings: {
      max_new_tokens: e.generated_ids.length,
      temperature: 0,
      top_p: 1,
      seed: 0,
      image_mode: "default",
    },
    timings_ms: {},
    image_file: "image.png",
    original_image_file: "input.png",
    attn_dtype: "f32",
    tensor_files: [],
  };
  if (manifest.seq_len !== S)
    throw new Error(`fixture ${name}: seq_len ${manifest.seq_len} ≠ attention size ${S}`);
  const tensors: TensorToWrite[] = [...image.tensors];
  for (let l = 0; l < L; l++) {
    tensors.push({
      name: `llm_attn.${l}`,
      dtype: "F32",
      shape: [H, S, S],
      data: data.subarray(l * H * S * S, (l + 1) * H * S * S),
    });
  }
  writeRun(dir, { manifest, tensors, files: [] }, { overwrite: true });
  return manifest;
}
