import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { SUPPORTED_MODEL_TYPES } from "../models/registry.js";

/** Project root (this file lives at dist/src/cli/ after the build). */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** `--model`'s help: any Hugging Face model folder of a registered family, then what omitting it means. */
export function modelOptionHelp(dflt: string): string {
  return `Hugging Face model folder, config.json model_type one of ${SUPPORTED_MODEL_TYPES.join(", ")} (default: ${dflt})`;
}

/**
 * The model used when --model is omitted: the embedded default model under models/ when present, otherwise
 * the public llama test fixture (a tiny random checkpoint: it runs, its answers are gibberish).
 */
export function defaultModelDir(): string {
  const candidates = [
    path.join(PROJECT_ROOT, "models/llava-shapes"),
    path.join(PROJECT_ROOT, "test/fixtures/llava-tiny-llama"),
  ];
  for (const c of candidates) if (fs.existsSync(path.join(c, "config.json"))) return c;
  throw new Error(`no default model found (looked in ${candidates.join(", ")}); pass --model <dir>`);
}
