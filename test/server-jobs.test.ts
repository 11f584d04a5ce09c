/** The model job queue: one job at a time, queue positions, event replay, cancel of queued and running jobs. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CancelledError, type JobContext, type JobEvent, JobQueue } from "../src/server/jobs.js";

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
      ["state", "state", "progress", "token", "done"],
    );
    assert.deepEqual(sub.past[3].data, { index: 0, text: "hi" });
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
});
