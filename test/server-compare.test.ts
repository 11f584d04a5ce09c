/**
 * GET /api/compare: two runs' answer token side by side — the library's compareRuns through the server (same
 * picture → a difference map; the same picture in another image mode, or another picture → the reason instead),
 * and bad requests as 4xx with one readable line.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { scoreRun } from "../src/batch/item-scores.js";
import { compareRuns } from "../src/interpret/views/compare-view.js";
import { templateTailLength } from "../src/interpret/views/relevancy-views.js";
import { loadTextProcessor } from "../src/models/registry.js";
import { Run } from "../src/run/run-dir.js";
import { fixtureDir } from "./fixture-utils.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";
import { writeSyntheticRun } from "./synthetic-run.js";

let ts: TestServer;

async function json(res: Response): Promise<any> {
  return JSON.parse(await res.text());
}
async function expectError(url: string, status: number, pattern: RegExp): Promise<void> {
  const res = await fetch(`${ts.base}${url}`);
  const body = await json(res);
  assert.equal(res.status, status, `${url}: ${JSON.stringify(body)}`);
  assert.match(body.error, pattern);
  assert.ok(!body.error.includes(ts.dataDir), `no host path in ${body.error}`);
  assert.ok(!body.error.includes("\n"), "one line");
}

/** A generated run with `max_new_tokens` 4 and its exact LLM relevancy for every token (unless `relevancy` is false). */
async function makeRun(prompt: string, imageMode: string, relevancy = true): Promise<string> {
  const res = await fetch(`${ts.base}/api/generate`, {
    method: "POST",
    body: imageForm(fixtureImage(), { prompt, max_new_tokens: "4", image_mode: imageMode }),
  });
  const body = await json(res);
  assert.equal((await readJobEvents(ts.base, body.job.id)).at(-1)!.type, "done");
  if (relevancy) {
    const r = await json(
      await fetch(`${ts.base}/api/runs/${body.runId}/relevancy`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ mode: "exact", tokens: "all" }),
      }),
    );
    assert.equal((await readJobEvents(ts.base, r.job.id)).at(-1)!.type, "done");
  }
  return body.runId;
}

/** The library's view of two runs in the data folder (what the endpoint must return). */
function libraryView(a: string, b: string, token: number) {
  const tp = loadTextProcessor(fixtureDir("llava-tiny-llama"));
  const open = (id: string) => {
    const dir = path.join(ts.dataDir, id);
    const run = Run.open(dir);
    const m = run.manifest;
    return {
      id,
      run,
      promptTokens: m.input_ids.map((i) => tp.idToToken(i)),
      questionEnd:
        m.input_ids.length -
        templateTailLength((q) => tp.encodePrompt(q, m.image_layout.token_count).inputIds),
      imageDigest: createHash("sha256")
        .update(fs.readFileSync(path.join(dir, run.manifest.original_image_file)))
        .digest("hex"),
    };
  };
  const sa = open(a);
  const sb = open(b);
  try {
    return JSON.parse(JSON.stringify(compareRuns(sa, sb, "exact", token)));
  } finally {
    sa.run.close();
    sb.run.close();
  }
}

describe("GET /api/compare", () => {
  let a: string;
  let b: string;
  let padded: string;
  let bare: string;

  before(async () => {
    ts = await startTestServer();
    a = await makeRun("What color is the big square?", "default");
    b = await makeRun("What shape is in the corner?", "default");
    padded = await makeRun("What color is the big square?", "pad");
    bare = await makeRun("Is there a circle?", "default", false);
  });
  after(async () => {
    await ts?.close();
    if (ts) fs.rmSync(ts.dataDir, { recursive: true, force: true });
  });

  test("same picture, two questions: both maps, shares, reliance and their difference equal the library's", async () => {
    for (const token of [0, 2]) {
      const res = await fetch(`${ts.base}/api/compare?a=${a}&b=${b}&mode=exact&token=${token}`);
      const body = await json(res);
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.deepEqual(body, libraryView(a, b, token));
      assert.equal(body.sameImage, true);
      assert.equal(body.sameQuestion, false);
      assert.equal(body.differenceReason, null);
      assert.equal(body.difference.map.length, body.a.map.length);
      const sum = body.a.map.reduce((s: number, v: number | null) => s + (v ?? 0), 0);
      assert.ok(Math.abs(sum - 1) < 1e-5, `map A is shares (sum ${sum})`);
      assert.ok(body.a.share.imageShare >= 0 && body.a.share.imageShare <= 1);
      assert.equal(body.a.token, token);
      assert.equal(body.b.tokenText, body.b.tokens[token]);
    }
  });

  test("the compare view's image share is the batch report's (one definition: the question ends before the template's tail)", async () => {
    const tp = loadTextProcessor(fixtureDir("llava-tiny-llama"));
    for (const token of [0, 1]) {
      const body = await json(await fetch(`${ts.base}/api/compare?a=${a}&b=${b}&mode=exact&token=${token}`));
      for (const [side, id] of [
        ["a", a],
        ["b", b],
      ] as const) {
        const run = Run.open(path.join(ts.dataDir, id));
        try {
          const m = run.manifest;
          const tail = templateTailLength((q) => tp.encodePrompt(q, m.image_layout.token_count).inputIds);
          assert.ok(tail > 0, "the template puts tokens after the question");
          const promptTokens = m.input_ids.map((i) => tp.idToToken(i));
          const scores = scoreRun(run, "exact", promptTokens, [token], null, {
            to: m.input_ids.length - tail,
          });
          assert.equal(body[side].share.imageShare, scores.reliance.image_share, `${side} token ${token}`);
          assert.equal(
            body[side].reliance,
            scores.reliance.lvlm,
            `${side} token ${token}: LVLM-Interpret's reliance`,
          );
        } finally {
          run.close();
        }
      }
    }
  });

  test("same question, the picture through another image mode: no difference, and why", async () => {
    const body = await json(await fetch(`${ts.base}/api/compare?a=${a}&b=${padded}&token=1`));
    assert.equal(body.sameImage, true);
    assert.equal(body.sameQuestion, true);
    assert.equal(body.difference, null);
    assert.match(body.differenceReason, /same image mode/);
    assert.deepEqual(body, libraryView(a, padded, 1));
  });

  test("bad requests: 4xx with a readable line", async () => {
    await expectError(`/api/compare?b=${b}`, 400, /^query: .*a/);
    await expectError(`/api/compare?a=${a}&b=${a}`, 400, /same run/);
    await expectError(`/api/compare?a=${a}&b=nope`, 404, /no run with id "nope"/);
    await expectError(`/api/compare?a=${a}&b=..%2Fx`, 400, /invalid run id/);
    await expectError(`/api/compare?a=${a}&b=${b}&token=4`, 400, /token 4 is out of range for run A .*0…3/);
    await expectError(`/api/compare?a=${a}&b=${b}&token=-1`, 400, /query: token/);
    await expectError(`/api/compare?a=${a}&b=${b}&mode=fast`, 400, /query: mode/);
    await expectError(
      `/api/compare?a=${a}&b=${bare}&token=0`,
      404,
      /run B .*not computed yet; compute it first/,
    );
    await expectError(
      `/api/compare?a=${a}&b=${b}&mode=incremental`,
      404,
      /run A .*incremental.*not computed/,
    );
  });

  test("runs of different models are refused (409)", async () => {
    writeSyntheticRun(path.join(ts.dataDir, "other-model"), {
      T: 8,
      G: 2,
      layers: 1,
      heads: 1,
      imageStart: 2,
      grid: [2, 2],
      value: () => 0.1,
    });
    await fetch(`${ts.base}/api/runs`); // indexes the folder
    await expectError(`/api/compare?a=${a}&b=other-model&token=0`, 409, /different models/);
  });
});
