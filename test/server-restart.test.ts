/**
 * Jobs survive the server: a server in a child process with a running job and queued ones is killed with
 * SIGKILL; the next server on the same data dir reports every one of them as "interrupted" with its request
 * (jobs API, job events) until dismissed, and no half-made run appears. A graceful shutdown does the same.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { JobInfo } from "../src/server/jobs.js";
import { tempDir } from "./fixture-utils.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer } from "./server-utils.js";

const dataDir = tempDir("server-restart");
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

/** Starts test/server-child.js on the data dir; resolves with the process and its base URL. */
function startChild(): Promise<{ child: ChildProcess; base: string }> {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), "server-child.js");
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, LVLM_TEST_SERVER_DATA: dataDir },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c) => {
      out += c;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) resolve({ child, base: (JSON.parse(line) as { base: string }).base });
    });
    child.on("exit", (code) => reject(new Error(`the server child exited (${code}) before listening`)));
  });
}

async function post(
  base: string,
  url: string,
  body: FormData | object,
): Promise<{ job: JobInfo; runId?: string }> {
  const res = await fetch(`${base}${url}`, {
    method: "POST",
    ...(body instanceof FormData
      ? { body }
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
  const b = (await res.json()) as { job: JobInfo; runId?: string };
  assert.equal(res.status, 202, JSON.stringify(b));
  return b;
}

const jobsOf = async (base: string) =>
  ((await (await fetch(`${base}/api/jobs`)).json()) as { jobs: JobInfo[] }).jobs;

test("kill -9 with a running and queued jobs: the next server reports each as interrupted, with its request", async () => {
  const { child, base } = await startChild();
  let killed = false;
  try {
    const first = await post(
      base,
      "/api/generate",
      imageForm(fixtureImage(), { prompt: "done before", max_new_tokens: "3" }),
    );
    assert.equal((await readJobEvents(base, first.job.id)).at(-1)!.type, "done");
    const runId = first.runId!;
    const long = await post(
      base,
      "/api/generate",
      imageForm(fixtureImage(), { prompt: "a long answer", max_new_tokens: "1000", seed: "7" }),
    );
    const queued = await post(
      base,
      "/api/generate",
      imageForm(fixtureImage(), { prompt: "waiting its turn", max_new_tokens: "5", image_mode: "pad" }),
    );
    const rel = await post(base, `/api/runs/${runId}/relevancy`, {
      mode: "exact",
      kind: "vit",
      tokens: [0, 1],
    });
    const causal = await post(base, `/api/runs/${runId}/causal`, { token: 1 });
    await readJobEvents(base, long.job.id, (e) => e.type === "token");
    const states = new Map((await jobsOf(base)).map((j) => [j.id, j.state]));
    assert.equal(states.get(long.job.id), "running");
    for (const j of [queued, rel, causal]) assert.equal(states.get(j.job.id), "queued");

    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    killed = true;

    const ts = await startTestServer({ dataDir });
    try {
      const jobs = await jobsOf(ts.base);
      const byId = new Map(jobs.map((j) => [j.id, j]));
      assert.ok(!byId.has(first.job.id), "a finished job is not reported again");
      for (const j of [long, queued, rel, causal]) {
        const got = byId.get(j.job.id);
        assert.ok(got, `job ${j.job.id} (${j.job.kind}) is reported`);
        assert.equal(got.state, "interrupted");
        assert.equal(got.kind, j.job.kind);
        assert.equal(got.runId, j.job.runId);
      }
      assert.match(
        byId.get(long.job.id)!.error!,
        /^interrupted: the server stopped while this job was running/,
      );
      assert.match(byId.get(queued.job.id)!.error!, /^interrupted: .* waiting in the queue; it never ran/);
      assert.deepEqual(byId.get(long.job.id)!.request, {
        prompt: "a long answer",
        max_new_tokens: 1000,
        temperature: 0,
        top_p: 1,
        seed: 7,
        image_mode: "default",
        attn_dtype: "f16",
        image: { name: "image.png", bytes: fixtureImage().length },
      });
      assert.equal(byId.get(queued.job.id)!.request.image_mode, "pad");
      assert.deepEqual(byId.get(rel.job.id)!.request, { mode: "exact", kind: "vit", tokens: [0, 1] });
      assert.deepEqual(byId.get(causal.job.id)!.request, { token: 1 });
      // A client following the job (e.g. a reconnecting EventSource) learns how it ended.
      const ev = await readJobEvents(ts.base, long.job.id);
      assert.deepEqual(
        ev.map((e) => e.type),
        ["failed"],
      );
      assert.equal(ev[0].data.interrupted, true);
      // No half run: only the finished run is there.
      const runs = ((await (await fetch(`${ts.base}/api/runs`)).json()) as { runs: { id: string }[] }).runs;
      assert.deepEqual(
        runs.map((r) => r.id),
        [runId],
      );
      assert.ok(!fs.existsSync(path.join(dataDir, long.runId!)));
      // Interrupted jobs are not "busy": the run's relevancy can be asked again at once.
      const again = await post(ts.base, `/api/runs/${runId}/relevancy`, {
        mode: "exact",
        kind: "vit",
        tokens: [0, 1],
      });
      assert.equal((await readJobEvents(ts.base, again.job.id)).at(-1)!.type, "done");
      // Dismissing one removes it for good; the others stay reported after another restart.
      const del = await fetch(`${ts.base}/api/jobs/${causal.job.id}`, { method: "DELETE" });
      assert.equal(del.status, 200);
      assert.equal((await fetch(`${ts.base}/api/jobs/${causal.job.id}`)).status, 404);
    } finally {
      await ts.close();
    }
    const ts2 = await startTestServer({ dataDir });
    try {
      const ids = new Set((await jobsOf(ts2.base)).filter((j) => j.state === "interrupted").map((j) => j.id));
      assert.deepEqual(ids, new Set([long.job.id, queued.job.id, rel.job.id]));
    } finally {
      await ts2.close();
    }
  } finally {
    if (!killed) child.kill("SIGKILL");
  }
});

test("a graceful shutdown with jobs in flight reports them as interrupted too", async () => {
  const ts = await startTestServer({ dataDir });
  let long: { job: JobInfo };
  let waiting: { job: JobInfo };
  try {
    long = await post(
      ts.base,
      "/api/generate",
      imageForm(fixtureImage(), { prompt: "stopped by shutdown", max_new_tokens: "1000" }),
    );
    waiting = await post(
      ts.base,
      "/api/generate",
      imageForm(fixtureImage(), { prompt: "never started", max_new_tokens: "2" }),
    );
    await readJobEvents(ts.base, long.job.id, (e) => e.type === "token");
  } finally {
    await ts.close();
  }
  const ts2 = await startTestServer({ dataDir });
  try {
    const byId = new Map((await jobsOf(ts2.base)).map((j) => [j.id, j]));
    assert.equal(byId.get(long.job.id)?.state, "interrupted");
    assert.match(byId.get(long.job.id)!.error!, /while this job was running/);
    assert.equal(byId.get(waiting.job.id)?.state, "interrupted");
    assert.equal(byId.get(waiting.job.id)!.request.prompt, "never started");
  } finally {
    await ts2.close();
  }
});
