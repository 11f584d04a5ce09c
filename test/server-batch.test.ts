/**
 * GET /api/batch: the report of the batch whose runs folder the server serves (DIR/report.json beside
 * DIR/runs), its items joined to the indexed runs and their pair partners, with each pair's result; a data
 * folder without a report is a 404 with a hint, a broken report a 422 with one line.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { tempDir } from "./fixture-utils.js";
import { startTestServer, type TestServer } from "./server-utils.js";
import { writeSyntheticRun } from "./synthetic-run.js";

let ts: TestServer;
const batchDir = tempDir("batch");
const report = path.join(batchDir, "report.json");

const item = (id: string, pair: string | null, correct: boolean | null, share: number | null) => ({
  id,
  index: 0,
  pair,
  run: `runs/${id}`,
  image: `images/${id}.png`,
  question: `question of ${id}`,
  options: null,
  answer: "red",
  expected: correct === null ? null : "red",
  correct,
  match: correct === null ? null : "text",
  reliance: share === null ? null : { token: 0, lvlm: 0.5, lvlm_mean: 0.5, image_share: share },
});

async function get(): Promise<{ status: number; body: any }> {
  const res = await fetch(`${ts.base}/api/batch`);
  return { status: res.status, body: JSON.parse(await res.text()) };
}

describe("GET /api/batch", () => {
  before(async () => {
    const runs = path.join(batchDir, "runs");
    for (const id of ["p1-a", "p1-b", "p2-a", "p2-b"])
      writeSyntheticRun(path.join(runs, id), {
        T: 8,
        G: 2,
        layers: 1,
        heads: 1,
        imageStart: 2,
        grid: [2, 2],
        value: () => 0.1,
      });
    ts = await startTestServer({ dataDir: runs });
  });
  after(async () => {
    await ts?.close();
    fs.rmSync(batchDir, { recursive: true, force: true });
  });

  test("no report beside the data folder: 404 with what to do", async () => {
    const r = await get();
    assert.equal(r.status, 404);
    assert.match(r.body.error, /serve a batch's runs folder .*--data DIR\/runs/);
  });

  test("broken reports: 422 with one line, no host path", async () => {
    fs.writeFileSync(report, "{");
    let r = await get();
    assert.equal(r.status, 422);
    assert.match(r.body.error, /report\.json is not JSON/);
    fs.writeFileSync(report, JSON.stringify({ format: "other/1", items: [] }));
    r = await get();
    assert.equal(r.status, 422);
    assert.match(r.body.error, /^report\.json: .*format/);
    assert.ok(!r.body.error.includes(batchDir));
  });

  test("items joined to their runs and pair partners, with the pair's result", async () => {
    fs.writeFileSync(
      report,
      JSON.stringify({
        format: "lvlm-interpret-batch/1",
        created_at: "2026-12-03T10:40:00.000Z",
        complete: true,
        items: [
          item("p1-a", "p1", true, 0.7),
          item("p1-b", "p1", false, 0.2),
          item("p2-a", "p2", true, 0.6),
          item("p2-b", "p2", true, null),
          { ...item("p3.x", null, null, null), answer: null, error: "the image is missing" },
        ],
        aggregates: { accuracy: 0.75, pairs: { n: 2, both: 1, one: 1, none: 0, accuracy: 0.5 } },
      }),
    );
    const r = await get();
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.name, path.basename(batchDir));
    assert.equal(r.body.accuracy, 0.75);
    assert.deepEqual(r.body.pairs, { n: 2, both: 1, one: 1, none: 0 });
    const by = Object.fromEntries(r.body.items.map((i: any) => [i.id, i]));
    assert.deepEqual(
      [by["p1-a"].run_id, by["p1-a"].pair_run_id, by["p1-a"].pair_result, by["p1-a"].image_share],
      ["p1-a", "p1-b", "one", 0.7],
    );
    assert.deepEqual([by["p1-b"].pair_run_id, by["p1-b"].correct], ["p1-a", false]);
    assert.equal(by["p2-b"].pair_result, "both");
    assert.equal(by["p2-b"].image_share, null);
    // Not indexed (a dot is no run id): listed, not openable.
    assert.deepEqual(
      [by["p3.x"].run_id, by["p3.x"].pair_result, by["p3.x"].error],
      [null, null, "the image is missing"],
    );
  });
});
