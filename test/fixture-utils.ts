/** Shared access to the public reference fixtures (test/fixtures, copied from ../shared/fixtures). */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../src/hf/safetensors.js";
import type { ImageLayout } from "../src/models/image-layout.js";
import type { LlavaModel } from "../src/models/llava/model.js";
import type { PixelValues } from "../src/models/types.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURES = ["llava-tiny-llama", "llava-tiny-gemma"] as const;
export type FixtureName = (typeof FIXTURES)[number];

export interface Fixture {
  name: FixtureName;
  dir: string;
  expected: {
    question: string;
    prompt: string;
    input_ids: number[];
    generated_ids: number[];
    generated_token_texts: string[];
    generated_text: string;
    T: number;
    T_full: number;
    image_token_start: number;
    image_token_count: number;
    patch_grid: [number, number];
    [k: string]: unknown;
  };
  tensors: SafetensorsFile;
}

export function fixtureDir(name: FixtureName): string {
  return path.join(ROOT, "test/fixtures", name);
}

export function loadFixture(name: FixtureName): Fixture {
  const dir = fixtureDir(name);
  return {
    name,
    dir,
    expected: JSON.parse(fs.readFileSync(path.join(dir, "expected.json"), "utf8")),
    tensors: SafetensorsFile.open(path.join(dir, "expected.safetensors")),
  };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `lvlm-${prefix}-`));
}

/** The fixture's reference pixel_values as the model takes them ([3, S, S]). */
export function fixturePixels(fx: Fixture): PixelValues {
  const info = fx.tensors.info("pixel_values");
  return { data: fx.tensors.readF32("pixel_values"), shape: info.shape.slice(-3) };
}

/** The one-grid layout of a LLaVA model's square input (what position ids and relevancy read from it). */
export function gridLayout(model: LlavaModel): ImageLayout {
  const [rows, cols] = model.patchGrid;
  const S = model.config.vision.imageSize;
  const cls = model.config.vision.hasCls ? 1 : 0;
  const full = model.imageTokenCount === rows * cols + cls && cls === 1;
  return {
    original_size: [S, S],
    token_count: model.imageTokenCount,
    segments: [
      ...(full ? [{ kind: "token" as const, name: "cls" }] : []),
      {
        kind: "grid",
        name: "image",
        rows,
        cols,
        row_separator: false,
        frame: [0, 0, S, S],
        tower: { pass: 0, first_token: cls },
      },
    ],
  };
}
