/**
 * Relevancy and causality through the server: computed on demand as queued jobs with progress, cached in the
 * run, and served as the library's view JSON; bad requests → 4xx with a readable message.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import type { TextProcessor } from "../src/hf/tokenizer.js";
import { causalView } from "../src/interpret/views/causal-view.js";
import {
  relevancyImageMaps,
  relevancyReliance,
  relevancyText,
} from "../src/interpret/views/relevancy-panels.js";
import { templateTailLength } from "../src/interpret/views/relevancy-views.js";
import { loadTextProcessor } from "../src/models/registry.js";
import { Run } from "../src/run/run-dir.js";
import { fixtureDir } from "./fixture-utils.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";

let ts: TestServer;
let runId: string;
let G: number;

async function json(res: Response): Promise<any> {
  return JSON.parse(await res.text());
}
async function expectError(res: Response, status: number, pattern: RegExp): Promise<void> {
  const body = await json(res);
  assert.equal(res.status, status, JSON.stringify(body));
  assert.match(body.error, pattern);
}
const postJson = (url: string, body: unknown) =>
  fetch(`${ts.base}${url}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });

function tokenizer(): TextProcessor {
  const dir = fixtureDir("llava-tiny-llama");
  return loadTextProcessor(dir);
}
function promptTokens(run: Run): string[] {
  const tp = tokenizer();
  return run.manifest.input_ids.map((id) => tp.idToToken(id));
}

before(async () => {
  ts = await startTestServer();
  const res = await fetch(`${ts.base}/api/generate`, {
    method: "POST",
    body: imageForm(fixtureImage(), {
      prompt: "What color is the big square?",
      max_new_tokens: "6",
      attn_dtype: "f32",
    }),
  });
  const body = await json(res);
  runId = body.runId;
  const ev = await readJobEvents(ts.base, body.job.id);
  assert.equal(ev.at(-1)!.type, "done");
  G = ev.at(-1)!.data.tokens.length;
});
after(async () => {
  await ts.close();
  fs.rmSync(ts.dataDir, { recursive: true, force: true });
});

describe("relevancy", () => {
  test("views of an uncomputed run are 404 with a hint; bad requests are 400", async () => {
    await expectError(
      await fetch(`${ts.base}/api/runs/${runId}/relevancy/maps`),
      404,
      /no llm relevancy \(exact\) computed/,
    );
    await expectError(await fetch(`${ts.base}/api/runs/${runId}/relevancy/maps?kind=pixels`), 400, /kind/);
    await expectError(await fetch(`${ts.base}/api/runs/${runId}/relevancy/maps?mode=fast`), 400, /mode/);
    await expectError(await fetch(`${ts.base}/api/runs/${runId}/relevancy/text?token=x`), 400, /token/);
    // An index past the answer is a 400 naming the range (not "not computed yet"); in range it is a 404.
    await expectError(
      await fetch(`${ts.base}/api/runs/${runId}/relevancy/text?token=999`),
      400,
      new RegExp(`answer token 999 is out of range \\(the answer has tokens 0…${G - 1}\\)`),
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/${runId}/relevancy/text?token=${G}`),
      400,
      /out of range/,
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/${runId}/relevancy/text?token=${G - 1}`),
      404,
      /no llm relevancy \(exact\) computed/,
    );
    await expectError(await postJson(`/api/runs/${runId}/relevancy`, { mode: "fast" }), 400, /mode/);
    await expectError(
      await postJson(`/api/runs/${runId}/relevancy`, { tokens: [G] }),
      400,
      /answer token \d+ is out of range/,
    );
    await expectError(await postJson(`/api/runs/${runId}/relevancy`, { tokens: "some" }), 400, /tokens/);
    await expectError(await postJson(`/api/runs/nope/relevancy`, {}), 404, /no run/);
  });

  test("compute on demand with progress, then maps, text bars and reliance equal the library's", async () => {
    const res = await postJson(`/api/runs/${runId}/relevancy`, {
      mode: "exact",
      kind: "vit",
      tokens: [0, 1, 2, 4],
    });
    assert.equal(res.status, 202);
    const { job } = await json(res);
    const ev = await readJobEvents(ts.base, job.id);
    assert.equal(ev.at(-1)!.type, "done", JSON.stringify(ev.at(-1)));
    assert.ok(
      ev.some((e) => e.type === "progress" && e.data.stage === "backward"),
      "backward progress",
    );
    assert.deepEqual(ev.at(-1)!.data.tokens, [0, 1, 2, 4]);
    const detail = await json(await fetch(`${ts.base}/api/runs/${runId}`));
    assert.deepEqual(detail.analyses.relevancy.exact.llm, [0, 1, 2, 4]);
    assert.deepEqual(detail.analyses.relevancy.exact.vit, [0, 1, 2, 4]);
    const byToken = await json(await fetch(`${ts.base}/api/runs/${runId}/relevancy/maps?by=token`));
    assert.deepEqual(
      byToken.items.map((i: any) => i.tokens),
      [[0], [1], [2], [4]],
    );
    // Computing more tokens later merges into what is stored.
    const more = await json(
      await postJson(`/api/runs/${runId}/relevancy`, { mode: "exact", kind: "vit", tokens: "all" }),
    );
    assert.equal((await readJobEvents(ts.base, more.job.id)).at(-1)!.type, "done");
    const run = Run.open(path.join(ts.dataDir, runId));
    try {
      const pt = promptTokens(run);
      assert.deepEqual(detail.prompt_tokens, pt);
      for (const [kind, by] of [
        ["llm", "word"],
        ["llm", "token"],
        ["vit", "word"],
      ] as const) {
        const got = await json(
          await fetch(`${ts.base}/api/runs/${runId}/relevancy/maps?kind=${kind}&by=${by}`),
        );
        const raw = run.manifest.generated_ids.map((id) => tokenizer().idToToken(id));
        assert.deepEqual(
          got,
          JSON.parse(JSON.stringify(relevancyImageMaps(run, "exact", kind, by, true, raw))),
        );
        assert.ok(got.items.length > 0);
        assert.equal(got.items[0].map.length, 64);
      }
      // The question ends before the chat template's tail ("ASSISTANT:"), as the batch report counts it.
      const m = run.manifest;
      const tail = templateTailLength(
        (q) => tokenizer().encodePrompt(q, m.image_layout.token_count).inputIds,
      );
      const span = { to: m.input_ids.length - tail };
      const text = await json(await fetch(`${ts.base}/api/runs/${runId}/relevancy/text?token=1`));
      assert.deepEqual(text, JSON.parse(JSON.stringify(relevancyText(run, "exact", 1, pt, span))));
      assert.equal(text.wordsVsImage.bars.at(-1).label, "max_img");
      for (const bar of text.wordsVsImage.bars)
        assert.doesNotMatch(bar.label, /assistant/i, "the template's tail is not a question word");
      const rel = await json(await fetch(`${ts.base}/api/runs/${runId}/relevancy/reliance`));
      assert.deepEqual(rel.tokens, JSON.parse(JSON.stringify(relevancyReliance(run, "exact", pt, span))));
    } finally {
      run.close();
    }
    await expectError(
      await fetch(`${ts.base}/api/runs/${runId}/relevancy/text?token=1&mode=incremental`),
      404,
      /no llm relevancy \(incremental\)/,
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/${runId}/relevancy/maps?kind=chain`),
      404,
      /no chain relevancy/,
    );
  });
});

describe("causality", () => {
  test("bad requests", async () => {
    await expectError(
      await fetch(`${ts.base}/api/runs/${runId}/causal/2`),
      404,
      /no causal explanation computed for answer token 2/,
    );
    await expectError(await fetch(`${ts.base}/api/runs/${runId}/causal/abc`), 400, /token/);
    await expectError(
      await fetch(`${ts.base}/api/runs/${runId}/causal/999`),
      400,
      new RegExp(`answer token 999 is out of range \\(the answer has tokens 0…${G - 1}\\)`),
    );
    await expectError(await postJson(`/api/runs/${runId}/causal`, {}), 400, /token/);
    await expectError(await postJson(`/api/runs/${runId}/causal`, { token: G }), 400, /out of range/);
    await expectError(
      await postJson(`/api/runs/${runId}/causal`, { token: 0, layer: 4 }),
      400,
      /layer 4 is out of range/,
    );
  });

  test("explain a token: per-head progress, then the view equals causalView of the stored document", async () => {
    const res = await postJson(`/api/runs/${runId}/causal`, { token: 2 });
    assert.equal(res.status, 202);
    const { job } = await json(res);
    const ev = await readJobEvents(ts.base, job.id);
    assert.equal(ev.at(-1)!.type, "done", JSON.stringify(ev.at(-1)));
    assert.ok(ev.some((e) => e.type === "progress" && e.data.stage === "heads" && e.data.total === 4));
    const view = await json(await fetch(`${ts.base}/api/runs/${runId}/causal/2`));
    const run = Run.open(path.join(ts.dataDir, runId));
    try {
      const doc = JSON.parse(fs.readFileSync(path.join(ts.dataDir, runId, "causal", "2.json"), "utf8"));
      assert.deepEqual(
        view,
        JSON.parse(JSON.stringify(causalView(doc, run.manifest, run.imageTokens(), promptTokens(run)))),
      );
    } finally {
      run.close();
    }
    assert.equal(view.heads.length, 4);
    assert.equal(view.layer, 3);
    assert.ok(view.heads.some((h: any) => h.nodes.length > 1 && h.edges.length > 0));
    const detail = await json(await fetch(`${ts.base}/api/runs/${runId}`));
    assert.deepEqual(detail.analyses.causal, [2]);
  });
});
