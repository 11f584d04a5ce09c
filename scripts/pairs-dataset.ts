/** A CLIP-blind-style pair set of shape scenes (src/shapes/pairs.ts) written as a batch dataset. */
import * as fs from "node:fs";
import * as path from "node:path";
import { encodePng } from "../src/hf/image-decode.js";
import { makePair } from "../src/shapes/pairs.js";

/** Writes out/pairs.jsonl and out/images/<id>.png (two items per pair); returns the jsonl's path. */
export function writePairDataset(out: string, pairs: number, seed: number): string {
  fs.mkdirSync(path.join(out, "images"), { recursive: true });
  const lines: string[] = [];
  for (let i = 0; i < pairs; i++) {
    const p = makePair(seed, i);
    const pair = `p${String(i).padStart(3, "0")}`;
    for (const [side, s] of [
      ["a", p.a],
      ["b", p.b],
    ] as const) {
      const id = `${pair}-${side}`;
      const image = `images/${id}.png`;
      fs.writeFileSync(path.join(out, image), encodePng(s.image));
      lines.push(
        JSON.stringify({ id, image, question: p.question, answer: s.answer, pair, kind: p.kind, box: s.box }),
      );
    }
  }
  const file = path.join(out, "pairs.jsonl");
  fs.writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}
