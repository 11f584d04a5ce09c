/**
 * Every registered route (enumerated from the server, so new routes are covered) gets bodies it does not
 * expect: wrong content types, a gzip body, a gzip-encoded body, multipart without a boundary or cut short, an
 * empty body, invalid JSON, JSON of the wrong type, a `__proto__` key. Each answer is a 4xx with a one-line JSON
 * message that leaks no host path (GETs, which ignore bodies, may succeed) — never a 5xx — and nothing is
 * queued or deleted by any of it.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import { after, before, test } from "node:test";
import * as zlib from "node:zlib";
import { ROOT } from "./fixture-utils.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";

let ts: TestServer;
let runId: string;
let jobId: string;

before(async () => {
  ts = await startTestServer();
  const res = await fetch(`${ts.base}/api/generate`, {
    method: "POST",
    body: imageForm(fixtureImage(), { prompt: "what is it?", max_new_tokens: "3" }),
  });
  const body = (await res.json()) as { job: { id: string }; runId: string };
  assert.equal(res.status, 202);
  ({ runId } = body);
  jobId = body.job.id;
  assert.equal((await readJobEvents(ts.base, jobId)).at(-1)!.type, "done");
});
after(async () => {
  await ts.close();
  fs.rmSync(ts.dataDir, { recursive: true, force: true });
});

interface Variant {
  name: string;
  headers: Record<string, string>;
  body: string | Buffer;
}

const gzipJson = zlib.gzipSync('{"mode":"exact","token":0}');
const VARIANTS: Variant[] = [
  { name: "text/plain", headers: { "content-type": "text/plain" }, body: "token=0" },
  { name: "xml", headers: { "content-type": "application/xml" }, body: "<token>0</token>" },
  { name: "form-urlencoded", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "a=1" },
  { name: "gzip body", headers: { "content-type": "application/gzip" }, body: gzipJson },
  {
    name: "gzip-encoded JSON",
    headers: { "content-type": "application/json", "content-encoding": "gzip" },
    body: gzipJson,
  },
  {
    name: "multipart without boundary",
    headers: { "content-type": "multipart/form-data" },
    body: '--XX\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhi\r\n--XX--\r\n',
  },
  {
    name: "truncated multipart",
    headers: { "content-type": "multipart/form-data; boundary=XX" },
    body: '--XX\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nwhat is in the ima',
  },
  {
    name: "multipart image cut short",
    headers: { "content-type": "multipart/form-data; boundary=XX" },
    body: Buffer.concat([
      Buffer.from(
        '--XX\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n',
      ),
      Buffer.from(fixtureImage()).subarray(0, 200),
    ]),
  },
  { name: "empty JSON body", headers: { "content-type": "application/json" }, body: "" },
  { name: "invalid JSON", headers: { "content-type": "application/json" }, body: '{"token": 0,' },
  { name: "JSON array", headers: { "content-type": "application/json" }, body: "[0, 1]" },
  { name: "JSON string", headers: { "content-type": "application/json" }, body: '"exact"' },
  { name: "JSON null", headers: { "content-type": "application/json" }, body: "null" },
  { name: "JSON number", headers: { "content-type": "application/json" }, body: "0" },
  {
    name: "JSON with __proto__",
    headers: { "content-type": "application/json" },
    body: '{"__proto__": {"token": 0}, "token": 0}',
  },
  { name: "no content type", headers: {}, body: "token=0" },
];

/** A request sent as is (GET and HEAD with a body too, which fetch refuses). */
function send(
  method: string,
  p: string,
  v: Variant,
): Promise<{ status: number; type: string; text: string }> {
  const u = new URL(ts.base);
  const body = typeof v.body === "string" ? Buffer.from(v.body) : v.body;
  return new Promise((resolve, reject) => {
    const r = http.request(
      {
        host: u.hostname,
        port: u.port,
        method,
        path: p,
        headers: { ...v.headers, "content-length": String(body.length) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => {
          text += c;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), text }),
        );
      },
    );
    r.on("error", reject);
    r.end(body);
  });
}

test("every route answers unexpected bodies with a 4xx and a readable message, never a 5xx", async () => {
  const routes = ts.server.routes;
  const urls = new Set(routes.map((r) => r.url));
  for (const expected of ["/api/generate", "/api/import", "/api/runs/:id/relevancy", "/api/jobs/:id/cancel"])
    assert.ok(urls.has(expected), `routes include ${expected}`);
  const jobsBefore = ((await (await fetch(`${ts.base}/api/jobs`)).json()) as { jobs: unknown[] }).jobs.length;
  const hostPaths = [ROOT, ts.dataDir, os.tmpdir()];
  const failures: string[] = [];
  let checked = 0;
  for (const { method, url } of routes) {
    const p = url
      .replace(/^\/api\/jobs\/:id/, `/api/jobs/${jobId}`)
      .replace(":id", runId)
      .replace(":token", "0");
    assert.ok(!p.includes(":") && !p.includes("*"), `${method} ${url}: every parameter is filled (${p})`);
    for (const v of VARIANTS) {
      const res = await send(method, p, v);
      checked++;
      const what = `${method} ${url} with ${v.name} → ${res.status} ${res.text.slice(0, 200)}`;
      const bodyless = method === "GET" || method === "HEAD";
      if (res.status >= 500 || (!bodyless && (res.status < 400 || res.status >= 500))) {
        failures.push(what);
        continue;
      }
      if (res.status < 400 || method === "HEAD") continue;
      let error: unknown;
      try {
        error = (JSON.parse(res.text) as { error?: unknown }).error;
      } catch {
        failures.push(`${what}: not JSON`);
        continue;
      }
      if (typeof error !== "string" || error.length === 0 || error.includes("\n"))
        failures.push(`${what}: no one-line "error" message`);
      else if (hostPaths.some((h) => error.includes(h))) failures.push(`${what}: leaks a host path`);
      else if (/internal error/.test(error)) failures.push(`${what}: internal error`);
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of ${checked} requests`);
  assert.ok(checked >= 20 * VARIANTS.length, `swept ${checked} requests`);
  // None of it queued a job or deleted the run.
  const jobsAfter = ((await (await fetch(`${ts.base}/api/jobs`)).json()) as { jobs: unknown[] }).jobs.length;
  assert.equal(jobsAfter, jobsBefore, "no job queued");
  assert.equal((await fetch(`${ts.base}/api/runs/${runId}`)).status, 200, "the run is still there");
  assert.equal((await fetch(`${ts.base}/api/jobs/${jobId}`)).status, 200, "the job is still listed");
});

test("the accurate reason for each refusal", async () => {
  const post = (p: string, v: Variant) => send("POST", p, v);
  const msg = async (p: string, v: Variant) => {
    const r = await post(p, v);
    return `${r.status} ${(JSON.parse(r.text) as { error: string }).error}`;
  };
  const rel = `/api/runs/${runId}/relevancy`;
  const byName = (n: string) => VARIANTS.find((v) => v.name === n)!;
  assert.match(await msg(rel, byName("gzip body")), /^415 unsupported content type "application\/gzip"/);
  assert.match(await msg(rel, byName("gzip-encoded JSON")), /^415 content-encoding "gzip" is not supported/);
  assert.match(await msg(rel, byName("truncated multipart")), /^415 .*multipart\/form-data.*JSON/);
  assert.match(await msg(rel, byName("JSON null")), /^400 body: .*object/);
  assert.match(await msg(rel, byName("invalid JSON")), /^400 malformed JSON body/);
  assert.match(
    await msg("/api/generate", byName("multipart without boundary")),
    /^400 malformed multipart form \(.*boundary.*\)/i,
  );
  assert.match(
    await msg("/api/generate", byName("truncated multipart")),
    /^400 malformed multipart form \(Unexpected end/,
  );
  assert.match(
    await msg("/api/generate", byName("multipart image cut short")),
    /^400 malformed multipart form/,
  );
  assert.match(
    await msg(`/api/jobs/${jobId}/cancel`, byName("JSON number")),
    /^400 POST \/api\/jobs\/:id\/cancel takes no request body/,
  );
  assert.match(await msg("/api/import", byName("JSON array")), /^415 .*application\/gzip/);
});
