/**
 * `lvlm-interpret batch` end to end on the default model (models/llava-shapes): a JSONL pair set made by
 * make:pairs' generator and an MMVP-layout folder (2 pairs each): run directories, report fields, accuracy
 * equal to a recount from the runs, resume (finished items skipped, an interrupted one redone), and one-line
 * errors for bad datasets.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import sharp from "sharp";
import { judgeAnswer } from "../src/batch/answers.js";
import type { BatchReport } from "../src/batch/report.js";
import { encodePng } from "../src/hf/image-decode.js";
import { CAUSAL_FORMAT } from "../src/interpret/causal/explain-run.js";
import { TENSORS_FILE } from "../src/run/run-dir.js";
import { makePair } from "../src/shapes/pairs.js";
import { ROOT, tempDir } from "./fixture-utils.js";

const MODEL = path.join(ROOT, "models/llava-shapes");
const CLI = path.join(ROOT, "dist/src/cli/main.js");

function batch(args: string[]) {
  const r = spawnSync(
    process.execPath,
    [CLI, "batch", "--model", MODEL, "--relevancy", "incremental", ...args],
    {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, LVLM_DEBUG: "" },
    },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function pairSet(): string {
  const dir = tempDir("batch-pairs");
  fs.mkdirSync(path.join(dir, "images"));
  const lines: string[] = [];
  for (let i = 0; i < 2; i++) {
    const p = makePair(7, i);
    for (const [side, s] of [
      ["a", p.a],
      ["b", p.b],
    ] as const) {
      const id = `p${i}-${side}`;
      fs.writeFileSync(path.join(dir, "images", `${id}.png`), encodePng(s.image));
      lines.push(
        JSON.stringify({
          id,
          image: `images/${id}.png`,
          question: p.question,
          answer: s.answer,
          pair: `p${i}`,
          box: s.box,
        }),
      );
    }
  }
  fs.writeFileSync(path.join(dir, "pairs.jsonl"), `${lines.join("\n")}\n`);
  return path.join(dir, "pairs.jsonl");
}

const readReport = (out: string): BatchReport =>
  JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"));
const manifest = (out: string, id: string) =>
  JSON.parse(fs.readFileSync(path.join(out, "runs", id, "manifest.json"), "utf8"));

describe("batch command", () => {
  test("JSONL pairs: runs, report fields, accuracy recounted from the runs, resume", () => {
    const dataset = pairSet();
    const out = path.join(tempDir("batch-out"), "b");

    // First two items only, then the rest: the second call skips the finished ones.
    const first = batch(["--dataset", dataset, "--out", out, "--limit", "2"]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(readReport(out).items.length, 2);
    assert.match(first.stderr, /\[batch\] 1\/2 p0-a: .* · ETA \d+ s/);
    const mtime = fs.statSync(path.join(out, "runs/p0-a/manifest.json")).mtimeMs;

    const second = batch(["--dataset", dataset, "--out", out]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal((second.stderr.match(/\(done before\)/g) ?? []).length, 2, second.stderr);
    assert.match(second.stderr, /\[batch\] 3\/4 p1-a: /);
    assert.equal(
      fs.statSync(path.join(out, "runs/p0-a/manifest.json")).mtimeMs,
      mtime,
      "finished item untouched",
    );

    const r = readReport(out);
    assert.equal(r.format, "lvlm-interpret-batch/1");
    assert.equal(r.complete, true);
    assert.equal(r.dataset.kind, "jsonl");
    assert.equal(r.settings.relevancy, "incremental");
    assert.deepEqual(
      r.items.map((i) => [i.id, i.pair, i.run]),
      [
        ["p0-a", "p0", "runs/p0-a"],
        ["p0-b", "p0", "runs/p0-b"],
        ["p1-a", "p1", "runs/p1-a"],
        ["p1-b", "p1", "runs/p1-b"],
      ],
    );
    let recount = 0;
    for (const it of r.items) {
      const m = manifest(out, it.id);
      assert.equal(it.answer, m.answer);
      assert.equal(it.match, "text");
      const right = judgeAnswer(m.answer, it.expected, null).correct;
      assert.equal(it.correct, right);
      if (right) recount++;
      for (const k of ["lvlm", "lvlm_mean", "image_share", "image_share_mean"] as const) {
        const v = it.reliance![k];
        assert.ok(v >= 0 && v <= 1, `${it.id} ${k} = ${v}`);
      }
      assert.ok(it.top_words.length > 0 && it.top_words.length <= 3);
      assert.ok(
        !it.top_words.some((w) => /assistant/i.test(w.word)),
        "the template's tail is not a question word",
      );
      assert.ok(it.pointing === null || (it.pointing.hit >= 0 && it.pointing.hit <= 1));
      assert.ok(it.seconds > 0);
    }
    const a = r.aggregates;
    assert.equal(a.correct, recount);
    assert.equal(a.accuracy, recount / 4);
    assert.equal(a.pairs.n, 2);
    assert.equal(a.pairs.both + a.pairs.one + a.pairs.none, 2);
    assert.equal(a.reliance.image_share.right.n + a.reliance.image_share.wrong.n, 4);
    for (const p of r.plots) {
      const png = fs.readFileSync(path.join(out, p));
      assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], `${p} is a PNG`);
    }
    assert.equal(r.plots.length, 2);
    assert.match(fs.readFileSync(path.join(out, "report.md"), "utf8"), new RegExp(`Accuracy: ${recount}/4`));

    // An interrupted item (folder without a manifest) is redone; the others are skipped.
    fs.rmSync(path.join(out, "runs/p1-b/manifest.json"));
    const third = batch(["--dataset", dataset, "--out", out]);
    assert.equal(third.code, 0, third.stderr);
    assert.equal((third.stderr.match(/\(done before\)/g) ?? []).length, 3, third.stderr);
    assert.ok(fs.existsSync(path.join(out, "runs/p1-b/manifest.json")));
    assert.equal(readReport(out).items.length, 4);

    // An item whose question changed in the dataset is stale: redone, not skipped.
    const lines = fs.readFileSync(dataset, "utf8").trim().split("\n");
    lines[0] = JSON.stringify({ ...JSON.parse(lines[0]), question: "How many shapes are there?" });
    fs.writeFileSync(dataset, `${lines.join("\n")}\n`);
    const fourth = batch(["--dataset", dataset, "--out", out]);
    assert.equal(fourth.code, 0, fourth.stderr);
    assert.doesNotMatch(fourth.stderr, /p0-a \(done before\)/);
    assert.equal((fourth.stderr.match(/\(done before\)/g) ?? []).length, 3, fourth.stderr);
    assert.equal(manifest(out, "p0-a").prompt, "How many shapes are there?");
    assert.equal(readReport(out).model.weights, "stored");

    // Resumed with the other --weights: every item is redone with them, none mixed in from before.
    const fifth = batch(["--dataset", dataset, "--out", out, "--weights", "int8", "--limit", "2"]);
    assert.equal(fifth.code, 0, fifth.stderr);
    assert.doesNotMatch(fifth.stderr, /\(done before\)/);
    assert.equal(manifest(out, "p0-a").model.weights, "int8");
    assert.equal(manifest(out, "p0-b").model.weights, "int8");
    assert.equal(readReport(out).model.weights, "int8");
  });

  test("MMVP layout: Questions.csv + 1.jpg…4.jpg, options judged by letter, consecutive items paired", async () => {
    const dir = tempDir("batch-mmvp");
    const rows = ["Index,Question,Options,Correct Answer"];
    for (let i = 0; i < 2; i++) {
      const p = makePair(7, 4 * i); // colour pairs
      for (const [k, s] of [p.a, p.b].entries()) {
        const n = 2 * i + k + 1;
        await sharp(Buffer.from(s.image.data), {
          raw: { width: s.image.width, height: s.image.height, channels: 3 },
        })
          .jpeg({ quality: 95 })
          .toFile(path.join(dir, `${n}.jpg`));
        const other = s.answer === "red" ? "green" : "red";
        const letter = n % 2 ? "(a)" : "(b)";
        const opts = n % 2 ? `(a) ${s.answer} (b) ${other}` : `(a) ${other} (b) ${s.answer}`;
        rows.push(`${n},"${p.question}",${opts},${letter}`);
      }
    }
    fs.writeFileSync(path.join(dir, "Questions.csv"), `${rows.join("\n")}\n`);
    const out = path.join(tempDir("batch-out"), "m");
    const r1 = batch(["--dataset", dir, "--out", out]);
    assert.equal(r1.code, 0, r1.stderr);
    const r = readReport(out);
    assert.equal(r.dataset.kind, "mmvp");
    assert.deepEqual(
      r.items.map((i) => [i.id, i.pair, i.match]),
      [
        ["1", "1", "letter"],
        ["2", "1", "letter"],
        ["3", "2", "letter"],
        ["4", "2", "letter"],
      ],
    );
    assert.equal(r.items[0].options!.length, 2);
    assert.match(manifest(out, "1").prompt, / \(a\) .+ \(b\) /);
    assert.equal(r.aggregates.pairs.n, 2);
  });

  test("--vision and --causal: maps for every answer token, a causal explanation, added later without re-tracing", () => {
    const dataset = pairSet();
    const out = path.join(tempDir("batch-vision"), "v");
    const first = batch(["--dataset", dataset, "--out", out, "--limit", "1", "--vision", "vit", "--causal"]);
    assert.equal(first.code, 0, first.stderr);
    const runDir = path.join(out, "runs/p0-a");
    const m = manifest(out, "p0-a");
    const G = m.generated_ids.length;
    const all = Array.from({ length: G }, (_, t) => t);
    const rec = m.extras.relevancy.incremental;
    assert.deepEqual(rec.computed.llm, all);
    assert.deepEqual(rec.computed.vit, all);
    assert.equal(rec.computed.chain, undefined, "only the maps asked for");
    const causalFiles = fs.readdirSync(path.join(runDir, "causal")).filter((f) => f.endsWith(".json"));
    assert.equal(causalFiles.length, 1, causalFiles.join());
    const doc = JSON.parse(fs.readFileSync(path.join(runDir, "causal", causalFiles[0]), "utf8"));
    assert.equal(doc.format, CAUSAL_FORMAT);
    assert.equal(readReport(out).settings.causal, true);

    // Same settings again: nothing to do. More maps later: added to the same runs, the trace kept.
    const tensors = path.join(runDir, TENSORS_FILE);
    const traced = fs.statSync(tensors).mtimeMs;
    const again = batch(["--dataset", dataset, "--out", out, "--limit", "1", "--vision", "vit", "--causal"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /p0-a \(done before\)/);
    const more = batch(["--dataset", dataset, "--out", out, "--limit", "1", "--vision", "vit,chain"]);
    assert.equal(more.code, 0, more.stderr);
    assert.doesNotMatch(more.stderr, /p0-a \(done before\)/);
    assert.equal(fs.statSync(tensors).mtimeMs, traced, "not traced again");
    const rec2 = manifest(out, "p0-a").extras.relevancy.incremental;
    assert.deepEqual(rec2.computed.chain, all);
    assert.deepEqual(rec2.computed.vit, all);
  });

  test("bad datasets: one-line errors naming the file and line, nothing run", () => {
    const dir = tempDir("batch-bad");
    const out = path.join(dir, "out");
    const jsonl = path.join(dir, "d.jsonl");
    fs.writeFileSync(path.join(dir, "x.png"), encodePng(makePair(1, 0).a.image));
    const check = (dataset: string, re: RegExp) => {
      const r = batch(["--dataset", dataset, "--out", out]);
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], re);
      assert.ok(!fs.existsSync(path.join(out, "report.json")));
    };
    fs.writeFileSync(jsonl, '{"id":"a","image":"x.png","question":"q?"}\n{"id":"b", image}\n');
    check(jsonl, /^error: .*d\.jsonl:2: not valid JSON/);
    fs.writeFileSync(jsonl, '{"id":"a","image":"missing.png","question":"q?"}\n');
    check(jsonl, /^error: .*d\.jsonl:1: image "missing\.png" not found/);
    fs.writeFileSync(path.join(dir, "Questions.csv"), "Index,Question,Options\n1,q,(a) x (b) y\n");
    check(dir, /^error: .*Questions\.csv:1: column "Correct Answer" missing/);

    fs.writeFileSync(jsonl, '{"id":"a","image":"x.png","question":"q?"}\n');
    const r = batch(["--dataset", jsonl, "--out", path.join(dir, "x.png")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr.trim(), /^error: .*x\.png: --out is a file; pass a folder/);
  });
});
