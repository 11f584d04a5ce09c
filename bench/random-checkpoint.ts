/**
 * Writes a llava-hf checkpoint folder with random weights for a named real configuration (shapes only), so
 * speed and memory can be measured without downloading the model. `layers` trims the text stack.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type DType, type TensorToWrite, writeSafetensors } from "../src/hf/safetensors.js";
import { f32ToBf16 } from "../src/tensor/half.js";

export interface NamedConfig {
  name: string;
  vision: {
    hidden: number;
    intermediate: number;
    layers: number;
    heads: number;
    imageSize: number;
    patch: number;
  };
  text: {
    type: "llama" | "mistral" | "qwen2";
    hidden: number;
    intermediate: number;
    layers: number;
    heads: number;
    kvHeads: number;
    vocab: number;
    ropeTheta: number;
    tie: boolean;
  };
  featureLayer: number;
  strategy: "default" | "full";
  /** LLaVA-NeXT (model_type "llava_next"): its canvases as [height, width]; absent for plain LLaVA. */
  anyresPinpoints?: [number, number][];
  /** Qwen2-VL (model_type "qwen2_vl", written by random-qwen-checkpoint.ts): its M-RoPE sections. */
  qwen2vl?: { mropeSection: [number, number, number] };
}

export const NAMED_CONFIGS: Record<string, NamedConfig> = {
  "llava-1.5-7b": {
    name: "llava-1.5-7b",
    vision: { hidden: 1024, intermediate: 4096, layers: 24, heads: 16, imageSize: 336, patch: 14 },
    text: {
      type: "llama",
      hidden: 4096,
      intermediate: 11008,
      layers: 32,
      heads: 32,
      kvHeads: 32,
      vocab: 32064,
      ropeTheta: 10000,
      tie: false,
    },
    featureLayer: -2,
    strategy: "default",
  },
  // llava-v1.6-mistral-7b-hf: CLIP-L/336 tower, Mistral-7B decoder (vocab 32000; the bench embeds the shared
  // test tokenizer's 32064), the default anyres canvases: a 4:3 picture gives base + 2×2 tiles, ~2,200 tokens.
  "llava-v1.6-mistral-7b": {
    name: "llava-v1.6-mistral-7b",
    vision: { hidden: 1024, intermediate: 4096, layers: 24, heads: 16, imageSize: 336, patch: 14 },
    text: {
      type: "mistral",
      hidden: 4096,
      intermediate: 14336,
      layers: 32,
      heads: 32,
      kvHeads: 8,
      vocab: 32064,
      ropeTheta: 1000000,
      tie: false,
    },
    featureLayer: -2,
    strategy: "default",
    anyresPinpoints: [
      [336, 672],
      [672, 336],
      [672, 672],
      [1008, 336],
      [336, 1008],
    ],
  },
  // llava-interleave-qwen-0.5b: SigLIP-so400m tower, Qwen2-0.5B decoder (its vocab is 151646; the shared
  // test tokenizer has 32064 entries, which is what the bench embeds — the matmul shapes are the real ones
  // except the LM head).
  "llava-interleave-qwen-0.5b": {
    name: "llava-interleave-qwen-0.5b",
    vision: { hidden: 1152, intermediate: 4304, layers: 26, heads: 16, imageSize: 384, patch: 14 },
    text: {
      type: "qwen2",
      hidden: 896,
      intermediate: 4864,
      layers: 24,
      heads: 14,
      kvHeads: 2,
      vocab: 32064,
      ropeTheta: 1000000,
      tie: true,
    },
    featureLayer: -1,
    strategy: "full",
  },
  // Qwen2-VL-2B-Instruct: a 1280-wide, 32-block tower (16 heads, quick_gelu MLP ×4, 2×2 merger to 1536) and
  // the Qwen2-1.5B decoder with M-RoPE (vocab 151936 in the checkpoint; the bench embeds the tiny Qwen
  // fixture's tokenizer and a 32064-row LM head). An 800×600 picture is smart-resized to 812×588: 2,436
  // patches, 609 image tokens.
  "qwen2-vl-2b": {
    name: "qwen2-vl-2b",
    vision: { hidden: 1280, intermediate: 5120, layers: 32, heads: 16, imageSize: 0, patch: 14 },
    text: {
      type: "qwen2",
      hidden: 1536,
      intermediate: 8960,
      layers: 28,
      heads: 12,
      kvHeads: 2,
      vocab: 32064,
      ropeTheta: 1000000,
      tie: true,
    },
    featureLayer: -1,
    strategy: "full",
    qwen2vl: { mropeSection: [16, 24, 24] },
  },
};

export function randomTensor(
  name: string,
  shape: number[],
  dtype: DType,
  scale: number,
  seed: { s: number },
): TensorToWrite {
  const n = shape.reduce((a, b) => a * b, 1);
  // xorshift32 → roughly uniform in [−scale, scale]: speed measurements do not care about the distribution.
  let s = seed.s;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 4294967296 - 0.5) * 2 * scale;
  };
  let data: ArrayBufferView;
  if (dtype === "BF16") {
    const u = new Uint16Array(n);
    for (let i = 0; i < n; i++) u[i] = f32ToBf16(next());
    data = u;
  } else {
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = next();
    data = f;
  }
  seed.s = s || 1;
  return { name, dtype, shape, data };
}

export function writeRandomCheckpoint(
  dir: string,
  cfg: NamedConfig,
  opts: { layers?: number; visionLayers?: number; dtype?: DType; tokenizerFrom: string },
): void {
  if (cfg.qwen2vl) throw new Error(`${cfg.name}: a Qwen2-VL shape, written by writeRandomQwenCheckpoint`);
  const dtype = opts.dtype ?? "BF16";
  const L = opts.layers ?? cfg.text.layers;
  const Lv = opts.visionLayers ?? cfg.vision.layers;
  const v = cfg.vision;
  const t = cfg.text;
  const clip = t.type !== "qwen2";
  const hd = t.hidden / t.heads;
  const seed = { s: 12345 };
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], scale = 0.02) =>
    tensors.push(randomTensor(name, shape, dtype, scale, seed));
  const ones = (name: string, shape: number[]) => tensors.push(randomTensor(name, shape, dtype, 0.01, seed));
  const vp = "vision_tower.vision_model.";
  const grid = Math.floor(v.imageSize / v.patch);
  add(`${vp}embeddings.patch_embedding.weight`, [v.hidden, 3, v.patch, v.patch]);
  if (clip) add(`${vp}embeddings.class_embedding`, [v.hidden]);
  else add(`${vp}embeddings.patch_embedding.bias`, [v.hidden]);
  add(`${vp}embeddings.position_embedding.weight`, [grid * grid + (clip ? 1 : 0), v.hidden]);
  if (clip) {
    ones(`${vp}pre_layrnorm.weight`, [v.hidden]);
    ones(`${vp}pre_layrnorm.bias`, [v.hidden]);
  }
  for (let i = 0; i < Lv; i++) {
    const p = `${vp}encoder.layers.${i}.`;
    for (const n of ["layer_norm1", "layer_norm2"]) {
      ones(`${p}${n}.weight`, [v.hidden]);
      ones(`${p}${n}.bias`, [v.hidden]);
    }
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      add(`${p}self_attn.${n}.weight`, [v.hidden, v.hidden]);
      add(`${p}self_attn.${n}.bias`, [v.hidden]);
    }
    add(`${p}mlp.fc1.weight`, [v.intermediate, v.hidden]);
    add(`${p}mlp.fc1.bias`, [v.intermediate]);
    add(`${p}mlp.fc2.weight`, [v.hidden, v.intermediate]);
    add(`${p}mlp.fc2.bias`, [v.hidden]);
  }
  add("multi_modal_projector.linear_1.weight", [t.hidden, v.hidden]);
  add("multi_modal_projector.linear_1.bias", [t.hidden]);
  add("multi_modal_projector.linear_2.weight", [t.hidden, t.hidden]);
  add("multi_modal_projector.linear_2.bias", [t.hidden]);
  const tp = "language_model.model.";
  add(`${tp}embed_tokens.weight`, [t.vocab, t.hidden]);
  for (let i = 0; i < L; i++) {
    const p = `${tp}layers.${i}.`;
    ones(`${p}input_layernorm.weight`, [t.hidden]);
    ones(`${p}post_attention_layernorm.weight`, [t.hidden]);
    add(`${p}self_attn.q_proj.weight`, [t.heads * hd, t.hidden]);
    add(`${p}self_attn.k_proj.weight`, [t.kvHeads * hd, t.hidden]);
    add(`${p}self_attn.v_proj.weight`, [t.kvHeads * hd, t.hidden]);
    add(`${p}self_attn.o_proj.weight`, [t.hidden, t.heads * hd]);
    if (t.type === "qwen2") {
      add(`${p}self_attn.q_proj.bias`, [t.heads * hd]);
      add(`${p}self_attn.k_proj.bias`, [t.kvHeads * hd]);
      add(`${p}self_attn.v_proj.bias`, [t.kvHeads * hd]);
    }
    add(`${p}mlp.gate_proj.weight`, [t.intermediate, t.hidden]);
    add(`${p}mlp.up_proj.weight`, [t.intermediate, t.hidden]);
    add(`${p}mlp.down_proj.weight`, [t.hidden, t.intermediate]);
  }
  ones(`${tp}norm.weight`, [t.hidden]);
  if (!t.tie) add("language_model.lm_head.weight", [t.vocab, t.hidden]);
  if (cfg.anyresPinpoints) add("image_newline", [t.hidden]);

  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  const config = {
    model_type: cfg.anyresPinpoints ? "llava_next" : "llava",
    ...(cfg.anyresPinpoints ? { image_grid_pinpoints: cfg.anyresPinpoints } : {}),
    image_token_index: 32000,
    projector_hidden_act: "gelu",
    vision_feature_layer: cfg.featureLayer,
    vision_feature_select_strategy: cfg.strategy,
    tie_word_embeddings: t.tie,
    vision_config: {
      model_type: clip ? "clip_vision_model" : "siglip_vision_model",
      hidden_size: v.hidden,
      intermediate_size: v.intermediate,
      num_hidden_layers: Lv,
      num_attention_heads: v.heads,
      image_size: v.imageSize,
      patch_size: v.patch,
    },
    text_config: {
      model_type: t.type,
      vocab_size: t.vocab,
      hidden_size: t.hidden,
      intermediate_size: t.intermediate,
      num_hidden_layers: L,
      num_attention_heads: t.heads,
      num_key_value_heads: t.kvHeads,
      rope_theta: t.ropeTheta,
      max_position_embeddings: 4096,
      tie_word_embeddings: t.tie,
    },
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 1));
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
    fs.copyFileSync(path.join(opts.tokenizerFrom, f), path.join(dir, f));
  }
  const pp = cfg.anyresPinpoints
    ? {
        image_processor_type: "LlavaNextImageProcessor",
        size: { shortest_edge: v.imageSize },
        crop_size: { height: v.imageSize, width: v.imageSize },
        image_grid_pinpoints: cfg.anyresPinpoints,
      }
    : clip
      ? {
          image_processor_type: "CLIPImageProcessor",
          size: { shortest_edge: v.imageSize },
          crop_size: { height: v.imageSize, width: v.imageSize },
        }
      : { image_processor_type: "SiglipImageProcessor", size: { height: v.imageSize, width: v.imageSize } };
  fs.writeFileSync(path.join(dir, "preprocessor_config.json"), JSON.stringify(pp));
}
