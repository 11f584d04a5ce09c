/**
 * Questions at the edges: never silently cut (an over-limit question is a 400 saying the limit; a long one within
 * the limit arrives whole), error messages quote at most a short prefix of what the client sent, the image
 * placeholder in a question is a clear 400 (HF would read it as a second image), and text the tokenizer reads as
 * unknown tokens (emoji on the default shapes model) comes back as a warning, at submit and on the run.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { TextProcessor, TokenizerError } from "../src/hf/tokenizer.js";
import { loadTextProcessor } from "../src/models/registry.js";
import { fixtureDir, ROOT } from "./fixture-utils.js";
import { fixtureImage, imageForm, readJobEvents, startTestServer, type TestServer } from "./server-utils.js";

const SHAPES = path.join(ROOT, "models/llava-shapes");

interface Answer {
  status: number;
  body: {
    error?: string;
    job?: { id: string; request: { prompt: string } };
    runId?: string;
    warnings?: string[];
  };
}

async function ask(ts: TestServer, fields: Record<string, string>, image = fixtureImage()): Promise<Answer> {
  const res = await fetch(`${ts.base}/api/generate`, { method: "POST", body: imageForm(image, fields) });
  return { status: res.status, body: (await res.json()) as Answer["body"] };
}

describe("question length and quoting (llama fixture)", () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ limits: { maxPromptChars: 30_000 } });
  });
  after(async () => {
    ts.server.queue.cancelAll();
    await ts.close();
    fs.rmSync(ts.dataDir, { recursive: true, force: true });
  });

  test("a question within the limit arrives whole, however many bytes it is", async () => {
    // 30,000 three-byte characters: 90 KB, more than the old fixed 64 KiB field size.
    const prompt = "€".repeat(30_000);
    const a = await ask(ts, { prompt, max_new_tokens: "1" });
    assert.equal(a.status, 202, JSON.stringify(a.body).slice(0, 300));
    const job = (await (await fetch(`${ts.base}/api/jobs/${a.body.job!.id}`)).json()) as {
      request: { prompt: string };
    };
    assert.equal(job.request.prompt.length, 30_000, "not cut");
    assert.equal(job.request.prompt, prompt);
    await fetch(`${ts.base}/api/jobs/${a.body.job!.id}/cancel`, { method: "POST" });
  });

  test("an over-limit question is a 400 that states the limit and quotes nothing of it", async () => {
    for (const n of [30_001, 100_000, 400_000]) {
      const a = await ask(ts, { prompt: "x".repeat(n) });
      assert.equal(a.status, 400, `${n}: ${JSON.stringify(a.body).slice(0, 200)}`);
      assert.match(a.body.error!, /limit is 30000 characters|the limit is 30000/);
      assert.ok(a.body.error!.length < 200, `${n}: short message (${a.body.error!.length} chars)`);
      assert.doesNotMatch(a.body.error!, /xxxxxxxxxx/);
      // A count it states is the real one (not the length of a cut-off copy).
      const stated = /the question is (\d+) characters/.exec(a.body.error!);
      if (stated) assert.equal(Number(stated[1]), n, a.body.error);
    }
    const exact = await ask(ts, { prompt: "y".repeat(30_001) });
    assert.match(exact.body.error!, /^the question is 30001 characters; the limit is 30000$/);
  });

  test("other errors quote at most a short prefix of the client's text", async () => {
    const long = "z".repeat(50_000);
    const cases: Answer[] = [
      await ask(ts, { prompt: "q", image_mode: long }),
      await ask(ts, { prompt: "q", max_new_tokens: long }),
      await ask(ts, { prompt: "q", attn_dtype: long }),
    ];
    const fd = new FormData();
    fd.append("prompt", "q");
    fd.append("image", new Blob([new TextEncoder().encode("not an image")]), `${"n".repeat(5000)}.png`);
    const res = await fetch(`${ts.base}/api/generate`, { method: "POST", body: fd });
    cases.push({ status: res.status, body: (await res.json()) as Answer["body"] });
    for (const c of cases) {
      assert.ok(c.status >= 400 && c.status < 500, JSON.stringify(c.body).slice(0, 200));
      assert.ok(c.body.error!.length < 200, `short message: ${c.body.error!.slice(0, 200)}…`);
    }
    assert.match(cases[3].body.error!, /^"n{60}…": not a PNG, JPEG or WebP image$/);
  });

  test("the image placeholder in a question is a 400 that says what to do", async () => {
    for (const prompt of ["What is <image> showing?", "<image>"]) {
      const a = await ask(ts, { prompt });
      assert.equal(a.status, 400, JSON.stringify(a.body));
      assert.match(a.body.error!, /the question contains "<image>", the model's image placeholder/);
      assert.match(a.body.error!, /remove it or write it differently/);
    }
    // The library says the same to other callers (the CLI), instead of "chat text must contain…".
    const dir = fixtureDir("llava-tiny-llama");
    const tp = loadTextProcessor(dir);
    assert.throws(
      () => tp.encodePrompt("What is <image> showing?", 4),
      (e) => e instanceof TokenizerError && /the question contains "<image>"/.test(e.message),
    );
    // Text that only looks similar is a question like any other.
    assert.equal((await ask(ts, { prompt: "What is < image > showing?", max_new_tokens: "1" })).status, 202);
    ts.server.queue.cancelAll();
  });
});

describe("unknown tokens (the default shapes model: a word vocabulary without byte fallback)", () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ modelDir: SHAPES });
  });
  after(async () => {
    await ts.close();
    fs.rmSync(ts.dataDir, { recursive: true, force: true });
  });

  test("emoji-only and partly unknown questions warn at submit and on the run; known words do not", async () => {
    const all = await ask(ts, { prompt: "😀🎉", max_new_tokens: "2" });
    assert.equal(all.status, 202, JSON.stringify(all.body));
    assert.equal(all.body.warnings!.length, 1);
    assert.match(
      all.body.warnings![0],
      /knows none of the question: all of it reads as the unknown token <unk>/,
    );
    const part = await ask(ts, { prompt: "what 😀 shape", max_new_tokens: "2" });
    assert.match(part.body.warnings![0], /^1 of the question's 3 tokens are the unknown token <unk>/);
    const fine = await ask(ts, { prompt: "what shape is the red object?", max_new_tokens: "2" });
    assert.deepEqual(fine.body.warnings, []);
    for (const [a, n] of [
      [all, 1],
      [part, 1],
      [fine, 0],
    ] as const) {
      assert.equal((await readJobEvents(ts.base, a.body.job!.id)).at(-1)!.type, "done");
      const run = (await (await fetch(`${ts.base}/api/runs/${a.body.runId}`)).json()) as {
        warnings: string[];
      };
      assert.equal(run.warnings.length, n);
      if (n) assert.equal(run.warnings[0], a.body.warnings![0]);
    }
  });

  test("a byte-fallback tokenizer (the llama fixture) reads emoji, so no warning", () => {
    const dir = fixtureDir("llava-tiny-llama");
    const tp = loadTextProcessor(dir);
    assert.equal(tp.unknownTokenWarning("😀🎉"), null);
  });
});
