/**
 * The web server's API over real HTTP with the llama fixture model: generation streamed over SSE into an
 * indexed run, the attention endpoints (equal to the library), export → import, cancel and queue positions, a
 * failing job that leaves nothing behind, restart persistence, and bad input on every endpoint → 4xx with a
 * readable message while the server keeps serving.
 */
import assert from "node:assert/strict";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import * as zlib from "node:zlib";
import { PNG } from "pngjs";
import { encodePng } from "../src/hf/image-decode.js";
import { parseImageProcessorConfig, preprocessImage } from "../src/hf/image-processor.js";
import { attentionSummary, headImageMaps, patchAttention } from "../src/interpret/views/attention.js";
import { Run } from "../src/run/run-dir.js";
import { RunStore } from "../src/server/run-store.js";
import { pngWithDataCut } from "./broken-images.js";
import { fixtureDir, tempDir } from "./fixture-utils.js";
import { pilFixture, pilReference } from "./pil-fixtures.js";
import {
  fixtureImage,
  imageForm,
  rawTarGz,
  readJobEvents,
  startTestServer,
  type TestServer,
} from "./server-utils.js";

let ts: TestServer;
const LIMITS = {
  maxUploadBytes: 300_000,
  maxPixels: 1_000_000,
  maxNewTokens: 5000,
  maxImportBytes: 8 * 2 ** 20,
};

async function json(res: Response): Promise<any> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`not JSON (HTTP ${res.status}): ${text.slice(0, 200)}`);
  }
}

/** Asserts a 4xx JSON error whose message matches. */
async function expectError(res: Response, status: number, pattern: RegExp): Promise<void> {
  const body = await json(res);
  assert.equal(res.status, status, `status (body ${JSON.stringify(body)})`);
  assert.equal(typeof body.error, "string");
  assert.match(body.error, pattern);
}

/** A GET with the path sent exactly as given (no URL normalisation) and optional headers. */
function rawGet(p: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const u = new URL(ts.base);
  return new Promise((resolve, reject) => {
    const r = http.request({ host: u.hostname, port: u.port, path: p, headers }, (res) => {
      let body = "";
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    r.on("error", reject);
    r.end();
  });
}

async function generate(
  fields: Record<string, string>,
  image = fixtureImage(),
): Promise<{ jobId: string; runId: string }> {
  const res = await fetch(`${ts.base}/api/generate`, { method: "POST", body: imageForm(image, fields) });
  const body = await json(res);
  assert.equal(res.status, 202, JSON.stringify(body));
  return { jobId: body.job.id, runId: body.runId };
}

before(async () => {
  ts = await startTestServer({ limits: LIMITS });
});
after(async () => {
  await ts.close();
  fs.rmSync(ts.dataDir, { recursive: true, force: true });
});

/**
 * A run of the data folder whose uploaded original is input.png. Some runs here come from JPEG or WebP uploads
 * (input.jpg, input.webp), and which run a directory listing names first depends on the run ids.
 */
function runWithPngInput(): string {
  const id = fs
    .readdirSync(ts.dataDir)
    .find((f) => /^\d{8}-/.test(f) && fs.existsSync(path.join(ts.dataDir, f, "input.png")));
  assert.ok(id, "a run with input.png in the data folder");
  return id;
}

describe("generate → run → views", () => {
  let runId: string;
  let tokens: string[];

  test("generate streams tokens over SSE and indexes the run", async () => {
    const g = await generate({
      prompt: "What is in the image?",
      max_new_tokens: "7",
      image_mode: "pad",
      attn_dtype: "f32",
    });
    runId = g.runId;
    const events = await readJobEvents(ts.base, g.jobId);
    const types = events.map((e) => e.type);
    assert.equal(types[0], "state");
    assert.ok(types.includes("progress"), "progress events");
    assert.equal(types.at(-1), "done", JSON.stringify(events.at(-1)));
    const streamed = events.filter((e) => e.type === "token").map((e) => e.data.text as string);
    const done = events.at(-1)!.data;
    assert.equal(done.runId, runId);
    tokens = done.tokens;
    assert.deepEqual(streamed, tokens);
    const m = JSON.parse(fs.readFileSync(path.join(ts.dataDir, runId, "manifest.json"), "utf8"));
    assert.deepEqual(m.generated_tokens, tokens);
    assert.equal(m.settings.image_mode, "pad");
    const list = await json(await fetch(`${ts.base}/api/runs`));
    assert.ok(
      list.runs.some((r: any) => r.id === runId && r.source === "generated" && r.n_tokens === tokens.length),
    );
  });

  test("run detail and images", async () => {
    const d = await json(await fetch(`${ts.base}/api/runs/${runId}`));
    assert.deepEqual(d.tokens, tokens);
    assert.equal(d.prompt, "What is in the image?");
    // The image tokens on the original picture (157×100), padded to a square in "pad" mode: the grid's frame
    // reaches 28.5 px above and below it, and the top row of patches lies wholly in the padding.
    assert.deepEqual([d.image.width, d.image.height], [157, 100]);
    assert.equal(d.image.positions.length, 64);
    assert.equal(d.image.grids.length, 1);
    const g = d.image.grids[0];
    assert.deepEqual([g.first, g.rows, g.cols, g.rowSeparator], [0, 8, 8, false]);
    const expectFrame = [0, -28, 157, 129];
    for (const [i, v] of (g.frame as number[]).entries())
      assert.ok(Math.abs(v - expectFrame[i]) < 1e-9, `frame ${g.frame}`);
    assert.equal(d.image.labels[9], "patch 1,1");
    const [x0, y0, x1, y1] = d.image.boxes[3];
    assert.deepEqual([y0, y1], [0, 0], "a top-row patch is all padding: zero height");
    assert.ok(x1 > x0);
    assert.ok(
      d.image.boxes.every((b: number[]) => b[1] >= 0 && b[3] <= 100),
      "boxes stay on the picture",
    );
    assert.equal(d.layout.layers, 4);
    assert.equal(d.layout.G, tokens.length);
    assert.equal(d.model.dir, "llava-tiny-llama", "no absolute paths leak");
    const img = await fetch(`${ts.base}/api/runs/${runId}/image`);
    assert.equal(img.status, 200);
    assert.equal(img.headers.get("content-type"), "image/png");
    const png = PNG.sync.read(Buffer.from(await img.arrayBuffer()));
    assert.equal(png.width, 112);
    const input = await fetch(`${ts.base}/api/runs/${runId}/input`);
    assert.deepEqual(Buffer.from(await input.arrayBuffer()), Buffer.from(fixtureImage()));
  });

  test("JPEG and WebP uploads: the model sees Pillow's pixels, the original file is kept", async () => {
    const dir = fixtureDir("llava-tiny-llama");
    const modelCfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    const cfg = parseImageProcessorConfig(
      JSON.parse(fs.readFileSync(path.join(dir, "preprocessor_config.json"), "utf8")),
      "preprocessor_config.json",
      modelCfg.vision_config.model_type ?? "clip_vision_model",
      modelCfg.vision_config.image_size,
    );
    const uploads = [
      ["jpeg/q90-420.jpg", "jpeg/q90-420.pil.png", "image/jpeg", "input.jpg"],
      ["formats/lossy.webp", "formats/lossy.webp.pil.png", "image/webp", "input.webp"],
    ];
    for (const [file, reference, type, stored] of uploads) {
      const bytes = pilFixture(file);
      const res = await fetch(`${ts.base}/api/generate`, {
        method: "POST",
        body: imageForm(bytes, { prompt: "What is it?", max_new_tokens: "1" }, path.basename(file), type),
      });
      const body = await json(res);
      assert.equal(res.status, 202, `${file}: ${JSON.stringify(body)}`);
      assert.equal((await readJobEvents(ts.base, body.job.id)).at(-1)!.type, "done");
      // image.png is the processor's output: bit-equal to processing Pillow's decode of the upload.
      const seen = PNG.sync.read(fs.readFileSync(path.join(ts.dataDir, body.runId, "image.png")));
      const expected = preprocessImage(pilReference(reference), cfg, "default").processed;
      assert.deepEqual([seen.width, seen.height], [expected.width, expected.height]);
      let bad = 0;
      for (let i = 0; i < expected.width * expected.height; i++)
        for (let k = 0; k < 3; k++) if (seen.data[i * 4 + k] !== expected.data[i * 3 + k]) bad++;
      assert.equal(bad, 0, `${file}: ${bad} values of what the model saw differ from Pillow's`);
      const input = await fetch(`${ts.base}/api/runs/${body.runId}/input`);
      assert.equal(input.headers.get("content-type"), type);
      assert.deepEqual(Buffer.from(await input.arrayBuffer()), bytes);
      assert.ok(fs.existsSync(path.join(ts.dataDir, body.runId, stored)));
    }
  });

  test("attention endpoints return the library's numbers", async () => {
    const run = Run.open(path.join(ts.dataDir, runId));
    try {
      const s = await json(await fetch(`${ts.base}/api/runs/${runId}/attention/summary`));
      assert.deepEqual(s, JSON.parse(JSON.stringify(attentionSummary(run))));
      const h = await json(await fetch(`${ts.base}/api/runs/${runId}/attention/heads?layer=2&tokens=1,3`));
      assert.deepEqual(h, JSON.parse(JSON.stringify(headImageMaps(run, 2, [1, 3]))));
      const p = await json(
        await fetch(`${ts.base}/api/runs/${runId}/attention/patches`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ layer: 1, patches: [0, 9, 63] }),
        }),
      );
      assert.deepEqual(p, JSON.parse(JSON.stringify(patchAttention(run, 1, [0, 9, 63]))));
      assert.equal(p.tokenMean.length, tokens.length);
    } finally {
      run.close();
    }
  });

  test("export → import gives an identical, separately indexed run", async () => {
    const res = await fetch(`${ts.base}/api/runs/${runId}/export`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-disposition") ?? "", /attachment; filename="lvlm-run-.*\.tar\.gz"/);
    const archive = Buffer.from(await res.arrayBuffer());
    assert.equal(archive[0], 0x1f);
    const imp = await fetch(`${ts.base}/api/import`, {
      method: "POST",
      headers: { "content-type": "application/gzip" },
      body: archive,
    });
    const body = await json(imp);
    assert.equal(imp.status, 201, JSON.stringify(body));
    const newId = body.run.id as string;
    assert.notEqual(newId, runId);
    assert.equal(body.run.source, "imported");
    for (const f of ["manifest.json", "tensors.safetensors", "image.png", "input.png"]) {
      assert.deepEqual(
        fs.readFileSync(path.join(ts.dataDir, newId, f)),
        fs.readFileSync(path.join(ts.dataDir, runId, f)),
        f,
      );
    }
    const s1 = await json(await fetch(`${ts.base}/api/runs/${runId}/attention/summary`));
    const s2 = await json(await fetch(`${ts.base}/api/runs/${newId}/attention/summary`));
    assert.deepEqual(s2, s1);
    // Deleting the copy removes folder and index row; the original stays.
    const del = await fetch(`${ts.base}/api/runs/${newId}`, { method: "DELETE" });
    assert.equal(del.status, 200);
    assert.ok(!fs.existsSync(path.join(ts.dataDir, newId)));
    await expectError(await fetch(`${ts.base}/api/runs/${newId}`), 404, /no run with id/);
    assert.equal((await fetch(`${ts.base}/api/runs/${runId}`)).status, 200);
  });

  test("runs survive a restart (the index is on disk)", async () => {
    const other = await startTestServer({ dataDir: ts.dataDir });
    try {
      const list = await json(await fetch(`${other.base}/api/runs`));
      assert.ok(list.runs.some((r: any) => r.id === runId));
      const d = await json(await fetch(`${other.base}/api/runs/${runId}`));
      assert.deepEqual(d.tokens, tokens);
    } finally {
      await other.server.close();
    }
  });
});

describe("queue, cancel and failures", () => {
  test("queued jobs report their position; cancel stops running and queued jobs and leaves no run", async () => {
    const before = fs.readdirSync(ts.dataDir).sort();
    const a = await generate({ prompt: "long one", max_new_tokens: "3000", attn_dtype: "f16" });
    const b = await generate({ prompt: "waiting", max_new_tokens: "4" });
    const bInfo = await json(await fetch(`${ts.base}/api/jobs/${b.jobId}`));
    assert.equal(bInfo.state, "queued");
    assert.equal(bInfo.position, 1);
    // Wait until a streams its first token, then cancel both.
    await readJobEvents(ts.base, a.jobId, (e) => e.type === "token");
    const cb = await json(await fetch(`${ts.base}/api/jobs/${b.jobId}/cancel`, { method: "POST" }));
    assert.equal(cb.cancelled, true);
    assert.equal(cb.state, "cancelled");
    const ca = await json(await fetch(`${ts.base}/api/jobs/${a.jobId}/cancel`, { method: "POST" }));
    assert.equal(ca.cancelled, true);
    const evA = await readJobEvents(ts.base, a.jobId);
    assert.equal(evA.at(-1)!.type, "cancelled");
    const evB = await readJobEvents(ts.base, b.jobId);
    assert.deepEqual(
      evB.map((e) => e.type),
      ["state", "cancelled"],
    );
    assert.equal(evB[0].data.position, 1);
    const list = await json(await fetch(`${ts.base}/api/runs`));
    assert.ok(!list.runs.some((r: any) => r.id === a.runId || r.id === b.runId));
    const afterDirs = fs.readdirSync(ts.dataDir).filter((f) => !f.startsWith("."));
    assert.deepEqual(
      afterDirs.sort(),
      before.filter((f) => !f.startsWith(".")).sort(),
      "no run folder left behind",
    );
    // A finished job cannot be cancelled again.
    const again = await json(await fetch(`${ts.base}/api/jobs/${a.jobId}/cancel`, { method: "POST" }));
    assert.equal(again.cancelled, false);
  });

  test("a full queue is a 429; a run folder copied into the data dir appears in the list", async () => {
    const long = await generate({ prompt: "long one", max_new_tokens: "3000" });
    const waiting: string[] = [];
    for (let i = 0; i < 32; i++)
      waiting.push((await generate({ prompt: `w${i}`, max_new_tokens: "1" })).jobId);
    const res = await fetch(`${ts.base}/api/generate`, {
      method: "POST",
      body: imageForm(fixtureImage(), { prompt: "one too many" }),
    });
    await expectError(res, 429, /queue is full/);
    for (const id of [...waiting, long.jobId])
      await fetch(`${ts.base}/api/jobs/${id}/cancel`, { method: "POST" });
    assert.equal((await readJobEvents(ts.base, long.jobId)).at(-1)!.type, "cancelled");
    const some = fs.readdirSync(ts.dataDir).find((f) => /^\d{8}-/.test(f))!;
    fs.cpSync(path.join(ts.dataDir, some), path.join(ts.dataDir, "made-by-cli"), { recursive: true });
    const list = await json(await fetch(`${ts.base}/api/runs`));
    assert.ok(list.runs.some((r: any) => r.id === "made-by-cli" && r.source === "found"));
    assert.equal((await fetch(`${ts.base}/api/runs/made-by-cli`, { method: "DELETE" })).status, 200);
  });

  test("a job that fails in the model reports a readable error and leaves no run", async () => {
    const g = await generate({ prompt: "too long", max_new_tokens: "4090" });
    const ev = await readJobEvents(ts.base, g.jobId);
    assert.equal(ev.at(-1)!.type, "failed");
    assert.match(ev.at(-1)!.data.message, /exceeds the model's context/);
    assert.ok(!fs.existsSync(path.join(ts.dataDir, g.runId)));
    const j = await json(await fetch(`${ts.base}/api/jobs/${g.jobId}`));
    assert.equal(j.state, "error");
  });
});

describe("bad input → 4xx with a clear message", () => {
  const img = fixtureImage();
  const post = (fd: FormData) => fetch(`${ts.base}/api/generate`, { method: "POST", body: fd });

  test("generate: wrong type, oversize, too many pixels, bad fields", async () => {
    await expectError(
      await fetch(`${ts.base}/api/generate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      }),
      415,
      /multipart\/form-data/,
    );
    await expectError(
      await post(
        imageForm(new TextEncoder().encode("hello, not an image"), { prompt: "q" }, "x.txt", "text/plain"),
      ),
      415,
      /not a PNG, JPEG or WebP/,
    );
    const webp = Buffer.concat([
      Buffer.from("RIFF\x18\x00\x00\x00WEBPVP8 \x0c\x00\x00\x00", "latin1"),
      Buffer.alloc(12),
    ]);
    await expectError(
      await post(imageForm(webp, { prompt: "q" }, "x.webp", "image/webp")),
      400,
      /^x\.webp: corrupt WebP image/,
    );
    await expectError(
      await post(imageForm(new Uint8Array(LIMITS.maxUploadBytes + 10), { prompt: "q" })),
      413,
      /upload limit/,
    );
    const big = encodePng({ width: 1100, height: 1000, data: new Uint8Array(1100 * 1000 * 3) });
    assert.ok(big.length < LIMITS.maxUploadBytes);
    await expectError(await post(imageForm(big, { prompt: "q" })), 413, /megapixel limit/);
    await expectError(await post(imageForm(img.subarray(0, 60), { prompt: "q" })), 400, /truncated PNG/);
    await expectError(await post(imageForm(img, { prompt: "   " })), 400, /prompt.*empty/);
    await expectError(
      await post(imageForm(img, { prompt: "q", max_new_tokens: "0" })),
      400,
      /max_new_tokens/,
    );
    await expectError(
      await post(imageForm(img, { prompt: "q", max_new_tokens: "abc" })),
      400,
      /max_new_tokens/,
    );
    await expectError(
      await post(imageForm(img, { prompt: "q", max_new_tokens: "6000" })),
      400,
      /over the limit/,
    );
    await expectError(await post(imageForm(img, { prompt: "q", temperature: "-1" })), 400, /temperature/);
    await expectError(await post(imageForm(img, { prompt: "q", top_p: "0" })), 400, /top_p/);
    await expectError(await post(imageForm(img, { prompt: "q", image_mode: "stretch" })), 400, /image_mode/);
    const noImage = new FormData();
    noImage.append("prompt", "q");
    await expectError(await post(noImage), 400, /no image/);
  });

  test("generate: a truncated or corrupt image is a 400 naming the file, never a partial picture", async () => {
    const png = pilFixture("formats/interlaced.png");
    const jpg = pilFixture("jpeg/progressive-420.jpg");
    const garbled = Buffer.from(jpg);
    garbled.fill(0x55, jpg.length >> 1, (jpg.length >> 1) + 50);
    const cases: [Uint8Array, string, string, RegExp][] = [
      [
        png.subarray(0, png.length >> 1),
        "half.png",
        "image/png",
        /^half\.png: truncated PNG image: .*use the complete file$/,
      ],
      [png.subarray(0, png.length - 12), "no-end.png", "image/png", /^no-end\.png: truncated PNG image/],
      [pngWithDataCut(Buffer.from(img), 0.5), "stops.png", "image/png", /^stops\.png: corrupt PNG image/],
      [jpg.subarray(0, jpg.length - 2), "cut.jpg", "image/jpeg", /^cut\.jpg: truncated JPEG image/],
      [garbled, "garbled.jpg", "image/jpeg", /^garbled\.jpg: corrupt JPEG image/],
      [
        pilFixture("formats/lossy.webp").subarray(0, 300),
        "cut.webp",
        "image/webp",
        /^cut\.webp: truncated WebP/,
      ],
    ];
    const before = fs.readdirSync(ts.dataDir).length;
    for (const [bytes, name, type, re] of cases) {
      const res = await post(imageForm(bytes, { prompt: "q" }, name, type));
      const body = await json(res);
      assert.equal(res.status, 400, `${name}: ${JSON.stringify(body)}`);
      assert.match(body.error, re);
      assert.ok(!body.error.includes("\n") && !body.error.includes(ts.dataDir), body.error);
    }
    assert.equal(fs.readdirSync(ts.dataDir).length, before, "no run folder was started");
  });

  test("run ids: unknown, traversal, odd characters, symlink escapes", async () => {
    await expectError(await fetch(`${ts.base}/api/runs/nope-123`), 404, /no run with id "nope-123"/);
    for (const bad of ["..%2F..%2Fetc", "a.b", ".hidden", "x%00y", "%2Fetc%2Fpasswd"]) {
      await expectError(await fetch(`${ts.base}/api/runs/${bad}`), 400, /invalid run id/);
      await expectError(await fetch(`${ts.base}/api/runs/${bad}/image`), 400, /invalid run id/);
      await expectError(await fetch(`${ts.base}/api/runs/${bad}/export`), 400, /invalid run id/);
    }
    // Unencoded dot segments sent raw (fetch would normalise them away).
    for (const raw of [
      "/api/runs/../../etc/passwd",
      "/api/runs/..",
      "/api/runs/%2e%2e",
      "/api/runs/%2e%2e/image",
      "/api/runs/./x/image",
    ]) {
      const st = await rawGet(raw);
      assert.ok(st.status === 400 || st.status === 404, `${raw}: ${st.status}`);
      assert.match(st.body, /"error":/);
    }
    const tooLong = "a".repeat(200);
    await expectError(await fetch(`${ts.base}/api/runs/${tooLong}`), 414, /too long/);
    await expectError(await fetch(`${ts.base}/api/runs/${"b".repeat(90)}`), 400, /invalid run id/);
    await expectError(await fetch(`${ts.base}/api/runs/%E0%A4%A`), 400, /bad request/);
    // A symlink in the data dir pointing outside is never a run, even if someone indexes it.
    const outside = tempDir("outside");
    const realRun = runWithPngInput();
    fs.cpSync(path.join(ts.dataDir, realRun), path.join(outside, "r"), { recursive: true });
    fs.symlinkSync(path.join(outside, "r"), path.join(ts.dataDir, "evil"));
    try {
      const store = RunStore.open(ts.dataDir);
      try {
        assert.ok(!store.has("evil"), "reconcile does not index a symlinked folder");
        store.add(
          "evil",
          JSON.parse(fs.readFileSync(path.join(outside, "r", "manifest.json"), "utf8")),
          "found",
        );
      } finally {
        store.close();
      }
      await expectError(await fetch(`${ts.base}/api/runs/evil`), 404, /not a plain directory/);
      await expectError(await fetch(`${ts.base}/api/runs/evil/image`), 404, /not a plain directory/);
      // A symlinked file inside a real run is not served either.
      fs.renameSync(path.join(ts.dataDir, realRun, "input.png"), path.join(outside, "input.png"));
      fs.symlinkSync(path.join(outside, "input.png"), path.join(ts.dataDir, realRun, "input.png"));
      await expectError(await fetch(`${ts.base}/api/runs/${realRun}/input`), 404, /not a plain file/);
      fs.rmSync(path.join(ts.dataDir, realRun, "input.png"));
      fs.renameSync(path.join(outside, "input.png"), path.join(ts.dataDir, realRun, "input.png"));
    } finally {
      fs.rmSync(path.join(ts.dataDir, "evil"), { force: true });
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  test("attention queries: malformed JSON, wrong types, out of range", async () => {
    const id = fs.readdirSync(ts.dataDir).find((f) => /^\d{8}-/.test(f))!;
    const patches = (body: string, type = "application/json") =>
      fetch(`${ts.base}/api/runs/${id}/attention/patches`, {
        method: "POST",
        headers: { "content-type": type },
        body,
      });
    await expectError(await patches("{layer: 1,"), 400, /malformed JSON/);
    // A __proto__ (or constructor.prototype) key is refused for what it is, not called malformed.
    for (const body of [
      '{"__proto__": {"layer": 1}, "layer": 1, "patches": [1]}',
      '{"layer": 1, "patches": [1], "x": {"constructor": {"prototype": {"a": 1}}}}',
    ]) {
      const res = await patches(body);
      const b = await json(res);
      assert.equal(res.status, 400);
      assert.match(b.error, /the key "(__proto__|constructor\.prototype)" is not accepted/);
      assert.doesNotMatch(b.error, /malformed/);
    }
    await expectError(await patches(""), 400, /JSON/);
    await expectError(await patches('{"layer": "one", "patches": [1]}'), 400, /layer/);
    await expectError(await patches('{"layer": 1, "patches": []}'), 400, /at least one image patch/);
    await expectError(await patches('{"layer": 1, "patches": [1.5]}'), 400, /patches/);
    await expectError(await patches('{"layer": 9, "patches": [1]}'), 400, /layer 9 is out of range/);
    await expectError(await patches('{"layer": 1, "patches": [64]}'), 400, /image patch 64 is out of range/);
    await expectError(await patches("layer=1", "text/plain"), 415, /unsupported content type/);
    await expectError(
      await patches(JSON.stringify({ layer: 1, patches: Array(600_000).fill(1) })),
      413,
      /too large/,
    );
    await expectError(await fetch(`${ts.base}/api/runs/${id}/attention/heads?layer=abc`), 400, /layer/);
    await expectError(await fetch(`${ts.base}/api/runs/${id}/attention/heads`), 400, /layer/);
    await expectError(
      await fetch(`${ts.base}/api/runs/${id}/attention/heads?layer=1&tokens=1,x`),
      400,
      /tokens/,
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/${id}/attention/heads?layer=1&tokens=99`),
      400,
      /answer token 99 is out of range/,
    );
    await expectError(await fetch(`${ts.base}/api/runs/${id}/attention/summary?tokens=-1`), 400, /tokens/);
  });

  test("import: garbage, traversal, links, bad manifests, oversize", async () => {
    const imp = (body: Uint8Array, type = "application/gzip") =>
      fetch(`${ts.base}/api/import`, { method: "POST", headers: { "content-type": type }, body });
    const count = () => fs.readdirSync(ts.dataDir).filter((f) => !f.startsWith(".")).length;
    const n0 = count();
    await expectError(
      await imp(new TextEncoder().encode("definitely not a tarball")),
      400,
      /not a readable run archive|not a run archive/,
    );
    await expectError(await imp(new Uint8Array(0)), 400, /empty upload/);
    await expectError(await imp(rawTarGz([{ name: "run/../../evil.txt", data: "x" }])), 400, /unsafe name/);
    await expectError(await imp(rawTarGz([{ name: "/etc/evil", data: "x" }])), 400, /unsafe name/);
    await expectError(
      await imp(rawTarGz([{ name: "run/link", type: "2", linkname: "/etc/passwd" }])),
      400,
      /SymbolicLink.*only files and folders/,
    );
    await expectError(
      await imp(rawTarGz([{ name: "run/hard", type: "1", linkname: "run/x" }])),
      400,
      /Link.*only files and folders/,
    );
    await expectError(await imp(rawTarGz([{ name: "run/.hidden", data: "x" }])), 400, /unsafe name/);
    await expectError(
      await imp(
        rawTarGz([
          { name: "a/x", data: "1" },
          { name: "b/y", data: "2" },
        ]),
      ),
      400,
      /more than one top folder/,
    );
    await expectError(await imp(rawTarGz([{ name: "run/a/b/c/d", data: "1" }])), 400, /nested too deep/);
    await expectError(await imp(rawTarGz([{ name: "run/x.txt", data: "1" }])), 422, /no manifest.json/);
    await expectError(
      await imp(rawTarGz([{ name: "run/manifest.json", data: "{nope" }])),
      422,
      /not valid JSON/,
    );
    await expectError(
      await imp(rawTarGz([{ name: "run/manifest.json", data: '{"format":"other/9"}' }])),
      422,
      /format "other\/9"/,
    );
    // A real run with an inconsistent manifest is refused.
    const id = runWithPngInput();
    const m = JSON.parse(fs.readFileSync(path.join(ts.dataDir, id, "manifest.json"), "utf8"));
    const files = (mf: object) => [
      { name: "run/manifest.json", data: JSON.stringify(mf) },
      {
        name: "run/tensors.safetensors",
        data: fs.readFileSync(path.join(ts.dataDir, id, "tensors.safetensors")),
      },
      { name: "run/image.png", data: fs.readFileSync(path.join(ts.dataDir, id, "image.png")) },
      { name: "run/input.png", data: fs.readFileSync(path.join(ts.dataDir, id, "input.png")) },
    ];
    await expectError(await imp(rawTarGz(files({ ...m, seq_len: m.seq_len + 1 }))), 422, /seq_len/);
    await expectError(
      await imp(rawTarGz(files({ ...m, image_file: "../../etc/passwd" }))),
      422,
      /image_file/,
    );
    await expectError(
      await imp(rawTarGz(files({ ...m, model: { ...m.model, llm_layers: 5 } }))),
      422,
      /llm_attn\.4 is missing/,
    );
    await expectError(
      await imp(rawTarGz(files({ ...m, model: { ...m.model, llm_heads: 8, llm_kv_heads: 2 } }))),
      422,
      /llm_attn\.0 has shape/,
    );
    // And the whole, valid run imports.
    const ok = await imp(rawTarGz(files(m)));
    assert.equal(ok.status, 201);
    const okId = (await json(ok)).run.id;
    await fetch(`${ts.base}/api/runs/${okId}`, { method: "DELETE" });
    // Oversize archives stop at the limit (incompressible data, so the gzip is as large as its content).
    const big = rawTarGz([{ name: "run/big.bin", data: crypto.randomBytes(LIMITS.maxImportBytes + 1000) }]);
    await expectError(await imp(big), 413, /import limit/);
    // Anything that is not gzip is refused at its first bytes, however long it is.
    await expectError(
      await imp(new Uint8Array(LIMITS.maxImportBytes + 1000)),
      400,
      /not a readable run archive/,
    );
    await expectError(
      await imp(zlib.gzipSync(Buffer.alloc(10)), "text/plain"),
      415,
      /unsupported content type/,
    );
    assert.equal(count(), n0, "failed imports leave nothing in the data dir");
    assert.deepEqual(fs.readdirSync(path.join(ts.dataDir, ".tmp")), [], "no scratch left");
  });

  test("jobs, endpoints, hosts and origins", async () => {
    await expectError(await fetch(`${ts.base}/api/jobs/job-abc-12345678`), 404, /no job with id/);
    await expectError(await fetch(`${ts.base}/api/jobs/..%2F..`), 400, /not a job id/);
    await expectError(await fetch(`${ts.base}/api/jobs/job-abc-12345678/events`), 404, /no job with id/);
    await expectError(
      await fetch(`${ts.base}/api/jobs/job-abc-12345678/cancel`, { method: "POST" }),
      404,
      /no job/,
    );
    await expectError(await fetch(`${ts.base}/api/nothing-here`), 404, /no such endpoint/);
    await expectError(await fetch(`${ts.base}/api/runs/x`, { method: "PUT" }), 404, /no such endpoint/);
    // Cross-origin writes and foreign Host headers (DNS rebinding) are refused.
    await expectError(
      await fetch(`${ts.base}/api/runs/nope`, {
        method: "DELETE",
        headers: { origin: "http://evil.example" },
      }),
      403,
      /cross-origin/,
    );
    const foreign = await rawGet("/api/runs", { host: "evil.example" });
    assert.equal(foreign.status, 403);
    assert.match(foreign.body, /unexpected Host/);
  });

  test("the server keeps serving after all of that", async () => {
    const h = await json(await fetch(`${ts.base}/api/health`));
    assert.equal(h.ok, true);
    const g = await generate({ prompt: "still there?", max_new_tokens: "2" });
    const ev = await readJobEvents(ts.base, g.jobId);
    assert.equal(ev.at(-1)!.type, "done");
  });
});
