/**
 * The faithfulness check through the server: queued on the model worker, stored in the run, served as the
 * library wrote it; bad or premature requests are 4xx with a message that says what to do.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, before, describe, test } from "node:test";
import { parseMapSpec, readFaithfulness } from "../src/interpret/faithfulness/index.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";

let ts: TestServer;
let runId: string;

async function expectError(res: Response, status: number, pattern: RegExp): Promise<void> {
  const body = JSON.parse(await res.text());
  assert.equal(res.status, status, JSON.stringify(body));
  assert.match(body.error, pattern);
  assert.ok(!body.error.includes(ts.dataDir), `no host path in ${body.error}`);
}
const postJson = (url: string, body: unknown) =>
  fetch(`${ts.base}${url}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

before(async () => {
  ts = await startTestServer();
  const res = await fetch(`${ts.base}/api/generate`, {
    method: "POST",
    body: imageForm(fixtureImage(), { prompt: "What color is the big square?", max_new_tokens: "3" }),
  });
  const body = JSON.parse(await res.text());
  runId = body.runId;
  const ev = await readJobEvents(ts.base, body.job.id);
  assert.equal(ev.at(-1)!.type, "done");
});
after(async () => {
  await ts.close();
  fs.rmSync(ts.dataDir, { recursive: true, force: true });
});

describe("faithfulness check in the server", () => {
  test("bad requests: 400 naming the problem; not computed: 404", async () => {
    const url = `/api/runs/${runId}/faithfulness`;
    await expectError(await postJson(url, { token: 0, map: "heat" }), 400, /map "heat": unknown map kind/);
    await expectError(await postJson(url, { token: 0 }), 400, /body: map/);
    await expectError(
      await postJson(url, { token: 99, map: "rollout" }),
      400,
      /answer token 99 is out of range/,
    );
    await expectError(await postJson(url, { token: 0, map: "attn:0:mean", steps: 0 }), 400, /steps/);
    await expectError(
      await postJson(url, { token: 0, map: "rel:exact:llm" }),
      400,
      /no llm relevancy \(exact\) computed.*lvlm-interpret relevancy/,
    );
    await expectError(await postJson(url, { token: 0, map: "attn:9:0" }), 400, /layer out of range/);
    await expectError(
      await fetch(`${ts.base}${url}?token=0&map=rollout`),
      404,
      /no faithfulness check of rollout/,
    );
    await expectError(await fetch(`${ts.base}${url}?token=0&map=attn:x:1`), 400, /layer "x"/);
  });

  test("a queued check runs on the model worker and GET serves the stored result", async () => {
    const res = await postJson(`/api/runs/${runId}/faithfulness`, {
      token: 1,
      map: "attn:1:mean",
      steps: 3,
      seeds: 1,
    });
    assert.equal(res.status, 202);
    const { job } = JSON.parse(await res.text());
    assert.equal(job.kind, "faithfulness");
    const ev = await readJobEvents(ts.base, job.id);
    const last = ev.at(-1)!;
    assert.equal(last.type, "done", JSON.stringify(last.data));
    assert.ok(ev.some((e) => e.type === "progress" && e.data.stage === "forward"));
    const got = await fetch(`${ts.base}/api/runs/${runId}/faithfulness?token=1&map=attn:1:mean`);
    assert.equal(got.status, 200);
    const body = JSON.parse(await got.text());
    const stored = readFaithfulness(ts.server.store.dir(runId), 1, parseMapSpec("attn:1:mean"));
    assert.deepEqual(body, stored);
    assert.equal(stored!.curves.deletion.length, 4);
    assert.equal(last.data.deletion_auc, stored!.curves.deletion_auc);
  });
});
