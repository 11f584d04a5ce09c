import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** Project root (this file lives at dist/src/cli/ after the build). */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

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
