/**
 * Tiny random llava-hf checkpoints for gradient checks: a few layers of width 16, written to a temp folder
 * (config.json + model.safetensors + the fixture tokenizer) so they load through the same `LlavaModel.load`
 * path as real checkpoints. Weight scales are chosen so attention is clearly non-uniform and every op sits in
 * a non-trivial regime (activations away from their linear parts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type DType, type TensorToWrite, writeSafetensors } from "../src/hf/safetensors.js";
import type { PixelValues } from "../src/models/types.js";
import { f32ToBf16, f32ToF16 } from "../src/tensor/half.js";
import { fixtureDir, tempDir } from "./fixture-utils.js";

export interface TinySpec {
  text: "llama" | "gemma" | "mistral" | "qwen2";
  vision: "clip" | "siglip";
  dtype?: "F32" | "BF16" | "F16";
  /** Untied lm_head (default: tied). */
  untied?: boolean;
  featureLayer?: number | number[];
  strategy?: "default" | "full";
  visionLayers?: number;
  textLayers?: number;
  seed?: number;
}

/** Deterministic standard normals (xorshift + Box–Muller). */
export function normals(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

export const TINY = { D: 16, H: 4, I: 24, Dv: 16, Hv: 2, Iv: 32, imageSize: 42, patch: 14 } as const;

export function writeTinyCheckpoint(spec: TinySpec): string {
  const dir = tempDir(`tiny-${spec.text}-${spec.vision}`);
  const rnd = normals(spec.seed ?? 7);
  const dtype: DType = spec.dtype ?? "F32";
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = offset + scale * rnd();
    if (dtype === "F32") tensors.push({ name, dtype, shape, data: f });
    else {
      const u = new Uint16Array(n);
      for (let i = 0; i < n; i++) u[i] = dtype === "BF16" ? f32ToBf16(f[i]) : f32ToF16(f[i]);
      tensors.push({ name, dtype, shape, data: u });
    }
  };
  const { D, H, I, Dv, Hv, Iv, imageSize, patch } = TINY;
  const clip = spec.vision === "clip";
  const Lv = spec.visionLayers ?? 3;
  const L = spec.textLayers ?? 2;
  const gemma = spec.text === "gemma";
  const KV = gemma ? 1 : 2;
  const hd = gemma ? 8 : D / H;
  const grid = imageSize / patch;
  const vp = "vision_tower.vision_model.";
  add(`${vp}embeddings.patch_embedding.weight`, [Dv, 3, patch, patch], 0.08);
  if (clip) add(`${vp}embeddings.class_embedding`, [Dv], 0.5);
  else add(`${vp}embeddings.patch_embedding.bias`, [Dv], 0.1);
  add(`${vp}embeddings.position_embedding.weight`, [grid * grid + (clip ? 1 : 0), Dv], 0.5);
  if (clip) {
    add(`${vp}pre_layrnorm.weight`, [Dv], 0.1, 1);
    add(`${vp}pre_layrnorm.bias`, [Dv], 0.1);
  }
  for (let i = 0; i < Lv; i++) {
    const p = `${vp}encoder.layers.${i}.`;
    for (const n of ["layer_norm1", "layer_norm2"]) {
      add(`${p}${n}.weight`, [Dv], 0.1, 1);
      add(`${p}${n}.bias`, [Dv], 0.1);
    }
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      add(`${p}self_attn.${n}.weight`, [Dv, Dv], n === "q_proj" || n === "k_proj" ? 0.6 : 0.3);
      add(`${p}self_attn.${n}.bias`, [Dv], 0.1);
    }
    add(`${p}mlp.fc1.weight`, [Iv, Dv], 0.4);
    add(`${p}mlp.fc1.bias`, [Iv], 0.2);
    add(`${p}mlp.fc2.weight`, [Dv, Iv], 0.2);
    add(`${p}mlp.fc2.bias`, [Dv], 0.1);
  }
  const layersFed = Array.isArray(spec.featureLayer) ? spec.featureLayer.length : 1;
  add("multi_modal_projector.linear_1.weight", [D, Dv * layersFed], 0.3);
  add("multi_modal_projector.linear_1.bias", [D], 0.1);
  add("multi_modal_projector.linear_2.weight", [D, D], 0.3);
  add("multi_modal_projector.linear_2.bias", [D], 0.1);
  const tp = "language_model.model.";
  const V = 32064;
  add(`${tp}embed_tokens.weight`, [V, D], 0.5);
  for (let i = 0; i < L; i++) {
    const p = `${tp}layers.${i}.`;
    add(`${p}input_layernorm.weight`, [D], 0.1, gemma ? 0 : 1);
    add(`${p}post_attention_layernorm.weight`, [D], 0.1, gemma ? 0 : 1);
    add(`${p}self_attn.q_proj.weight`, [H * hd, D], 0.5);
    add(`${p}self_attn.k_proj.weight`, [KV * hd, D], 0.5);
    add(`${p}self_attn.v_proj.weight`, [KV * hd, D], 0.4);
    add(`${p}self_attn.o_proj.weight`, [D, H * hd], 0.3);
    if (spec.text === "qwen2") {
      add(`${p}self_attn.q_proj.bias`, [H * hd], 0.2);
      add(`${p}self_attn.k_proj.bias`, [KV * hd], 0.2);
      add(`${p}self_attn.v_proj.bias`, [KV * hd], 0.2);
    }
    add(`${p}mlp.gate_proj.weight`, [I, D], 0.4);
    add(`${p}mlp.up_proj.weight`, [I, D], 0.4);
    add(`${p}mlp.down_proj.weight`, [D, I], 0.3);
  }
  add(`${tp}norm.weight`, [D], 0.1, gemma ? 0 : 1);
  if (spec.untied) add("language_model.lm_head.weight", [V, D], 0.5);
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  const tie = !spec.untied;
  const config = {
    model_type: "llava",
    image_token_index: 32000,
    projector_hidden_act: "gelu",
    vision_feature_layer: spec.featureLayer ?? -2,
    vision_feature_select_strategy: spec.strategy ?? (clip ? "default" : "full"),
    tie_word_embeddings: tie,
    vision_config: {
      model_type: clip ? "clip_vision_model" : "siglip_vision_model",
      hidden_size: Dv,
      intermediate_size: Iv,
      num_hidden_layers: Lv,
      num_attention_heads: Hv,
      image_size: imageSize,
      patch_size: patch,
    },
    text_config: {
      model_type: spec.text,
      vocab_size: V,
      hidden_size: D,
      intermediate_size: I,
      num_hidden_layers: L,
      num_attention_heads: H,
      num_key_value_heads: KV,
      head_dim: hd,
      rope_theta: 10000,
      max_position_embeddings: 4096,
      tie_word_embeddings: tie,
      ...(spec.text === "mistral" ? { sliding_window: 5 } : {}),
      ...(spec.text === "llama" ? { hidden_act: "silu" } : {}),
    },
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 1));
  const tok = fixtureDir("llava-tiny-llama");
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    fs.copyFileSync(path.join(tok, f), path.join(dir, f));
  }
  return dir;
}

/** A prompt of `before` text tokens, P image tokens, `after` text tokens (ids drawn deterministically). */
export function tinyInputIds(P: number, before = 3, after = 4, seed = 3): number[] {
  const rnd = normals(seed);
  const text = () => 100 + Math.floor(Math.abs(rnd()) * 5000);
  return [
    1,
    ...Array.from({ length: before - 1 }, text),
    ...new Array(P).fill(32000),
    ...Array.from({ length: after }, text),
  ];
}

/** Random pixel values [3, S, S] of unit scale. */
export function tinyPixels(seed = 5): Float32Array {
  const rnd = normals(seed);
  const S = TINY.imageSize;
  return Float32Array.from({ length: 3 * S * S }, () => rnd());
}

/** `tinyPixels` as the model takes them ([3, S, S]). */
export function tinyPixelValues(seed = 5): PixelValues {
  const S = TINY.imageSize;
  return { data: tinyPixels(seed), shape: [3, S, S] };
}
