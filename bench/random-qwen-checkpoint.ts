/**
 * Writes a Qwen2-VL checkpoint folder (Hub naming: `visual.*`, `model.*`; flat config.json) with random
 * weights for a named configuration's shapes, so speed and memory can be measured without downloading the
 * model. The tokenizer, chat template and processor config come from the tiny Qwen2-VL test fixture.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { DType, TensorToWrite } from "../src/hf/safetensors.js";
import { writeSafetensors } from "../src/hf/safetensors.js";
import { type NamedConfig, randomTensor } from "./random-checkpoint.js";

export function writeRandomQwenCheckpoint(
  dir: string,
  cfg: NamedConfig,
  opts: { layers?: number; visionLayers?: number; dtype?: DType; fixture: string },
): void {
  if (!cfg.qwen2vl) throw new Error(`${cfg.name}: not a Qwen2-VL shape`);
  const dtype = opts.dtype ?? "BF16";
  const L = opts.layers ?? cfg.text.layers;
  const Lv = opts.visionLayers ?? cfg.vision.layers;
  const v = cfg.vision;
  const t = cfg.text;
  const D = v.hidden;
  const mm = 4;
  const hd = t.hidden / t.heads;
  const seed = { s: 12345 };
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], scale = 0.02) =>
    tensors.push(randomTensor(name, shape, dtype, scale, seed));
  add("visual.patch_embed.proj.weight", [D, 3, 2, v.patch, v.patch]);
  for (let i = 0; i < Lv; i++) {
    const p = `visual.blocks.${i}.`;
    for (const n of ["norm1", "norm2"]) {
      add(`${p}${n}.weight`, [D], 1);
      add(`${p}${n}.bias`, [D]);
    }
    add(`${p}attn.qkv.weight`, [3 * D, D]);
    add(`${p}attn.qkv.bias`, [3 * D]);
    add(`${p}attn.proj.weight`, [D, D]);
    add(`${p}attn.proj.bias`, [D]);
    add(`${p}mlp.fc1.weight`, [v.intermediate, D]);
    add(`${p}mlp.fc1.bias`, [v.intermediate]);
    add(`${p}mlp.fc2.weight`, [D, v.intermediate]);
    add(`${p}mlp.fc2.bias`, [D]);
  }
  add("visual.merger.ln_q.weight", [D], 1);
  add("visual.merger.ln_q.bias", [D]);
  add("visual.merger.mlp.0.weight", [D * mm, D * mm]);
  add("visual.merger.mlp.0.bias", [D * mm]);
  add("visual.merger.mlp.2.weight", [t.hidden, D * mm]);
  add("visual.merger.mlp.2.bias", [t.hidden]);
  add("model.embed_tokens.weight", [t.vocab, t.hidden]);
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    add(`${p}input_layernorm.weight`, [t.hidden], 1);
    add(`${p}post_attention_layernorm.weight`, [t.hidden], 1);
    add(`${p}self_attn.q_proj.weight`, [t.heads * hd, t.hidden]);
    add(`${p}self_attn.q_proj.bias`, [t.heads * hd]);
    add(`${p}self_attn.k_proj.weight`, [t.kvHeads * hd, t.hidden]);
    add(`${p}self_attn.k_proj.bias`, [t.kvHeads * hd]);
    add(`${p}self_attn.v_proj.weight`, [t.kvHeads * hd, t.hidden]);
    add(`${p}self_attn.v_proj.bias`, [t.kvHeads * hd]);
    add(`${p}self_attn.o_proj.weight`, [t.hidden, t.heads * hd]);
    add(`${p}mlp.gate_proj.weight`, [t.intermediate, t.hidden]);
    add(`${p}mlp.up_proj.weight`, [t.intermediate, t.hidden]);
    add(`${p}mlp.down_proj.weight`, [t.hidden, t.intermediate]);
  }
  add("model.norm.weight", [t.hidden], 1);
  if (!t.tie) add("lm_head.weight", [t.vocab, t.hidden]);

  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  const base = JSON.parse(fs.readFileSync(path.join(opts.fixture, "config.json"), "utf8"));
  const config = {
    ...base,
    torch_dtype: dtype === "BF16" ? "bfloat16" : "float32",
    vocab_size: t.vocab,
    hidden_size: t.hidden,
    intermediate_size: t.intermediate,
    num_hidden_layers: L,
    num_attention_heads: t.heads,
    num_key_value_heads: t.kvHeads,
    max_window_layers: L,
    rope_theta: t.ropeTheta,
    tie_word_embeddings: t.tie,
    rope_scaling: { type: "mrope", mrope_section: cfg.qwen2vl.mropeSection },
    vision_config: {
      ...base.vision_config,
      depth: Lv,
      embed_dim: D,
      hidden_size: t.hidden,
      mlp_ratio: v.intermediate / D,
      num_heads: v.heads,
      patch_size: v.patch,
      spatial_patch_size: v.patch,
    },
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 1));
  for (const f of [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "generation_config.json",
    "preprocessor_config.json",
  ])
    fs.copyFileSync(path.join(opts.fixture, f), path.join(dir, f));
}
