/**
 * `train` through the real CLI must never replace the shipped model unasked: its default --out is a new
 * folder, an existing --out is refused (one line, before any training) unless --overwrite is given, and an
 * --out or --checkpoint that cannot be created is one line at once.
 *
 * The CLI finds the shipped model through its own location (PROJECT_ROOT), so it runs from a copy of the
 * compiled sources in a scratch "project" whose models/llava-shapes is a stand-in with a marker file.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { ROOT, tempDir } from "./fixture-utils.js";

const project = tempDir("cli-train");
after(() => fs.rmSync(project, { recursive: true, force: true }));
fs.cpSync(path.join(ROOT, "dist/src"), path.join(project, "dist/src"), { recursive: true });
fs.copyFileSync(path.join(ROOT, "package.json"), path.join(project, "package.json"));
fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(project, "node_modules"), "dir");
const shipped = path.join(project, "models/llava-shapes");
fs.mkdirSync(shipped, { recursive: true });
fs.writeFileSync(path.join(shipped, "marker.txt"), "the shipped model");
const CLI = path.join(project, "dist/src/cli/main.js");

/** A few seconds of training: one step per stage, a tiny language model, one worker. */
const TINY = [
  "--steps",
  "2",
  "--vision-steps",
  "1",
  "--vision-easy-steps",
  "0",
  "--batch",
  "2",
  "--answer-batch",
  "2",
  "--turns",
  "1",
  "--text-dims",
  "16,32,1,2,1",
  "--workers",
  "1",
  "--eval-n",
  "2",
  "--eval-every",
  "100",
  "--warmup",
  "1",
];

function train(args: string[]) {
  const started = Date.now();
  const r = spawnSync(process.execPath, [CLI, "train", ...TINY, ...args], {
    cwd: project,
    encoding: "utf8",
    env: { ...process.env, LVLM_DEBUG: "" },
    timeout: 120_000,
  });
  return { code: r.status, signal: r.signal, stderr: r.stderr, ms: Date.now() - started };
}

function expectOneLineError(r: ReturnType<typeof train>, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit code (signal ${r.signal}; stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line expected:\n${r.stderr}`);
  assert.match(lines[0]!, /^error: /);
  assert.match(lines[0]!, pattern);
}

const marker = () => fs.readFileSync(path.join(shipped, "marker.txt"), "utf8");
const ckpt = (name: string) => path.join(project, ".train", name);

describe("train: the shipped model is never replaced unasked", () => {
  const trained = path.join(project, "models/llava-shapes-trained");

  test("the default --out is a new folder beside the shipped model", () => {
    const r = train(["--checkpoint", ckpt("a")]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(marker(), "the shipped model");
    assert.deepEqual(fs.readdirSync(shipped), ["marker.txt"]);
    assert.ok(fs.existsSync(path.join(trained, "model.safetensors")));
    assert.ok(fs.existsSync(path.join(trained, "training.json")));
  });

  test("an existing --out is refused in one line before training starts", () => {
    const before = fs.readFileSync(path.join(trained, "model.safetensors"));
    const r = train(["--checkpoint", ckpt("b")]);
    expectOneLineError(
      r,
      /models\/llava-shapes-trained: already exists and is not empty \(choose another --out, or pass --overwrite to replace it\)/,
    );
    assert.ok(!fs.existsSync(ckpt("b")), "no checkpoint made: nothing was trained");
    assert.deepEqual(fs.readFileSync(path.join(trained, "model.safetensors")), before);
  });

  test("--out on the shipped model is refused without --overwrite", () => {
    const r = train(["--checkpoint", ckpt("c"), "--out", shipped]);
    expectOneLineError(r, /llava-shapes: already exists and is not empty .*--overwrite/);
    assert.ok(!fs.existsSync(ckpt("c")));
    assert.deepEqual(fs.readdirSync(shipped), ["marker.txt"]);
  });

  test("--overwrite replaces an existing --out", () => {
    const r = train(["--checkpoint", ckpt("d"), "--overwrite"]);
    assert.equal(r.code, 0, r.stderr);
    const record = JSON.parse(fs.readFileSync(path.join(trained, "training.json"), "utf8"));
    assert.equal(record.steps_done, 2);
    assert.deepEqual(
      fs.readdirSync(path.dirname(trained)).filter((f) => f.includes(".tmp-")),
      [],
      "no staging folder left behind",
    );
    assert.equal(marker(), "the shipped model");
  });
});

describe("train: output folders that cannot be created fail at once", () => {
  test("--out /proc/x", () => {
    const r = train(["--checkpoint", ckpt("e"), "--out", "/proc/x"]);
    expectOneLineError(r, /\/proc\/x: cannot create folders in \/proc: .*\(ENOENT\)/);
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
  });
  test("--checkpoint /proc/x/y does not spin", () => {
    const r = train(["--checkpoint", "/proc/x/y", "--out", path.join(project, "out-f")]);
    expectOneLineError(r, /\/proc\/x\/y: cannot create \/proc\/x: .*\(ENOENT\)/);
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
  });
});
