/** Shared access to the public reference fixtures (test/fixtures, copied from ../shared/fixtures). */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsFile } from "../src/hf/safetensors.js";

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
