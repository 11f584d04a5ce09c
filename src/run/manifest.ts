/** The run directory's manifest (format "lvlm-trace/1"); see docs/trace-format.md. */
export const RUN_FORMAT = "lvlm-trace/1";

export interface RunModelInfo {
  dir: string;
  text_model_type: string;
  vision_model_type: string;
  llm_layers: number;
  llm_heads: number;
  llm_kv_heads: number;
  vit_layers: number;
  vit_heads: number;
  /** [rows, cols] of image patches; image token i ↔ patch (i / cols | 0, i % cols). */
  patch_grid: [number, number];
  has_cls: boolean;
  vision_feature_layer: number;
}

export interface RunSettings {
  max_new_tokens: number;
  temperature: number;
  top_p: number;
  seed: number;
  image_mode: "default" | "pad" | "resize";
}

export interface RunManifest {
  format: typeof RUN_FORMAT;
  created_at: string;
  model: RunModelInfo;
  prompt: string;
  chat_text: string;
  /** Expanded prompt ids (one image token per image feature). */
  input_ids: number[];
  image_token_start: number;
  image_token_count: number;
  generated_ids: number[];
  generated_tokens: string[];
  answer: string;
  /** len(input_ids) + len(generated_ids) − 1: positions ever fed to the model. */
  seq_len: number;
  settings: RunSettings;
  timings_ms: Record<string, number>;
  image_file: string;
  original_image_file: string;
  attn_dtype: "f32" | "f16";
  /** Extra safetensors files (added by later analyses) merged into the run's tensor namespace. */
  tensor_files: string[];
  /** Free-form records added by analyses (e.g. relevancy token lists). */
  extras?: Record<string, unknown>;
}
