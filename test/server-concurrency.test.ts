/**
 * Many generations at once while a client keeps polling the run list: every job ends done, and its run is
 * listed exactly once with source "generated" (the listing's reconcile never races the job's own indexing).
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, before, test } from "node:test";
import type { RunSummary } from "../src/server/run-store.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";

let ts: TestServer;
before(async () => {
  ts = await startTestServer();
});
after(async () => {
  await ts.close();
  fs.rmSync(ts.dataDir, { recursive: true, force: true });
});

test("24 concurrent generations against a polling client: all succeed, each listed once", async () => {
  const N = 24;
  let polling = true;
  let polls = 0;
  const poller = async () => {
    while (polling) {
      const res = await fetch(`${ts.base}/api/runs`);
      assert.equal(res.status, 200);
      await res.json();
      polls++;
    }
  };
  const pollers = [poller(), poller(), poller()];
  const submitted = await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const res = await fetch(`${ts.base}/api/generate`, {
        method: "POST",
        body: imageForm(fixtureImage(), { prompt: `question ${i}`, max_new_tokens: "2" }),
      });
      const body = (await res.json()) as { job: { id: string }; runId: string };
      assert.equal(res.status, 202, JSON.stringify(body));
      return { jobId: body.job.id, runId: body.runId };
    }),
  );
  const ends = await Promise.all(submitted.map((s) => readJobEvents(ts.base, s.jobId)));
  polling = false;
  await Promise.all(pollers);
  assert.ok(polls > N, `the client polled throughout (${polls} polls)`);
  for (const [i, ev] of ends.entries())
    assert.equal(ev.at(-1)!.type, "done", `job ${i}: ${JSON.stringify(ev.at(-1))}`);
  const { runs } = (await (await fetch(`${ts.base}/api/runs`)).json()) as { runs: RunSummary[] };
  for (const s of submitted) {
    const rows = runs.filter((r) => r.id === s.runId);
    assert.equal(rows.length, 1, `run ${s.runId} listed once`);
    assert.equal(rows[0].source, "generated");
  }
  assert.equal(new Set(submitted.map((s) => s.runId)).size, N, "distinct run ids");
});
