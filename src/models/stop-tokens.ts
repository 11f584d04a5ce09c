/** The token ids that end generation, as Hugging Face's generate() collects them for a checkpoint. */
import * as fs from "node:fs";
import * as path from "node:path";
import type { TextProcessor } from "../hf/tokenizer.js";

/** config/generation_config EOS plus the tokenizer's, and gemma's `<end_of_turn>`. */
export function collectStopTokenIds(
  dir: string,
  configEosIds: readonly number[],
  text: TextProcessor,
  textModelType: string,
): number[] {
  const ids = new Set<number>(configEosIds);
  const gen = path.join(dir, "generation_config.json");
  if (fs.existsSync(gen)) {
    try {
      const eos = JSON.parse(fs.readFileSync(gen, "utf8")).eos_token_id;
      for (const id of Array.isArray(eos) ? eos : [eos]) if (typeof id === "number") ids.add(id);
    } catch {
      // A malformed generation_config only loses its extra stop ids.
    }
  }
  const eosTok = text.special("eos_token");
  const eosId = eosTok === null ? undefined : text.tokenId(eosTok);
  if (eosId !== undefined) ids.add(eosId);
  if (textModelType === "gemma") {
    const eot = text.tokenId("<end_of_turn>");
    if (eot !== undefined) ids.add(eot);
  }
  return [...ids];
}
