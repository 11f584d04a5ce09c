/**
 * Summarises the faithfulness checks stored in a folder of runs (e.g. a batch's DIR/runs after
 * `lvlm-interpret check` on each): per map, the mean deletion and insertion AUCs against the random baseline
 * and how often the map beats random, as a Markdown table on stdout.
 *
 *   node dist/scripts/faithfulness-summary.js DIR/runs [token]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { type FaithfulnessResult, readFaithfulness } from "../src/interpret/faithfulness/index.js";
import { parseMapSpec } from "../src/interpret/faithfulness/maps.js";

const [dir, tokenArg = "0"] = process.argv.slice(2);
if (!dir) throw new Error("usage: faithfulness-summary.js RUNS_DIR [token]");
const token = Number(tokenArg);
const byMap = new Map<string, FaithfulnessResult[]>();
for (const run of fs.readdirSync(dir).sort()) {
  const folder = path.join(dir, run, "faithfulness");
  if (!fs.existsSync(folder)) continue;
  for (const f of fs.readdirSync(folder)) {
    const m = /^(\d+)\.(.+)\.json$/.exec(f);
    if (!m || Number(m[1]) !== token) continue;
    const spec = parseMapSpec(m[2].replaceAll("-", ":"));
    const r = readFaithfulness(path.join(dir, run), token, spec);
    if (r) byMap.set(r.map, [...(byMap.get(r.map) ?? []), r]);
  }
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (x: number) => `${(100 * x).toFixed(0)} %`;
const lines = [
  `| map | runs | deletion AUC (random) | deletion below random | insertion AUC (random) | insertion above random |`,
  `|---|---|---|---|---|---|`,
];
for (const [map, rs] of [...byMap].sort()) {
  const d = mean(rs.map((r) => r.curves.deletion_auc));
  const dr = mean(rs.map((r) => r.random.deletion_auc));
  const i = mean(rs.map((r) => r.curves.insertion_auc));
  const ir = mean(rs.map((r) => r.random.insertion_auc));
  const dBelow = rs.filter((r) => r.curves.deletion_auc < r.random.deletion_auc).length / rs.length;
  const iAbove = rs.filter((r) => r.curves.insertion_auc > r.random.insertion_auc).length / rs.length;
  lines.push(
    `| \`${map}\` | ${rs.length} | ${d.toFixed(3)} (${dr.toFixed(3)}) | ${pct(dBelow)} | ${i.toFixed(3)} (${ir.toFixed(3)}) | ${pct(iAbove)} |`,
  );
}
process.stdout.write(`${lines.join("\n")}\n`);
