/**
 * Per question kind breakdown of a batch over a make:pairs set (the JSONL's `kind` field): accuracy and the
 * right-vs-wrong reliance comparison within each kind, so a difference between kinds (counting is both the
 * hardest kind and the most image-bound question) is not mistaken for a difference between right and wrong.
 * Usage: node dist/scripts/case-study-kinds.js REPORT_DIR DATASET.jsonl  → a markdown table on stdout.
 */
import * as fs from "node:fs";
import { mannWhitneyU } from "../src/batch/rank-test.js";
import type { BatchReport } from "../src/batch/report.js";

const [reportDir, dataset] = process.argv.slice(2);
if (!reportDir || !dataset) throw new Error("usage: case-study-kinds REPORT_DIR DATASET.jsonl");
const report: BatchReport = JSON.parse(fs.readFileSync(`${reportDir}/report.json`, "utf8"));
const kindOf = new Map<string, string>();
for (const line of fs.readFileSync(dataset, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const o = JSON.parse(line);
  kindOf.set(o.id, o.kind);
}
const median = (xs: number[]) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const f = (v: number | null | undefined, d = 2) => (v === null || v === undefined ? "–" : v.toFixed(d));
const kinds = [...new Set(kindOf.values())];
const out = [
  "| kind | items | accuracy | median image share right / wrong | AUC | p | median LVLM reliance right / wrong | AUC | p |",
  "|---|---|---|---|---|---|---|---|---|",
];
for (const kind of [...kinds, "all"]) {
  const items = report.items.filter(
    (i) => i.reliance && i.correct !== null && (kind === "all" || kindOf.get(i.id) === kind),
  );
  const right = items.filter((i) => i.correct);
  const wrong = items.filter((i) => !i.correct);
  const cells = (["image_share", "lvlm"] as const).flatMap((k) => {
    const r = right.map((i) => i.reliance![k]);
    const w = wrong.map((i) => i.reliance![k]);
    const t = mannWhitneyU(r, w);
    return [`${f(median(r))} / ${f(median(w))}`, f(t?.auc), f(t?.p, 3)];
  });
  out.push(
    `| ${kind} | ${items.length} | ${((100 * right.length) / items.length).toFixed(1)} % (${wrong.length} wrong) | ${cells.join(" | ")} |`,
  );
}
process.stdout.write(`${out.join("\n")}\n`);

// Within the pairs answered right on one image and wrong on the other: which side relied more on the image?
const byPair = new Map<string, typeof report.items>();
for (const i of report.items)
  if (i.pair && i.reliance && i.correct !== null) byPair.set(i.pair, [...(byPair.get(i.pair) ?? []), i]);
let split = 0;
let wrongHigher = 0;
let ties = 0;
for (const g of byPair.values()) {
  const r = g.find((i) => i.correct);
  const w = g.find((i) => !i.correct);
  if (g.length !== 2 || !r || !w) continue;
  split++;
  const d = w.reliance!.image_share - r.reliance!.image_share;
  if (d > 0) wrongHigher++;
  else if (d === 0) ties++;
}
process.stdout.write(
  `\nPairs with one right and one wrong answer: ${split}; the wrong answer has the higher image share in ${wrongHigher}${ties ? ` (${ties} ties)` : ""}.\n`,
);
