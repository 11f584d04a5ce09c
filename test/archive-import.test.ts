/**
 * Run archives and run folders from elsewhere, over real HTTP: decompression bombs are refused while they
 * upload (the server keeps answering), nothing of a refused import stays on disk, names that clash or carry
 * newlines give one clean line, symlinks inside a run are never followed (library and server, no host paths in
 * answers), and an export is only sent when it would import back.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import * as zlib from "node:zlib";
import { writeSafetensors } from "../src/hf/safetensors.js";
import { Run } from "../src/run/run-dir.js";
import { importArchive } from "../src/server/archive.js";
import { HttpError } from "../src/server/http-error.js";
import { RunStore } from "../src/server/run-store.js";
import { tempDir } from "./fixture-utils.js";
import { type RawTarEntry, rawTar, rawTarGz, startTestServer, type TestServer } from "./server-utils.js";
import { writeSyntheticRun } from "./synthetic-run.js";

const MiB = 2 ** 20;
let ts: TestServer;
let outside: string;
/** Runs placed in the data folder before the server starts (indexed as "found"). */
const RUNS = ["valid", "to-passwd", "to-other-run", "rel-link", "causal-link", "no-image", "input-link"];

function smallRun(dir: string): void {
  writeSyntheticRun(dir, {
    T: 6,
    G: 3,
    layers: 2,
    heads: 2,
    imageStart: 1,
    grid: [2, 2],
    value: (l, h, r, c) => (1 + l + h + c) / (r + 1) / 10,
  });
}

/** The files of a run folder as tar entries under `run/`. */
function runEntries(dir: string): RawTarEntry[] {
  return ["manifest.json", "tensors.safetensors", "image.png", "input.png"].map((f) => ({
    name: `run/${f}`,
    data: fs.readFileSync(path.join(dir, f)),
  }));
}

/** The JSON answers these tests read. */
interface ApiBody {
  error: string;
  ok?: boolean;
  run?: { id: string };
}

async function json(res: Response): Promise<ApiBody> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`not JSON (HTTP ${res.status}): ${text.slice(0, 200)}`);
  }
}

/** Asserts a JSON error with this status whose message matches and names no host folder. */
async function expectError(res: Response, status: number, pattern: RegExp): Promise<string> {
  const body = await json(res);
  assert.equal(res.status, status, `status (body ${JSON.stringify(body)})`);
  assert.match(body.error, pattern);
  assert.ok(!body.error.includes(ts.dataDir) && !body.error.includes(outside), `host path in ${body.error}`);
  assert.ok(!body.error.includes("\n"), `one line: ${JSON.stringify(body.error)}`);
  return body.error;
}

const importBody = (body: Uint8Array) =>
  fetch(`${ts.base}/api/import`, {
    method: "POST",
    headers: { "content-type": "application/gzip" },
    body,
  });

/** What the data folder holds besides its index and scratch folder. */
const runFolders = () =>
  fs.readdirSync(ts.dataDir).filter((f) => !f.startsWith(".") && !f.startsWith("index"));

function assertNothingLeft(before: string[]): void {
  assert.deepEqual(runFolders().sort(), before.sort(), "no run folder added");
  assert.deepEqual(fs.readdirSync(path.join(ts.dataDir, ".tmp")), [], "no scratch left");
}

/** Resolves with the answer, or rejects after `ms` (an answer that never comes is a failure, not a hang). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A POST to /api/import whose body is written piece by piece and never ended by this helper. */
function openUpload(): { req: http.ClientRequest; answer: Promise<{ status: number; body: string }> } {
  const u = new URL(ts.base);
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path: "/api/import",
    method: "POST",
    headers: { "content-type": "application/gzip" },
  });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on("response", (res) => {
      let body = "";
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
  });
  return { req, answer };
}

const health = async () => {
  const res = await fetch(`${ts.base}/api/health`);
  assert.equal(res.status, 200);
  return json(res);
};

before(async () => {
  outside = tempDir("outside");
  const dataDir = tempDir("archive-data");
  for (const r of RUNS) smallRun(path.join(dataDir, r));
  smallRun(path.join(outside, "other-run"));
  const link = (run: string, file: string, target: string) => {
    fs.rmSync(path.join(dataDir, run, file), { recursive: true, force: true });
    fs.symlinkSync(target, path.join(dataDir, run, file));
  };
  link("to-passwd", "tensors.safetensors", "/etc/passwd");
  link("to-other-run", "tensors.safetensors", path.join(outside, "other-run", "tensors.safetensors"));
  // A relevancy file listed by the manifest, symlinked to a valid safetensors file outside.
  writeSafetensors(path.join(outside, "rel.safetensors"), [
    { name: "rel_x", dtype: "F32", shape: [1], data: new Float32Array([1]) },
  ]);
  const relManifest = path.join(dataDir, "rel-link", "manifest.json");
  const m = JSON.parse(fs.readFileSync(relManifest, "utf8"));
  fs.writeFileSync(relManifest, JSON.stringify({ ...m, tensor_files: ["rel.full.safetensors"] }));
  link("rel-link", "rel.full.safetensors", path.join(outside, "rel.safetensors"));
  // A causal folder that is a link to a folder outside holding a well-formed document.
  fs.mkdirSync(path.join(outside, "causal"));
  fs.writeFileSync(
    path.join(outside, "causal", "0.json"),
    JSON.stringify({
      format: "lvlm-causal/1",
      layer: 1,
      token_index: 0,
      token_id: 200,
      token: "t0",
      token_to_explain: 5,
      image_token_start: 1,
      image_token_count: 4,
      params: {},
      heads: [],
      patch_weights: { grid: [2, 2], sum: [], normalized: [] },
      timings_ms: { total: 0 },
    }),
  );
  link("causal-link", "causal", path.join(outside, "causal"));
  fs.rmSync(path.join(dataDir, "no-image", "image.png"));
  link("input-link", "input.png", path.join(outside, "other-run", "input.png"));
  ts = await startTestServer({ dataDir, limits: { maxUnpackedBytes: 48 * MiB } });
  assert.deepEqual(
    ts.server.store
      .list()
      .map((r) => r.id)
      .sort(),
    [...RUNS].sort(),
    "all runs indexed",
  );
});

after(async () => {
  await ts?.close();
  fs.rmSync(ts.dataDir, { recursive: true, force: true });
  fs.rmSync(outside, { recursive: true, force: true });
});

describe("import: decompression bombs", () => {
  test("a run plus 64 MiB of zeros is refused while it uploads; /api/health answers meanwhile", async () => {
    const before = runFolders();
    const run = path.join(ts.dataDir, "valid");
    // Two gzip members (one stream to gunzip): the run, then the bomb.
    const part1 = zlib.gzipSync(rawTar(runEntries(run), { end: false }));
    const part2 = zlib.gzipSync(rawTar([{ name: "run/zeros.bin", data: Buffer.alloc(64 * MiB) }]));
    assert.ok(part1.length + part2.length < 2 * MiB, "a small upload");
    const { req, answer } = openUpload();
    let answered = false;
    answer.then(
      () => {
        answered = true;
      },
      () => {},
    );
    try {
      req.write(part1);
      // The import is in flight (its upload is open): the server still answers.
      assert.equal((await within(health(), 10_000, "health during the import")).ok, true);
      assert.equal(answered, false, "the import waits for the rest of its upload");
      req.write(part2);
      const [h, res] = await Promise.all([
        within(health(), 10_000, "health while the bomb unpacks"),
        // Never ended by the client: the refusal must come while the upload is still open.
        within(answer, 30_000, "the import's answer before its upload ended"),
      ]);
      assert.equal(h.ok, true);
      assert.equal(res.status, 413, res.body);
      assert.match(
        JSON.parse(res.body).error,
        /48 MiB unpacked-size limit \(entry "run\/zeros\.bin" declares 67108864 bytes\); .* raise the server's --max-unpacked-mb$/,
      );
    } finally {
      req.destroy();
    }
    assertNothingLeft(before);
  });

  test("a run plus 24 MiB of zeros, under the size limit, is refused by the compression ratio", async () => {
    const before = runFolders();
    const body = rawTarGz([
      ...runEntries(path.join(ts.dataDir, "valid")),
      { name: "run/pad.bin", data: Buffer.alloc(24 * MiB) },
    ]);
    await expectError(
      await importBody(body),
      413,
      /expands more than 100× when unpacked \(a decompression bomb\?\).* raise the server's --max-import-ratio$/,
    );
    assertNothingLeft(before);
  });

  test("zeros after the tar's end blocks count too", async () => {
    const before = runFolders();
    const tar = Buffer.concat([rawTar(runEntries(path.join(ts.dataDir, "valid"))), Buffer.alloc(64 * MiB)]);
    await expectError(await importBody(zlib.gzipSync(tar)), 413, /decompression bomb|unpacked-size limit/);
    assertNothingLeft(before);
  });

  test("the running unpacked total is bounded even where no header declares the bytes", async () => {
    const store = RunStore.open(tempDir("bomb-store"));
    try {
      const tar = Buffer.concat([rawTar(runEntries(path.join(ts.dataDir, "valid"))), Buffer.alloc(8 * MiB)]);
      await assert.rejects(
        importArchive(store, Readable.from([zlib.gzipSync(tar)]), {
          maxArchiveBytes: 64 * MiB,
          maxUnpackedBytes: 4 * MiB,
          maxRatio: 1e9,
        }),
        (e: Error) =>
          e instanceof HttpError && e.status === 413 && /4 MiB unpacked-size limit/.test(e.message),
      );
      assert.deepEqual(store.list(), []);
      assert.deepEqual(fs.readdirSync(path.join(store.dataDir, ".tmp")), []);
    } finally {
      store.close();
      fs.rmSync(store.dataDir, { recursive: true, force: true });
    }
  });

  test("names that clash or carry newlines are refused in one line without host paths (found by fuzzing)", async () => {
    const before = runFolders();
    for (const second of ["run/image.png/x", "run/image.png/"]) {
      await expectError(
        await importBody(
          rawTarGz([
            { name: "run/image.png", data: "x" },
            {
              name: second,
              data: second.endsWith("/") ? undefined : "y",
              type: second.endsWith("/") ? "5" : "0",
            },
          ]),
        ),
        400,
        /rejected archive: entry "run\/image\.png(\/x)?" (is inside "image\.png", which is a file|appears twice)/,
      );
    }
    await expectError(await importBody(rawTarGz([{ name: "run/a\nb", data: "x" }])), 400, /unsafe name/);
    assertNothingLeft(before);
  });
});

describe("symlinks inside runs", () => {
  test("Run.open refuses symlinked tensor files, naming the file but no host path", () => {
    const cases: [string, RegExp][] = [
      ["to-passwd", /^tensors\.safetensors is a symbolic link; a run's files must be regular files/],
      ["to-other-run", /^tensors\.safetensors is a symbolic link/],
      ["rel-link", /^rel\.full\.safetensors is a symbolic link/],
    ];
    for (const [run, pattern] of cases) {
      assert.throws(
        () => Run.open(path.join(ts.dataDir, run)).close(),
        (e: Error) => {
          assert.match(e.message, pattern);
          assert.ok(!e.message.includes(ts.dataDir) && !e.message.includes("/etc"), e.message);
          return true;
        },
        run,
      );
    }
    // A symlinked manifest is refused as well.
    const dir = tempDir("manifest-link");
    try {
      smallRun(path.join(dir, "r"));
      fs.renameSync(path.join(dir, "r", "manifest.json"), path.join(dir, "m.json"));
      fs.symlinkSync(path.join(dir, "m.json"), path.join(dir, "r", "manifest.json"));
      assert.throws(() => Run.open(path.join(dir, "r")), /RunFileError: manifest\.json is a symbolic link/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the server answers 422 naming the file, never 500 or a host path", async () => {
    await expectError(
      await fetch(`${ts.base}/api/runs/to-passwd/attention/summary`),
      422,
      /^tensors\.safetensors is a symbolic link/,
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/to-other-run/attention/summary`),
      422,
      /^tensors\.safetensors is a symbolic link/,
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/rel-link/attention/summary`),
      422,
      /^rel\.full\.safetensors is a symbolic link/,
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/causal-link/causal/0`),
      422,
      /^causal is a symbolic link/,
    );
    // The server keeps serving good runs.
    assert.equal((await fetch(`${ts.base}/api/runs/valid/attention/summary`)).status, 200);
  });
});

describe("export sends only what imports back", () => {
  test("a valid run exports and imports back identical", async () => {
    const res = await fetch(`${ts.base}/api/runs/valid/export`);
    assert.equal(res.status, 200);
    const archive = Buffer.from(await res.arrayBuffer());
    const imp = await importBody(archive);
    const body = await json(imp);
    assert.equal(imp.status, 201, JSON.stringify(body));
    const id = body.run!.id;
    for (const f of ["manifest.json", "tensors.safetensors", "image.png", "input.png"])
      assert.deepEqual(
        fs.readFileSync(path.join(ts.dataDir, id, f)),
        fs.readFileSync(path.join(ts.dataDir, "valid", f)),
        f,
      );
    assert.equal((await fetch(`${ts.base}/api/runs/${id}`, { method: "DELETE" })).status, 200);
  });

  test("a run missing its image, or with a symlinked file, is refused with 409", async () => {
    await expectError(
      await fetch(`${ts.base}/api/runs/no-image/export`),
      409,
      /cannot be exported, it would not import back: image\.png is missing from the run/,
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/input-link/export`),
      409,
      /would not import back: input\.png is a symbolic link/,
    );
    await expectError(
      await fetch(`${ts.base}/api/runs/to-passwd/export`),
      409,
      /would not import back: tensors\.safetensors is a symbolic link/,
    );
  });
});
