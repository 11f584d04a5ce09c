/** The model job queue: one job at a time, queue positions, event replay, cancel of queued and running jobs. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CancelledError,
  type JobContext,
  type JobEvent,
  type JobInfo,
  type JobJournal,
  JobQueue,
} from "../src/server/jobs.js";

/** A runner that waits until released (or cancelled), reporting progress. */
function gate() {
  let release!: (v: Record<string, unknown>) => void;
  let fail!: (e: Error) => void;
  let started = false;
  let ctx: JobContext | null = null;
  const done = new Promise<Record<string, unknown>>((res, rej) => {
    release = res;
    fail = rej;
  });
  const runner = async (c: JobContext) => {
    started = true;
    ctx = c;
    c.signal.addEventListener("abort", () => fail(new CancelledError()));
    c.progress("work", 0, 2);
    return done;
  };
  return {
    runner,
    release,
    fail,
    get started() {
      return started;
    },
    get ctx() {
      return ctx!;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("JobQueue", () => {
  test("runs one job at a time in order, with positions", async () => {
    const q = new JobQueue();
    const a = gate();
    const b = gate();
    const c = gate();
    const ja = q.submit("generate", "a", null, a.runner);
    const jb = q.submit("generate", "b", null, b.runner);
    const jc = q.submit("relevancy", "c", "r1", c.runner);
    assert.equal(q.get(jb.id)!.position, 1);
    assert.equal(q.get(jc.id)!.position, 2);
    await tick();
    assert.ok(a.started && !b.started && !c.started);
    assert.equal(q.get(ja.id)!.state, "running");
    a.ctx.token(0, "hi");
    a.ctx.token(1, "</s>", true);
    a.release({ answer: "hi" });
    await tick();
    assert.equal(q.get(ja.id)!.state, "done");
    assert.deepEqual(q.get(ja.id)!.result, { answer: "hi" });
    assert.ok(b.started && !c.started);
    assert.equal(q.get(jc.id)!.position, 1, "c moved up");
    b.fail(new Error("boom\nstack trace line"));
    await tick();
    assert.equal(q.get(jb.id)!.state, "error");
    assert.equal(q.get(jb.id)!.error, "boom", "first line only");
    assert.ok(c.started);
    c.release({});
    await q.idle();
    const seen: JobEvent[] = [];
    const sub = q.subscribe(ja.id, (e) => seen.push(e))!;
    assert.deepEqual(
      sub.past.map((e) => e.type),
      ["state", "state", "progress", "token", "token", "done"],
    );
    // A control token is marked, so clients can leave it out of the answer text.
    assert.deepEqual(sub.past[3].data, { index: 0, text: "hi", special: false });
    assert.deepEqual(sub.past[4].data, { index: 1, text: "</s>", special: true });
    assert.equal(seen.length, 0, "no live events after the end");
    const sc = q.subscribe(jc.id, () => {})!;
    assert.deepEqual(
      sc.past.filter((e) => e.type === "state").map((e) => e.data.position),
      [2, 1, 0, 0],
    );
    const sb = q.subscribe(jb.id, () => {})!;
    assert.equal(sb.past.at(-1)!.type, "failed");
  });

  test("cancel: a queued job at once, a running one through its signal", async () => {
    const q = new JobQueue();
    const a = gate();
    const b = gate();
    const ja = q.submit("generate", "a", null, a.runner);
    const jb = q.submit("generate", "b", null, b.runner);
    await tick();
    const live: string[] = [];
    q.subscribe(ja.id, (e) => live.push(e.type));
    assert.equal(q.cancel(jb.id), true);
    assert.equal(q.get(jb.id)!.state, "cancelled");
    assert.equal(q.cancel(ja.id), true);
    await q.idle();
    assert.equal(q.get(ja.id)!.state, "cancelled");
    assert.deepEqual(live, ["cancelled"]);
    assert.ok(!b.started, "a cancelled queued job never runs");
    assert.equal(q.cancel(ja.id), false, "finished jobs cannot be cancelled");
    assert.equal(q.cancel("nope"), false);
  });

  test("a runner that finishes despite a late cancel is done", async () => {
    const q = new JobQueue();
    const j = q.submit("generate", "a", null, async (ctx) => {
      await tick();
      assert.ok(ctx.signal.aborted);
      return { runId: "x" };
    });
    await tick();
    q.cancel(j.id);
    await q.idle();
    assert.equal(q.get(j.id)!.state, "done");
  });

  test("journal: a job is written when queued, marked when started, forgotten when finished", async () => {
    const log: string[] = [];
    const journal: JobJournal = {
      queued: (j) => log.push(`queued ${j.label} ${JSON.stringify(j.request)}`),
      started: (id) => log.push(`started ${id === a.id ? "a" : "b"}`),
      forget: (id) => log.push(`forget ${id === a.id ? "a" : "b"}`),
    };
    const q = new JobQueue(journal);
    const a = q.submit("generate", "a", null, async () => ({}), { prompt: "a?" });
    const b = q.submit("causal", "b", "r", async () => ({}), { token: 1 });
    await q.idle();
    assert.deepEqual(log, [
      'queued a {"prompt":"a?"}',
      'queued b {"token":1}',
      "started a",
      "forget a",
      "started b",
      "forget b",
    ]);
    assert.deepEqual(q.get(b.id)!.request, { token: 1 });
  });

  test("close() stops jobs but leaves them journaled; restore() reports them; dismiss() forgets", async () => {
    const rows = new Map<string, string>();
    const journal: JobJournal = {
      queued: (j) => rows.set(j.id, "queued"),
      started: (id) => rows.set(id, "running"),
      forget: (id) => rows.delete(id),
    };
    const q = new JobQueue(journal);
    const a = gate();
    const ja = q.submit("generate", "a", null, a.runner);
    const jb = q.submit("generate", "b", null, gate().runner);
    await tick();
    q.close();
    await q.idle();
    assert.equal(q.get(jb.id)!.state, "cancelled");
    assert.deepEqual(Object.fromEntries(rows), { [ja.id]: "running", [jb.id]: "queued" });

    const q2 = new JobQueue(journal);
    const interrupted: JobInfo = { ...ja, state: "interrupted", error: "interrupted: server stopped" };
    q2.restore([interrupted]);
    assert.equal(q2.get(ja.id)!.state, "interrupted");
    const sub = q2.subscribe(ja.id, () => {})!;
    assert.deepEqual(sub.past, [
      { seq: 0, type: "failed", data: { message: "interrupted: server stopped", interrupted: true } },
    ]);
    assert.equal(q2.cancel(ja.id), false, "an interrupted job is finished");
    const run = q2.submit("generate", "c", null, gate().runner);
    await tick();
    assert.equal(q2.dismiss(run.id), false, "a running job is not dismissed");
    assert.equal(q2.dismiss(ja.id), true);
    assert.equal(q2.get(ja.id), undefined);
    assert.ok(!rows.has(ja.id));
    q2.cancelAll();
  });
});
