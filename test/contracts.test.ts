/**
 * The HTTP contracts (src/contracts/http.ts) against the server: every registered route has a contract, and
 * every JSON route — driven over a tiny generated run with its analyses — answers exactly its schema (with
 * its success status; nothing missing, nothing extra), as do the job events and error answers.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import type { z } from "zod";
import { PROJECT_ROOT } from "../src/cli/default-model.js";
import {
  BYTE_ROUTES,
  errorResponse,
  type JobEventType,
  JSON_ROUTES,
  jobEventData,
} from "../src/contracts/http.js";
import { BATCH_REPORT_FORMAT } from "../src/server/batch-report.js";
import { tempDir } from "./fixture-utils.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";

type RouteKey = keyof typeof JSON_ROUTES;

/**
 * The value as the schema reads it, which must be the value itself: a missing or mistyped field fails the
 * parse, an extra field (one the schema strips, so the web app's type does not know it) fails the comparison.
 */
function conforms(schema: z.ZodType, value: unknown, what: string): void {
  const r = schema.safeParse(value);
  if (!r.success) assert.fail(`${what}: ${r.error.issues[0].path.join(".")}: ${r.error.issues[0].message}`);
  assert.deepStrictEqual(r.data, value, `${what}: fields the contract does not name`);
}

const batchDir = tempDir("contracts");
const dataDir = path.join(batchDir, "runs");
let ts: TestServer;
const checked = new Set<RouteKey>();

/** Calls a route and checks its answer against the route's contract; returns the answer. */
async function call<K extends RouteKey>(
  key: K,
  url: string,
  init?: RequestInit,
): Promise<z.infer<(typeof JSON_ROUTES)[K]["response"]>> {
  const res = await fetch(`${ts.base}${url}`, init);
  const body = JSON.parse(await res.text());
  const { status, response } = JSON_ROUTES[key];
  assert.equal(res.status, status, `${key} (${url}): ${JSON.stringify(body).slice(0, 300)}`);
  conforms(response, body, `${key} (${url})`);
  checked.add(key);
  return body;
}
const postJson = (body: unknown): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

/** Follows a job to its end, checking every event's data against its type's contract. */
async function finish(jobId: string): Promise<void> {
  const events = await readJobEvents(ts.base, jobId);
  assert.ok(events.length > 0, "events");
  for (const e of events) {
    assert.ok(Object.hasOwn(jobEventData, e.type), `unknown event type ${e.type}`);
    conforms(jobEventData[e.type as JobEventType], e.data, `job event ${e.type}`);
  }
  assert.equal(events.at(-1)!.type, "done", JSON.stringify(events.at(-1)));
}

async function generate(prompt: string): Promise<string> {
  const body = await call("POST /api/generate", "/api/generate", {
    method: "POST",
    body: imageForm(fixtureImage(), { prompt, max_new_tokens: "3", attn_dtype: "f32" }),
  });
  await finish(body.job.id);
  return body.runId;
}

before(async () => {
  fs.mkdirSync(dataDir, { recursive: true });
  ts = await startTestServer({ dataDir });
});
after(async () => {
  await ts?.close();
  fs.rmSync(batchDir, { recursive: true, force: true });
});

describe("HTTP contracts", () => {
  test("every registered route has a contract, and every contract a route", () => {
    const served = new Set(
      ts.server.routes
        .filter((r) => r.url.startsWith("/api/") && r.method !== "HEAD")
        .map((r) => `${r.method} ${r.url}`),
    );
    const contracted = new Set<string>([...Object.keys(JSON_ROUTES), ...BYTE_ROUTES]);
    assert.deepEqual(
      [...served].filter((r) => !contracted.has(r)),
      [],
      "routes without a contract in src/contracts/http.ts",
    );
    assert.deepEqual(
      [...contracted].filter((r) => !served.has(r)),
      [],
      "contracts of routes the server does not have",
    );
  });

  test("every JSON route answers its schema over a generated run and its analyses", async () => {
    await call("GET /api/health", "/api/health");
    await call("GET /api/config", "/api/config");
    const a = await generate("What color is the big square?");
    const b = await generate("What is in the picture?");
    const runs = await call("GET /api/runs", "/api/runs");
    assert.deepEqual(runs.runs.map((r: { id: string }) => r.id).sort(), [a, b].sort());
    const detail = await call("GET /api/runs/:id", `/api/runs/${a}`);
    assert.equal(detail.id, a);

    await call("GET /api/runs/:id/attention/summary", `/api/runs/${a}/attention/summary`);
    await call("GET /api/runs/:id/attention/heads", `/api/runs/${a}/attention/heads?layer=0&tokens=0,1`);
    await call(
      "POST /api/runs/:id/attention/patches",
      `/api/runs/${a}/attention/patches`,
      postJson({ layer: 0, patches: [0, 1, 2] }),
    );

    for (const [run, kind] of [
      [a, "llm"],
      [a, "vit"],
      [b, "llm"],
    ]) {
      const { job } = await call(
        "POST /api/runs/:id/relevancy",
        `/api/runs/${run}/relevancy`,
        postJson({ mode: "exact", kind, tokens: "all" }),
      );
      await finish(job.id);
    }
    for (const q of ["kind=llm&by=word", "kind=vit&by=token", "kind=llm&normalized=false"])
      await call("GET /api/runs/:id/relevancy/maps", `/api/runs/${a}/relevancy/maps?${q}`);
    await call("GET /api/runs/:id/relevancy/text", `/api/runs/${a}/relevancy/text?token=0`);
    await call("GET /api/runs/:id/relevancy/reliance", `/api/runs/${a}/relevancy/reliance`);

    const { job: causalJob } = await call(
      "POST /api/runs/:id/causal",
      `/api/runs/${a}/causal`,
      postJson({ token: 0 }),
    );
    await finish(causalJob.id);
    await call("GET /api/runs/:id/causal/:token", `/api/runs/${a}/causal/0`);
    const { job: faithJob } = await call(
      "POST /api/runs/:id/faithfulness",
      `/api/runs/${a}/faithfulness`,
      postJson({ token: 0, map: "rel:exact:llm", steps: 2, seeds: 1 }),
    );
    await finish(faithJob.id);
    const faith = await call(
      "GET /api/runs/:id/faithfulness",
      `/api/runs/${a}/faithfulness?token=0&map=rel:exact:llm`,
    );
    assert.deepEqual(faith.fractions, [0, 0.5, 1]);
    // The detail again, now listing the analyses.
    const analysed = await call("GET /api/runs/:id", `/api/runs/${a}`);
    assert.deepEqual(analysed.analyses.causal, [0]);

    const cmp = await call("GET /api/compare", `/api/compare?a=${a}&b=${b}&token=0`);
    assert.notEqual(cmp.difference, null, "same picture, same layout: a difference map");

    fs.writeFileSync(
      path.join(batchDir, "report.json"),
      JSON.stringify({
        format: BATCH_REPORT_FORMAT,
        created_at: "2026-01-01T00:00:00Z",
        complete: true,
        items: [
          { id: "x-a", pair: "x", run: `runs/${a}`, question: "q a", answer: "red", correct: true },
          {
            id: "x-b",
            pair: "x",
            run: `runs/${b}`,
            question: "q b",
            correct: false,
            reliance: { lvlm: 0.5, image_share: 0.25 },
          },
          { id: "y", run: "runs/missing", question: "q y", error: "failed" },
        ],
        aggregates: { accuracy: 0.5, pairs: { n: 1, both: 0, one: 1, none: 0 } },
      }),
    );
    const batch = await call("GET /api/batch", "/api/batch");
    assert.equal(batch.items[0].pair_result, "one");

    const jobs = await call("GET /api/jobs", "/api/jobs");
    const done = jobs.jobs[0].id;
    await call("GET /api/jobs/:id", `/api/jobs/${done}`);
    const cancel = await call("POST /api/jobs/:id/cancel", `/api/jobs/${done}/cancel`, { method: "POST" });
    assert.equal(cancel.cancelled, false);
    await call("DELETE /api/jobs/:id", `/api/jobs/${done}`, { method: "DELETE" });

    const archive = await fetch(`${ts.base}/api/runs/${b}/export`);
    assert.equal(archive.status, 200);
    const imported = await call("POST /api/import", "/api/import", {
      method: "POST",
      headers: { "content-type": "application/gzip" },
      body: new Uint8Array(await archive.arrayBuffer()),
    });
    await call("DELETE /api/runs/:id", `/api/runs/${imported.run.id}`, { method: "DELETE" });

    assert.deepEqual(
      Object.keys(JSON_ROUTES).filter((k) => !checked.has(k as RouteKey)),
      [],
      "JSON routes this test did not check",
    );
  });

  test("error answers are one { error } line", async () => {
    for (const [url, init, status] of [
      ["/api/runs/nope", undefined, 404],
      ["/api/runs/x/relevancy", postJson({ mode: "fast" }), 400],
      ["/api/nothing", undefined, 404],
      ["/api/compare?a=x&b=x", undefined, 400],
    ] as const) {
      const res = await fetch(`${ts.base}${url}`, init);
      assert.equal(res.status, status, url);
      conforms(errorResponse, JSON.parse(await res.text()), `error of ${url}`);
    }
  });

  test("web/src/api.ts takes every payload type from the contracts, type-only", () => {
    const api = fs.readFileSync(path.join(PROJECT_ROOT, "web/src/api.ts"), "utf8");
    // Value imports of the contracts would bundle zod (and server code) into the web app.
    const contractImports = [
      ...api.matchAll(/^import (type )?[^;]*? from "([^"]*src\/contracts\/[^"]*)";/gms),
    ];
    assert.ok(contractImports.length > 0, "api.ts imports the contracts");
    for (const m of contractImports) assert.ok(m[1], `import from ${m[2]} must be "import type"`);
    // No shape written again by hand: the only interface is the event handlers', every alias names a contract type.
    assert.deepEqual(
      [...api.matchAll(/^(?:export )?interface (\w+)/gm)].map((m) => m[1]),
      ["JobHandlers"],
      "interfaces in api.ts",
    );
    for (const m of api.matchAll(/^(?:export )?type (\w+)(?:<[^>]*>)? = ([^;]*);/gms))
      assert.match(m[2], /^\w+$/, `type ${m[1]} in api.ts is written by hand; import it from src/contracts`);
  });
});
