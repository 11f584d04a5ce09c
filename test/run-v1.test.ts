/**
 * A run directory written by the previous format (`lvlm-trace/1`, test/fixtures/v1-run-llava-tiny-llama, made
 * by the main branch before format 2) opens in the library (converted on read: positions, boxes on the
 * original picture), in the CLI (relevancy and causal add to it and it stays format 1, with the same numbers as
 * a format-2 run of the same question), and in the app (listed, its views, a relevancy job, archive import).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import * as tar from "tar";
import type { CausalDocument } from "../src/interpret/causal/explain-run.js";
import { createKernels } from "../src/kernels/index.js";
import { loadModel } from "../src/models/registry.js";
import { RUN_FORMAT, RUN_FORMAT_V1 } from "../src/run/manifest.js";
import { Run, readRunManifest } from "../src/run/run-dir.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { traceWithModel } from "../src/trace.js";
import { fixtureDir, ROOT, tempDir } from "./fixture-utils.js";
import { clipPatchBoxes } from "./processor-geometry.js";
import { readJobEvents, startTestServer, type TestServer } from "./server-utils.js";

const V1 = path.join(ROOT, "test/fixtures/v1-run-llava-tiny-llama");
const MODEL = fixtureDir("llava-tiny-llama");
const work = tempDir("v1");
after(() => fs.rmSync(work, { recursive: true, force: true }));

function copyRun(name: string): string {
  const dir = path.join(work, name);
  fs.cpSync(V1, dir, { recursive: true });
  return dir;
}

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [path.join(ROOT, "dist/src/cli/main.js"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, LVLM_DEBUG: "" },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const rawV1 = () => JSON.parse(fs.readFileSync(path.join(V1, "manifest.json"), "utf8"));

describe("a format-1 run in the library", () => {
  test("opens converted: format 2 in memory, positions and boxes of its one span on the original picture", () => {
    assert.equal(rawV1().format, RUN_FORMAT_V1);
    const run = Run.open(V1);
    try {
      assert.equal(run.storedFormat, 1);
      const m = run.manifest;
      assert.equal(m.format, RUN_FORMAT);
      assert.equal(m.model.model_type, "llava");
      assert.equal(m.model.position_axes, 1);
      assert.deepEqual(m.image_layout.original_size, [157, 100]);
      const { positions, boxes } = run.imageTokens();
      assert.deepEqual(
        positions,
        Array.from({ length: 64 }, (_, i) => 5 + i),
      );
      const want = clipPatchBoxes(157, 100, 112, 112, 14, 8);
      let d = 0;
      want.forEach((b, i) => {
        for (let k = 0; k < 4; k++) d = Math.max(d, Math.abs(boxes[i * 4 + k] - b[k]));
      });
      assert.ok(d <= 1e-4, `max |Δ box| = ${d}`);
    } finally {
      run.close();
    }
    assert.equal(readRunManifest(V1)?.format, RUN_FORMAT);
  });
});

describe("a format-1 run in the CLI", () => {
  const v1 = copyRun("cli-v1");
  const v2 = path.join(work, "cli-v2");
  before(async () => {
    // The same question through today's engine, for the numbers to compare with.
    const m = rawV1();
    const model = loadModel(MODEL);
    const kernels = await createKernels("ts");
    try {
      const { manifest } = await traceWithModel(model, kernels, {
        image: { bytes: fs.readFileSync(path.join(V1, m.original_image_file)), name: "image.png" },
        prompt: m.prompt,
        maxNewTokens: m.settings.max_new_tokens,
        temperature: 0,
        topP: 1,
        seed: 0,
        imageMode: "default",
        attnDtype: "f16",
        out: v2,
      });
      assert.deepEqual(manifest.input_ids, m.input_ids);
      assert.deepEqual(manifest.generated_ids, m.generated_ids);
    } finally {
      await kernels.dispose();
      model.close();
    }
  });

  test("relevancy: computed on the format-1 run, equal to format 2's, the run stays format 1", () => {
    for (const dir of [v1, v2]) {
      const r = cli([
        "relevancy",
        "--run",
        dir,
        "--model",
        MODEL,
        "--mode",
        "exact",
        "--vision",
        "all,chain",
      ]);
      assert.equal(r.code, 0, r.stderr);
    }
    const raw = JSON.parse(fs.readFileSync(path.join(v1, "manifest.json"), "utf8"));
    assert.equal(raw.format, RUN_FORMAT_V1, "still format 1 on disk");
    assert.deepEqual(raw.tensor_files, ["rel.exact.safetensors"]);
    assert.deepEqual(raw.extras.relevancy.exact.computed.llm, [0, 1]);
    assert.equal(raw.image_token_start, 5, "format-1 fields kept");
    const a = Run.open(v1);
    const b = Run.open(v2);
    try {
      for (const name of ["rel.llm.exact", "rel.all.exact", "rel.chain.exact"]) {
        const x = a.tensor(name);
        const y = b.tensor(name);
        assert.deepEqual(x.shape, y.shape);
        assert.ok(maxAbsDiff(x.data, y.data) <= 1e-6, name);
      }
    } finally {
      a.close();
      b.close();
    }
  });

  test("causal: the same explanation as format 2's", () => {
    for (const dir of [v1, v2]) {
      const r = cli(["causal", "--run", dir, "--token", "1", "--jobs", "1"]);
      assert.equal(r.code, 0, r.stderr);
    }
    // The two runs' f16 attentions come from two traces (the earlier engine's, today's): the same graphs, and
    // weights equal to float rounding.
    const read = (dir: string): CausalDocument =>
      JSON.parse(fs.readFileSync(path.join(dir, "causal", "1.json"), "utf8"));
    const x = read(v1);
    const y = read(v2);
    const graph = (d: CausalDocument) =>
      d.heads.map((h) => [
        h.nodes,
        h.edges,
        h.explanation,
        h.explanation_image_patches,
        h.explanation_per_radius,
      ]);
    assert.deepEqual(graph(x), graph(y));
    x.heads.forEach((h, i) => {
      const d = maxAbsDiff(
        Float32Array.from(h.image_expla_weights),
        Float32Array.from(y.heads[i].image_expla_weights),
      );
      assert.ok(d <= 1e-4, `head ${h.head}: ${d}`);
    });
    assert.equal(x.image_token_start, 5);
    assert.equal(x.image_token_count, 64);
    assert.deepEqual(x.patch_weights.grid, [8, 8]);
    assert.ok(x.heads.some((h) => h.explanation_image_patches.length > 0));
  });
});

describe("a format-1 run in the app", () => {
  let ts: TestServer;
  const id = "old-run-v1";
  before(async () => {
    ts = await startTestServer();
    fs.cpSync(V1, path.join(ts.dataDir, id), { recursive: true });
  });
  after(async () => {
    await ts.close();
    fs.rmSync(ts.dataDir, { recursive: true, force: true });
  });
  const json = async (p: string, init?: RequestInit) => {
    const r = await fetch(`${ts.base}${p}`, init);
    // biome-ignore lint/suspicious/noExplicitAny: the API's JSON, checked field by field below
    const body: any = await r.json();
    assert.ok(r.status < 300, `${p}: ${r.status} ${JSON.stringify(body)}`);
    return body;
  };

  test("listed, its detail with the image geometry, its attention views", async () => {
    const list = await json("/api/runs");
    assert.ok(list.runs.some((r: { id: string; n_tokens: number }) => r.id === id && r.n_tokens === 2));
    const d = await json(`/api/runs/${id}`);
    assert.deepEqual([d.image.width, d.image.height], [157, 100]);
    assert.deepEqual(d.image.positions[0], 5);
    const [x0, , x1] = d.image.grids[0].frame;
    assert.ok(Math.abs(x0 - (31 * 157) / 175) < 1e-9 && Math.abs(x1 - (143 * 157) / 175) < 1e-9);
    const s = await json(`/api/runs/${id}/attention/summary`);
    assert.equal(s.imageTokens, 64);
    const h = await json(`/api/runs/${id}/attention/heads?layer=3`);
    assert.equal(h.heads[0].map.length, 64);
  });

  test("a relevancy job on it, then its maps; causal too", async () => {
    const post = (p: string, body: unknown) =>
      json(p, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const { job } = await post(`/api/runs/${id}/relevancy`, { mode: "exact", kind: "chain", tokens: [1] });
    assert.equal((await readJobEvents(ts.base, job.id)).at(-1)!.type, "done");
    const maps = await json(`/api/runs/${id}/relevancy/maps?mode=exact&kind=chain&by=token`);
    assert.equal(maps.items.length, 1);
    assert.equal(maps.items[0].map.length, 64);
    assert.ok(maps.items[0].map.every((v: number | null) => typeof v === "number"));
    const c = await post(`/api/runs/${id}/causal`, { token: 0 });
    assert.equal((await readJobEvents(ts.base, c.job.id)).at(-1)!.type, "done");
    const view = await json(`/api/runs/${id}/causal/0`);
    assert.equal(view.patchWeights.length, 64);
    assert.equal(
      JSON.parse(fs.readFileSync(path.join(ts.dataDir, id, "manifest.json"), "utf8")).format,
      RUN_FORMAT_V1,
    );
  });

  test("imported from an archive", async () => {
    const file = path.join(work, "v1.tar.gz");
    await tar.create({ gzip: true, file, cwd: path.dirname(V1) }, [path.basename(V1)]);
    const r = await fetch(`${ts.base}/api/import`, {
      method: "POST",
      headers: { "content-type": "application/gzip" },
      body: fs.readFileSync(file),
    });
    const body = (await r.json()) as { run: { id: string } };
    assert.equal(r.status, 201, JSON.stringify(body));
    const d = await json(`/api/runs/${body.run.id}`);
    assert.equal(d.image.boxes.length, 64);
  });
});
