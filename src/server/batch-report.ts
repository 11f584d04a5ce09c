/**
 * The batch report of the data folder, for browsing in the web app: when the server's data folder is a batch's
 * runs folder (`lvlm-interpret serve --data DIR/runs` after `lvlm-interpret batch --out DIR`), DIR/report.json
 * (format "lvlm-interpret-batch/1", specified in case-study.md of the docs folder) describes its runs. Each item is joined to its run in
 * the index (an item whose run is not indexed cannot be opened) and to its pair partner, and carries how its
 * pair fared (both right, one, none).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import type { BatchItemView, BatchView } from "../contracts/http.js";
import { HttpError } from "./http-error.js";
import { zodMessage } from "./run-validate.js";

export const BATCH_REPORT_FORMAT = "lvlm-interpret-batch/1";
const MAX_REPORT_BYTES = 64 * 2 ** 20;

const num = z.number().nullable().optional();
const itemSchema = z.object({
  id: z.string(),
  pair: z.string().nullable().optional(),
  run: z.string(),
  question: z.string(),
  answer: z.string().nullable().optional(),
  expected: z.string().nullable().optional(),
  correct: z.boolean().nullable().optional(),
  reliance: z.object({ lvlm: num, image_share: num }).nullable().optional(),
  error: z.string().optional(),
});
const reportSchema = z.object({
  format: z.literal(BATCH_REPORT_FORMAT),
  created_at: z.string().optional(),
  complete: z.boolean().optional(),
  items: z.array(itemSchema).max(1_000_000),
  aggregates: z
    .object({
      accuracy: num,
      pairs: z
        .object({ n: z.number(), both: z.number(), one: z.number(), none: z.number() })
        .nullable()
        .optional(),
    })
    .passthrough()
    .optional(),
});

export type { BatchItemView, BatchView };

/** Where the report of a data folder's batch is: beside the runs folder. */
export function batchReportPath(dataDir: string): string {
  return path.join(path.dirname(dataDir), "report.json");
}

/** Reads and joins the batch report; 404 when the data folder is no batch's runs folder, 422 when unreadable. */
export function readBatchView(dataDir: string, isIndexed: (id: string) => boolean): BatchView {
  const file = batchReportPath(dataDir);
  let text: string;
  try {
    const st = fs.lstatSync(file);
    if (!st.isFile()) throw new HttpError(422, "report.json beside the data folder is not a plain file");
    if (st.size > MAX_REPORT_BYTES) throw new HttpError(422, "report.json is larger than 64 MiB");
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if (e instanceof HttpError) throw e;
    throw new HttpError(
      404,
      "no batch report: serve a batch's runs folder (lvlm-interpret serve --data DIR/runs) to browse DIR/report.json",
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new HttpError(422, `report.json is not JSON (${(e as Error).message.split("\n")[0]})`);
  }
  const r = reportSchema.safeParse(json);
  if (!r.success) throw new HttpError(422, `report.json: ${zodMessage(r.error)}`);
  const report = r.data;
  const runOf = (run: string): string | null => {
    const id = path.posix.basename(run);
    return run === `runs/${id}` && isIndexed(id) ? id : null;
  };
  const byPair = new Map<string, (typeof report.items)[number][]>();
  for (const it of report.items) if (it.pair) byPair.set(it.pair, [...(byPair.get(it.pair) ?? []), it]);
  const items = report.items.map((it): BatchItemView => {
    const mates = it.pair ? (byPair.get(it.pair) ?? []) : [];
    const other = mates.length === 2 ? mates.find((m) => m !== it) : undefined;
    let pairResult: BatchItemView["pair_result"] = null;
    if (mates.length === 2 && mates.every((m) => typeof m.correct === "boolean")) {
      const right = mates.filter((m) => m.correct).length;
      pairResult = right === 2 ? "both" : right === 1 ? "one" : "none";
    }
    return {
      id: it.id,
      pair: it.pair ?? null,
      question: it.question,
      answer: it.answer ?? null,
      expected: it.expected ?? null,
      correct: it.correct ?? null,
      lvlm: it.reliance?.lvlm ?? null,
      image_share: it.reliance?.image_share ?? null,
      error: it.error ?? null,
      run_id: runOf(it.run),
      pair_run_id: other ? runOf(other.run) : null,
      pair_result: pairResult,
    };
  });
  return {
    name: path.basename(path.dirname(dataDir)),
    created_at: report.created_at ?? null,
    complete: report.complete ?? false,
    accuracy: report.aggregates?.accuracy ?? null,
    pairs: report.aggregates?.pairs ?? null,
    items,
  };
}
