/** Hand-made run directories with known attention values, for testing readers of the run format. */
import { encodePng } from "../src/hf/image-decode.js";
import type { TensorToWrite } from "../src/hf/safetensors.js";
import { RUN_FORMAT, type RunManifest } from "../src/run/manifest.js";
import { writeRun } from "../src/run/run-dir.js";
import { f32ToF16 } from "../src/tensor/half.js";
import { gridImage } from "./run-image.js";

export interface SyntheticRunSpec {
  T: number;
  G: number;
  layers: number;
  heads: number;
  imageStart: number;
  grid: [number, number];
  dtype?: "f32" | "f16";
  /** Attention value of layer l, head h, row r, column c (only c ≤ r is stored; above the diagonal is 0). */
  value: (l: number, h: number, r: number, c: number) => number;
}

export function syntheticManifest(s: SyntheticRunSpec): RunManifest {
  const count = s.grid[0] * s.grid[1];
  const image = gridImage(s.imageStart, s.grid);
  const input_ids = Array.from({ length: s.T }, (_, i) =>
    i >= s.imageStart && i < s.imageStart + count ? 32000 : 100 + i,
  );
  return {
    format: RUN_FORMAT,
    created_at: new Date(0).toISOString(),
    model: {
      dir: "/nonexistent/model",
      text_model_type: "llama",
      vision_model_type: "clip_vision_model",
      llm_layers: s.layers,
      llm_heads: s.heads,
      llm_kv_heads: s.heads,
      vit_layers: 1,
      vit_heads: 1,
      model_type: "llava",
      has_cls: true,
      vision_feature_layer: -2,
      position_axes: 1,
    },
    prompt: "synthetic",
    chat_text: "USER: <image>\nsynthetic ASSISTANT:",
    input_ids,
    image_layout: image.layout,
    generated_ids: Array.from({ length: s.G }, (_, k) => 200 + k),
    generated_tokens: Array.from({ length: s.G }, (_, k) => `t${k}`),
    answer: Array.from({ length: s.G }, (_, k) => `t${k}`).join(""),
    seq_len: s.T + s.G - 1,
    settings: { max_new_tokens: s.G, temperature: 0, top_p: 1, seed: 0, image_mode: "default" },
    timings_ms: {},
    image_file: "image.png",
    original_image_file: "input.png",
    attn_dtype: s.dtype ?? "f32",
    tensor_files: [],
  };
}

export function writeSyntheticRun(dir: string, s: SyntheticRunSpec): RunManifest {
  const manifest = syntheticManifest(s);
  const S = manifest.seq_len;
  const tensors: TensorToWrite[] = [...gridImage(s.imageStart, s.grid).tensors];
  for (let l = 0; l < s.layers; l++) {
    const a = new Float32Array(s.heads * S * S);
    for (let h = 0; h < s.heads; h++)
      for (let r = 0; r < S; r++) for (let c = 0; c <= r; c++) a[(h * S + r) * S + c] = s.value(l, h, r, c);
    if (s.dtype === "f16") {
      const u = new Uint16Array(a.length);
      for (let i = 0; i < a.length; i++) u[i] = f32ToF16(a[i]);
      tensors.push({ name: `llm_attn.${l}`, dtype: "F16", shape: [s.heads, S, S], data: u });
    } else {
      tensors.push({ name: `llm_attn.${l}`, dtype: "F32", shape: [s.heads, S, S], data: a });
    }
  }
  tensors.push({ name: "logits", dtype: "F32", shape: [s.G, 4], data: new Float32Array(s.G * 4) });
  const side = 14 * s.grid[0];
  const img = {
    width: side,
    height: side,
    data: new Uint8Array(side * side * 3).map((_, i) => (i * 7) % 256),
  };
  const png = encodePng(img);
  writeRun(dir, {
    manifest,
    tensors,
    files: [
      { name: "image.png", data: png },
      { name: "input.png", data: png },
    ],
  });
  return manifest;
}
