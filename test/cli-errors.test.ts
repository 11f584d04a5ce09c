/**
 * Bad input through the real CLI: each failure is one readable `error:` line naming the problem, exit code
 * 1, no stack trace.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { SafetensorsFile, writeSafetensors } from "../src/hf/safetensors.js";
import { fixtureDir, ROOT, tempDir } from "./fixture-utils.js";

const CLI = path.join(ROOT, "dist/src/cli/main.js");
const SRC = fixtureDir("llava-tiny-llama");
const IMAGE = path.join(SRC, "image.png");
const work = tempDir("cli-errors");
after(() => fs.rmSync(work, { recursive: true, force: true }));

// ORT_DISABLE_TELEMETRY is left out so the CLI is tested as a user runs it (the engine must set it itself).
const { ORT_DISABLE_TELEMETRY: _telemetry, ...userEnv } = process.env;

/** Runs the CLI; `timeout` (ms) bounds a hang, which then reads as code null with the signal set. */
function runCli(args: string[], opts: { timeout?: number; env?: NodeJS.ProcessEnv } = {}) {
  const started = Date.now();
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    env: { ...userEnv, LVLM_DEBUG: "", ...opts.env },
    timeout: opts.timeout,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

/** A copy of the llama fixture with some files replaced. */
function modelWith(name: string, edit: (dir: string) => void): string {
  const dir = path.join(work, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(SRC)) fs.copyFileSync(path.join(SRC, f), path.join(dir, f));
  edit(dir);
  return dir;
}

// biome-ignore lint/suspicious/noExplicitAny: tests poke arbitrary config keys
function editConfig(dir: string, change: (c: Record<string, any>) => void): void {
  const file = path.join(dir, "config.json");
  const c = JSON.parse(fs.readFileSync(file, "utf8"));
  change(c);
  fs.writeFileSync(file, JSON.stringify(c));
}

/** Rewrite model.safetensors' header (keeping the data bytes) through `change`. */
function editHeader(
  dir: string,
  change: (h: Record<string, any>) => void,
  opts: { lengthDelta?: number } = {},
): void {
  const file = path.join(dir, "model.safetensors");
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  change(header);
  let json = Buffer.from(JSON.stringify(header));
  if (json.length < n) json = Buffer.concat([json, Buffer.alloc(n - json.length, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length + (opts.lengthDelta ?? 0)));
  fs.writeFileSync(file, Buffer.concat([len, json, buf.subarray(8 + n)]));
}

/** The CLI fails with one `error:` line matching `pattern`, exit code 1 and no stack; returns the run. */
function cliError(args: string[], pattern: RegExp, opts: { timeout?: number; env?: NodeJS.ProcessEnv } = {}) {
  const r = runCli(args, opts);
  assert.equal(r.code, 1, `exit code (signal ${r.signal}; stderr: ${r.stderr.slice(-2000)})`);
  const lines = r.stderr.trim().split("\n");
  const last = lines[lines.length - 1];
  assert.match(last, /^error: /);
  assert.match(last, pattern);
  assert.ok(!/\n\s+at /.test(r.stderr), `no stack trace expected:\n${r.stderr}`);
  return r;
}

function expectError(args: string[], pattern: RegExp): void {
  cliError(args, pattern);
}

const out = () => path.join(work, `out-${Math.random().toString(36).slice(2)}`);
const trace = (model: string, extra: string[] = []) => [
  "trace",
  "--model",
  model,
  "--image",
  IMAGE,
  "--prompt",
  "What is this?",
  "--out",
  out(),
  ...extra,
];

describe("trace: bad input gives one clear line", () => {
  test("an execution provider that does not exist, before the model loads", () => {
    const r = cliError(
      trace(SRC),
      /LVLM_INTERPRET_EP="gpu0" is not an execution provider \(expected one of: cpu, cuda, webgpu\)/,
      {
        env: { LVLM_INTERPRET_EP: "gpu0" },
      },
    );
    assert.ok(!r.stderr.includes("[load]"), r.stderr);
  });
  test("missing model folder", () =>
    expectError(trace(path.join(work, "nope")), /nope: model folder not found/));
  test("missing image", () =>
    expectError(
      ["trace", "--model", SRC, "--image", path.join(work, "none.png"), "--prompt", "q", "--out", out()],
      /none\.png: cannot read image/,
    ));
  test("unreadable image", () => {
    const f = path.join(work, "noise.png");
    fs.writeFileSync(f, Buffer.from("definitely not an image"));
    expectError(
      ["trace", "--model", SRC, "--image", f, "--prompt", "q", "--out", out()],
      /noise\.png: not a PNG, JPEG or WebP image/,
    );
  });
  test("truncated image", () => {
    const f = path.join(work, "cut.png");
    fs.writeFileSync(f, fs.readFileSync(IMAGE).subarray(0, 60));
    expectError(["trace", "--model", SRC, "--image", f, "--prompt", "q", "--out", out()], /cut\.png/);
  });
  test("unsupported text model type lists the supported ones", () => {
    const m = modelWith("phi", (d) => editConfig(d, (c) => (c.text_config.model_type = "phi")));
    expectError(
      trace(m),
      /unsupported text_config\.model_type "phi" \(supported: llama, mistral, gemma, qwen2\)/,
    );
  });
  test("unsupported vision model type", () => {
    const m = modelWith("vit", (d) => editConfig(d, (c) => (c.vision_config.model_type = "dinov2")));
    expectError(trace(m), /unsupported vision_config\.model_type "dinov2"/);
  });
  test("not a supported model type", () => {
    const m = modelWith("notllava", (d) => editConfig(d, (c) => (c.model_type = "idefics2")));
    expectError(
      trace(m),
      /model_type "idefics2" is not supported \(supported: llava, llava_next, llava_onevision, qwen2_vl, qwen2_5_vl\)/,
    );
  });
  test("invalid config JSON", () => {
    const m = modelWith("badjson", (d) => fs.writeFileSync(path.join(d, "config.json"), "{ nope"));
    expectError(trace(m), /config\.json: invalid JSON/);
  });
  test("safetensors header length beyond the file", () => {
    const m = modelWith("hdrlen", (d) => editHeader(d, () => {}, { lengthDelta: 50_000_000 }));
    expectError(trace(m), /model\.safetensors: header length \d+ goes beyond the file/);
  });
  test("safetensors header not JSON", () => {
    const m = modelWith("hdrjunk", (d) => {
      const f = path.join(d, "model.safetensors");
      const b = fs.readFileSync(f);
      b.fill(0x7b, 8, 40);
      fs.writeFileSync(f, b);
    });
    expectError(trace(m), /model\.safetensors: header is not valid JSON/);
  });
  test("safetensors offsets out of range", () => {
    const m = modelWith("oob", (d) =>
      editHeader(d, (h) => {
        const t = h["multi_modal_projector.linear_2.bias"];
        t.data_offsets = [t.data_offsets[0] + 1e9, t.data_offsets[1] + 1e9];
      }),
    );
    expectError(trace(m), /"multi_modal_projector\.linear_2\.bias" data .* outside the data section/);
  });
  test("safetensors overlapping tensors", () => {
    const m = modelWith("overlap", (d) =>
      editHeader(d, (h) => {
        const a = h["multi_modal_projector.linear_2.bias"];
        const b = h["multi_modal_projector.linear_1.bias"];
        b.data_offsets = [a.data_offsets[0], a.data_offsets[1]];
      }),
    );
    expectError(trace(m), /overlap/);
  });
  test("safetensors unknown dtype", () => {
    const m = modelWith("dtype", (d) =>
      editHeader(d, (h) => (h["multi_modal_projector.linear_2.bias"].dtype = "F8_E9")),
    );
    expectError(trace(m), /unknown dtype "F8_E9"/);
  });
  test("truncated safetensors data", () => {
    const m = modelWith("trunc", (d) => {
      const f = path.join(d, "model.safetensors");
      fs.truncateSync(f, fs.statSync(f).size - 1000);
    });
    expectError(trace(m), /outside the data section .*truncated/);
  });
  test("config/weight shape mismatch", () => {
    const m = modelWith("shape", (d) => editConfig(d, (c) => (c.text_config.intermediate_size = 200)));
    expectError(trace(m), /has shape \[176,64\] but config\.json implies \[200,64\]/);
  });
  test("missing tensor", () => {
    const m = modelWith("missing", (d) => {
      const f = path.join(d, "model.safetensors");
      const st = SafetensorsFile.open(f);
      const keep = [...st.tensors.values()].filter(
        (t) => t.name !== "language_model.model.layers.2.mlp.up_proj.weight",
      );
      const tensors = keep.map((t) => ({
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        data: new Uint8Array(st.readBytes(t.name)),
      }));
      st.close();
      writeSafetensors(f, tensors);
    });
    expectError(trace(m), /missing tensor "language_model\.model\.layers\.2\.mlp\.up_proj\.weight"/);
  });
  test("prompt longer than the model's context", () => {
    const m = modelWith("ctx", (d) => editConfig(d, (c) => (c.text_config.max_position_embeddings = 80)));
    expectError(trace(m), /exceeds the model's context of 80 positions/);
  });
  test("invalid option value", () => expectError([...trace(SRC), "--kernels", "gpu"], /--kernels/));
  test("invalid weight format", () => expectError([...trace(SRC), "--weights", "int4"], /--weights/));
  test("existing output directory is not overwritten", () => {
    const dir = out();
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "keep.txt"), "mine");
    expectError(["trace", "--model", SRC, "--image", IMAGE, "--prompt", "q", "--out", dir], /already exists/);
    assert.equal(fs.readFileSync(path.join(dir, "keep.txt"), "utf8"), "mine");
  });
});

describe("trace: a prompt longer than the model's context", () => {
  // 40,000 characters: onnxruntime's telemetry used to match the whole command line with a recursive regex
  // and overflow the stack (exit 139, no message) before the context check could run.
  const longPrompt = "a ".repeat(20_000);
  for (const kernels of ["ort", "auto", "ts"]) {
    test(`--kernels ${kernels}: one line, before the vision tower runs`, () => {
      const r = cliError(
        [
          "trace",
          "--model",
          SRC,
          "--image",
          IMAGE,
          "--prompt",
          longPrompt,
          "--out",
          out(),
          "--kernels",
          kernels,
        ],
        /prompt is \d+ tokens \(\d+ of them image tokens\); with 32 new tokens it exceeds the model's context of 4096 positions/,
        { timeout: 60_000 },
      );
      assert.ok(!r.stderr.includes("[vision]"), `the vision tower must not run:\n${r.stderr}`);
    });
  }
});

describe("trace: an --out that cannot be written fails at once", () => {
  const bound = 10_000;
  test("--out /proc/x: one line naming the folder, before the model loads", () => {
    const r = cliError(
      ["trace", "--model", SRC, "--image", IMAGE, "--prompt", "q", "--out", "/proc/x"],
      /\/proc\/x: cannot create folders in \/proc: .*\(ENOENT\); choose a writable folder/,
      { timeout: 60_000 },
    );
    assert.ok(r.ms < bound, `took ${r.ms} ms`);
    assert.ok(!r.stderr.includes("[load]"), r.stderr);
  });
  test("--out /proc/x/y (a missing parent that cannot be made) does not spin", () => {
    const r = cliError(
      ["trace", "--model", SRC, "--image", IMAGE, "--prompt", "q", "--out", "/proc/x/y"],
      /\/proc\/x\/y: cannot create folders in \/proc/,
      { timeout: 60_000 },
    );
    assert.ok(r.ms < bound, `took ${r.ms} ms`);
  });
  test("a file on the way", () => {
    const file = path.join(work, "a-file");
    fs.writeFileSync(file, "x");
    expectError(
      ["trace", "--model", SRC, "--image", IMAGE, "--prompt", "q", "--out", path.join(file, "run")],
      /a-file is a file, not a folder/,
    );
  });
  test("an existing --out is refused before the model is even loaded", () => {
    const dir = out();
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "keep.txt"), "mine");
    // The model folder is missing too: the --out refusal must come first.
    const r = cliError(
      ["trace", "--model", path.join(work, "no-model"), "--image", IMAGE, "--prompt", "q", "--out", dir],
      /already exists and is not empty \(choose another --out, remove it, or pass --overwrite\)/,
    );
    assert.ok(!r.stderr.includes("[load]"), r.stderr);
    assert.equal(fs.readFileSync(path.join(dir, "keep.txt"), "utf8"), "mine");
  });
  test("--overwrite still replaces an existing run", () => {
    const dir = out();
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "old.txt"), "old");
    const r = runCli([
      "trace",
      "--model",
      SRC,
      "--image",
      IMAGE,
      "--prompt",
      "q",
      "--out",
      dir,
      "--overwrite",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(fs.existsSync(path.join(dir, "manifest.json")));
    assert.ok(!fs.existsSync(path.join(dir, "old.txt")));
  });
  test("serve --data /proc/x/y: one line, does not spin", () => {
    const r = cliError(
      ["serve", "--model", SRC, "--data", "/proc/x/y", "--port", "0"],
      /\/proc\/x\/y: cannot create \/proc\/x: .*\(ENOENT\); choose a writable folder/,
      { timeout: 60_000 },
    );
    assert.ok(r.ms < bound, `took ${r.ms} ms`);
  });
});

test("trace through the CLI prints the answer and writes a complete run", () => {
  const dir = out();
  const r = runCli([
    "trace",
    "--model",
    SRC,
    "--image",
    IMAGE,
    "--prompt",
    "What shape is in the top left corner?",
    "--out",
    dir,
    "--max-new-tokens",
    "8",
    "--kernels",
    "ort",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const expected = JSON.parse(fs.readFileSync(path.join(SRC, "expected.json"), "utf8"));
  assert.equal(r.stdout.trim(), expected.generated_text_skip_special.trim());
  for (const f of ["manifest.json", "tensors.safetensors", "image.png", "input.png"])
    assert.ok(fs.existsSync(path.join(dir, f)), f);
  assert.deepEqual(
    fs.readdirSync(work).filter((f) => f.includes(".tmp-")),
    [],
    "no temp dirs left behind",
  );
});
