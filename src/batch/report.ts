/** The batch report (schema: docs/case-study.md, section "report.json"): per-item records and aggregates. */
import * as fs from "node:fs";
import * as path from "node:path";
import type { WeightFormat } from "../contracts/lists.js";
import type { ItemScores } from "./item-scores.js";
import { type MannWhitney, mannWhitneyU } from "./rank-test.js";

export const BATCH_REPORT_FORMAT = "lvlm-interpret-batch/1";

export interface ItemRecord {
  id: string;
  index: number;
  pair: string | null;
  run: string;
  image: string;
  question: string;
  options: string[] | null;
  answer: string | null;
  expected: string | null;
  correct: boolean | null;
  match: "text" | "letter" | null;
  reliance: ItemScores["reliance"] | null;
  top_words: ItemScores["top_words"];
  pointing: ItemScores["pointing"];
  seconds: number;
  error?: string;
}

export interface GroupStats {
  n: number;
  mean: number | null;
  median: number | null;
}

export interface RelianceComparison {
  right: GroupStats;
  wrong: GroupStats;
  test: MannWhitney | null;
}

export interface Aggregates {
  items: number;
  done: number;
  failed: number;
  with_expected: number;
  correct: number;
  accuracy: number | null;
  pairs: { n: number; both: number; one: number; none: number; accuracy: number | null };
  reliance: { lvlm: RelianceComparison; image_share: RelianceComparison };
  pointing: { n: number; mean: number } | null;
  seconds_per_item: number | null;
}

export interface BatchReport {
  format: string;
  created_at: string;
  complete: boolean;
  dataset: { path: string; kind: "jsonl" | "mmvp"; items: number };
  /** weights: as loaded (`--weights`), "stored" or "int8". */
  model: { dir: string; model_type: string; weights: WeightFormat };
  settings: {
    relevancy: string;
    vision: string[];
    causal: boolean;
    limit: number | null;
    max_new_tokens: number;
  };
  items: ItemRecord[];
  aggregates: Aggregates;
  plots: string[];
}

function stats(xs: number[]): GroupStats {
  if (xs.length === 0) return { n: 0, mean: null, median: null };
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return {
    n: xs.length,
    mean: xs.reduce((a, b) => a + b, 0) / xs.length,
    median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2,
  };
}

function compare(items: ItemRecord[], key: "lvlm" | "image_share"): RelianceComparison {
  const right: number[] = [];
  const wrong: number[] = [];
  for (const it of items) {
    if (it.correct === null || !it.reliance) continue;
    (it.correct ? right : wrong).push(it.reliance[key]);
  }
  return { right: stats(right), wrong: stats(wrong), test: mannWhitneyU(right, wrong) };
}

export function aggregate(items: ItemRecord[], total: number): Aggregates {
  const done = items.filter((i) => !i.error);
  const judged = done.filter((i) => i.correct !== null);
  const correct = judged.filter((i) => i.correct).length;
  const byPair = new Map<string, ItemRecord[]>();
  for (const it of judged) {
    if (it.pair === null) continue;
    byPair.set(it.pair, [...(byPair.get(it.pair) ?? []), it]);
  }
  const pairs = { n: 0, both: 0, one: 0, none: 0, accuracy: null as number | null };
  for (const group of byPair.values()) {
    if (group.length < 2) continue; // a pair counts once both of its items are answered
    pairs.n++;
    const right = group.filter((i) => i.correct).length;
    if (right === group.length) pairs.both++;
    else if (right === 0) pairs.none++;
    else pairs.one++;
  }
  pairs.accuracy = pairs.n > 0 ? pairs.both / pairs.n : null;
  const hits = done.filter((i) => i.pointing).map((i) => i.pointing!.hit);
  const secs = done.map((i) => i.seconds);
  return {
    items: total,
    done: done.length,
    failed: items.length - done.length,
    with_expected: judged.length,
    correct,
    accuracy: judged.length > 0 ? correct / judged.length : null,
    pairs,
    reliance: { lvlm: compare(done, "lvlm"), image_share: compare(done, "image_share") },
    pointing:
      hits.length > 0 ? { n: hits.length, mean: hits.reduce((a, b) => a + b, 0) / hits.length } : null,
    seconds_per_item: secs.length > 0 ? secs.reduce((a, b) => a + b, 0) / secs.length : null,
  };
}

/** Write-then-rename, so a reader (the app, a second run) never sees half a file. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

export function writeReportJson(dir: string, report: BatchReport): void {
  writeFileAtomic(path.join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
}

const f = (v: number | null | undefined, d = 3) => (v === null || v === undefined ? "–" : v.toFixed(d));
const pct = (v: number | null) => (v === null ? "–" : `${(100 * v).toFixed(1)} %`);

export function reportMarkdown(r: BatchReport): string {
  const a = r.aggregates;
  const lines = [
    "# Batch report",
    "",
    `Dataset \`${r.dataset.path}\` (${r.dataset.kind}, ${r.dataset.items} items), model \`${r.model.dir}\`, relevancy ${r.settings.relevancy}.`,
    "",
    `* Items answered: ${a.done} of ${a.items}${a.failed ? `, ${a.failed} failed` : ""}`,
    `* Accuracy: ${a.correct}/${a.with_expected} = ${pct(a.accuracy)}`,
    `* Pairs (${a.pairs.n}): both right ${a.pairs.both}, one ${a.pairs.one}, none ${a.pairs.none} (pair accuracy ${pct(a.pairs.accuracy)})`,
    a.pointing
      ? `* Pointing game (first answer token, LLM relevancy): ${f(a.pointing.mean)} over ${a.pointing.n} boxes`
      : "",
    `* Time: ${f(a.seconds_per_item, 2)} s per item (trace + relevancy)`,
    "",
    "## Reliance on the image, right vs wrong answers",
    "",
    "| score | right n | right median | wrong n | wrong median | AUC (right > wrong) | Mann–Whitney p |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const [name, c] of [
    ["LVLM-Interpret reliance", a.reliance.lvlm],
    ["image share of relevancy", a.reliance.image_share],
  ] as const) {
    lines.push(
      `| ${name} | ${c.right.n} | ${f(c.right.median)} | ${c.wrong.n} | ${f(c.wrong.median)} | ${f(c.test?.auc)} | ${f(c.test?.p, 4)} |`,
    );
  }
  lines.push("");
  for (const p of r.plots) lines.push(`![${path.basename(p, ".png")}](${p})`, "");
  const wrong = r.items.filter((i) => i.correct === false);
  if (wrong.length > 0) {
    lines.push(
      "## Wrong answers",
      "",
      "| id | question | answer | expected | reliance | image share |",
      "|---|---|---|---|---|---|",
    );
    for (const i of wrong)
      lines.push(
        `| [${i.id}](${i.run}) | ${i.question.replace(/\|/g, "\\|")} | ${i.answer ?? ""} | ${i.expected ?? ""} | ${f(i.reliance?.lvlm, 2)} | ${f(i.reliance?.image_share, 2)} |`,
      );
    lines.push("");
  }
  return `${lines.filter((l, k) => l !== "" || lines[k - 1] !== "").join("\n")}\n`;
}
