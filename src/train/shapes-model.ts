/**
 * The embedded default model's architecture: a small LLaVA (CLIP-style tower, 2-layer GELU projector, llama
 * decoder) sized for the synthetic shapes task, written as an ordinary llava-hf checkpoint folder so it loads
 * through the same code as any Hub checkpoint.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type TensorToWrite, writeSafetensors } from "../hf/safetensors.js";
import { makeDirs } from "../run/out-dir.js";
import { SHAPES_PATCH_SIZE } from "../shapes/dataset.js";
import { IMAGE_SIZE } from "../shapes/scene.js";
import {
  BOS_TOKEN_ID,
  EOS_TOKEN_ID,
  IMAGE_TOKEN_ID,
  PAD_TOKEN_ID,
  writeShapesTokenizer,
} from "../shapes/tokenizer.js";
import { Rng } from "../tensor/rng.js";

export interface ShapesModelDims {
  visionHidden: number;
  visionIntermediate: number;
  visionLayers: number;
  visionHeads: number;
  textHidden: number;
  textIntermediate: number;
  textLayers: number;
  textHeads: number;
  textKvHeads: number;
  /**
   * Initial std of the vision position embeddings and of the vision q/k projections (default 0.02, the
   * GPT-2 value). Larger values make patch positions visible to the tower's attention from the start.
   */
  visionPositionStd?: number;
  visionQkStd?: number;
}

export const DEFAULT_SHAPES_DIMS: ShapesModelDims = {
  visionHidden: 96,
  visionIntermediate: 384,
  visionLayers: 3,
  visionHeads: 4,
  // 128,352,3,4,2 (the previous model) underfit: training accuracy stayed at the held-out one (~80 %).
  textHidden: 256,
  textIntermediate: 688,
  textLayers: 4,
  textHeads: 8,
  textKvHeads: 4,
};

/** config.json of the shapes model; vision_feature_layer −1 so every tower layer feeds (and is trained). */
export function shapesConfig(d: ShapesModelDims, vocabSize: number): Record<string, unknown> {
  return {
    architectures: ["LlavaForConditionalGeneration"],
    model_type: "llava",
    image_token_index: IMAGE_TOKEN_ID,
    projector_hidden_act: "gelu",
    multimodal_projector_bias: true,
    vision_feature_layer: -1,
    vision_feature_select_strategy: "default",
    image_seq_length: (IMAGE_SIZE / SHAPES_PATCH_SIZE) ** 2,
    vocab_size: vocabSize,
    pad_token_id: PAD_TOKEN_ID,
    tie_word_embeddings: false,
    torch_dtype: "float16",
    vision_config: {
      model_type: "clip_vision_model",
      hidden_size: d.visionHidden,
      intermediate_size: d.visionIntermediate,
      num_hidden_layers: d.visionLayers,
      num_attention_heads: d.visionHeads,
      num_channels: 3,
      image_size: IMAGE_SIZE,
      patch_size: SHAPES_PATCH_SIZE,
      hidden_act: "quick_gelu",
      layer_norm_eps: 1e-5,
      projection_dim: d.visionHidden,
    },
    text_config: {
      model_type: "llama",
      vocab_size: vocabSize,
      hidden_size: d.textHidden,
      intermediate_size: d.textIntermediate,
      num_hidden_layers: d.textLayers,
      num_attention_heads: d.textHeads,
      num_key_value_heads: d.textKvHeads,
      head_dim: d.textHidden / d.textHeads,
      max_position_embeddings: 256,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      hidden_act: "silu",
      tie_word_embeddings: false,
      bos_token_id: BOS_TOKEN_ID,
      eos_token_id: EOS_TOKEN_ID,
      pad_token_id: PAD_TOKEN_ID,
      attention_bias: false,
      mlp_bias: false,
    },
  };
}

const PREPROCESSOR = {
  image_processor_type: "CLIPImageProcessor",
  processor_class: "LlavaProcessor",
  do_resize: true,
  size: { shortest_edge: IMAGE_SIZE },
  resample: 3,
  do_center_crop: true,
  crop_size: { height: IMAGE_SIZE, width: IMAGE_SIZE },
  do_rescale: true,
  rescale_factor: 1 / 255,
  do_normalize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  do_convert_rgb: true,
};

/** Everything but the weights: config, tokenizer, processor and generation configs. */
export function writeShapesModelFiles(dir: string, d: ShapesModelDims): number {
  makeDirs(dir);
  const tok = writeShapesTokenizer(dir);
  const vocab = Object.keys(tok.vocab).length;
  fs.writeFileSync(path.join(dir, "config.json"), `${JSON.stringify(shapesConfig(d, vocab), null, 2)}\n`);
  fs.writeFileSync(path.join(dir, "preprocessor_config.json"), `${JSON.stringify(PREPROCESSOR, null, 2)}\n`);
  const gen = {
    bos_token_id: BOS_TOKEN_ID,
    eos_token_id: EOS_TOKEN_ID,
    pad_token_id: PAD_TOKEN_ID,
    do_sample: false,
  };
  fs.writeFileSync(path.join(dir, "generation_config.json"), `${JSON.stringify(gen, null, 2)}\n`);
  return vocab;
}

/**
 * Initial weights (GPT-2-style): N(0, 0.02) for matrices and embeddings, residual-output projections scaled
 * by 1/√(2·layers), norm gains 1, biases 0.
 */
export function initialShapesWeights(d: ShapesModelDims, vocab: number, seed: number): TensorToWrite[] {
  const rng = new Rng(seed);
  const normal = (std: number) => {
    const u = Math.max(rng.next(), 1e-12);
    return std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  };
  const out: TensorToWrite[] = [];
  const randn = (name: string, shape: number[], std = 0.02) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = normal(std);
    out.push({ name, dtype: "F32", shape, data });
  };
  const fill = (name: string, shape: number[], v: number) => {
    out.push({ name, dtype: "F32", shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(v) });
  };
  const Dv = d.visionHidden;
  const grid = IMAGE_SIZE / SHAPES_PATCH_SIZE;
  const vp = "vision_tower.vision_model.";
  const visionResid = 0.02 / Math.sqrt(2 * d.visionLayers);
  randn(`${vp}embeddings.class_embedding`, [Dv]);
  randn(`${vp}embeddings.patch_embedding.weight`, [Dv, 3, SHAPES_PATCH_SIZE, SHAPES_PATCH_SIZE]);
  randn(`${vp}embeddings.position_embedding.weight`, [grid * grid + 1, Dv], d.visionPositionStd ?? 0.02);
  fill(`${vp}pre_layrnorm.weight`, [Dv], 1);
  fill(`${vp}pre_layrnorm.bias`, [Dv], 0);
  for (let i = 0; i < d.visionLayers; i++) {
    const p = `${vp}encoder.layers.${i}.`;
    for (const ln of ["layer_norm1", "layer_norm2"]) {
      fill(`${p}${ln}.weight`, [Dv], 1);
      fill(`${p}${ln}.bias`, [Dv], 0);
    }
    for (const proj of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      const qk = proj === "q_proj" || proj === "k_proj";
      randn(
        `${p}self_attn.${proj}.weight`,
        [Dv, Dv],
        proj === "out_proj" ? visionResid : qk ? (d.visionQkStd ?? 0.02) : 0.02,
      );
      fill(`${p}self_attn.${proj}.bias`, [Dv], 0);
    }
    randn(`${p}mlp.fc1.weight`, [d.visionIntermediate, Dv]);
    fill(`${p}mlp.fc1.bias`, [d.visionIntermediate], 0);
    randn(`${p}mlp.fc2.weight`, [Dv, d.visionIntermediate], visionResid);
    fill(`${p}mlp.fc2.bias`, [Dv], 0);
  }
  fill(`${vp}post_layernorm.weight`, [Dv], 1);
  fill(`${vp}post_layernorm.bias`, [Dv], 0);
  const D = d.textHidden;
  const hd = D / d.textHeads;
  randn("multi_modal_projector.linear_1.weight", [D, Dv]);
  fill("multi_modal_projector.linear_1.bias", [D], 0);
  randn("multi_modal_projector.linear_2.weight", [D, D]);
  fill("multi_modal_projector.linear_2.bias", [D], 0);
  const tp = "language_model.model.";
  const textResid = 0.02 / Math.sqrt(2 * d.textLayers);
  randn(`${tp}embed_tokens.weight`, [vocab, D]);
  for (let i = 0; i < d.textLayers; i++) {
    const p = `${tp}layers.${i}.`;
    fill(`${p}input_layernorm.weight`, [D], 1);
    fill(`${p}post_attention_layernorm.weight`, [D], 1);
    randn(`${p}self_attn.q_proj.weight`, [d.textHeads * hd, D]);
    randn(`${p}self_attn.k_proj.weight`, [d.textKvHeads * hd, D]);
    randn(`${p}self_attn.v_proj.weight`, [d.textKvHeads * hd, D]);
    randn(`${p}self_attn.o_proj.weight`, [D, d.textHeads * hd], textResid);
    randn(`${p}mlp.gate_proj.weight`, [d.textIntermediate, D]);
    randn(`${p}mlp.up_proj.weight`, [d.textIntermediate, D]);
    randn(`${p}mlp.down_proj.weight`, [D, d.textIntermediate], textResid);
  }
  fill(`${tp}norm.weight`, [D], 1);
  randn("language_model.lm_head.weight", [vocab, D]);
  return out;
}

/** A fresh, untrained shapes model folder (F32 weights). */
export function createShapesModel(dir: string, d: ShapesModelDims, seed: number): void {
  const vocab = writeShapesModelFiles(dir, d);
  writeSafetensors(path.join(dir, "model.safetensors"), initialShapesWeights(d, vocab, seed));
}
