/**
 * The batch's building blocks: the Mann–Whitney rank test (hand-checked examples), answer judging, the
 * dataset readers' one-line errors (file and line named), the template-tail probe and box coverage.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { judgeAnswer, normaliseAnswer, optionIndex, promptFor } from "../src/batch/answers.js";
import { parseCsv } from "../src/batch/csv.js";
import { DatasetError, parseMmvpOptions, readDataset } from "../src/batch/dataset.js";
import { boxCoverage } from "../src/batch/item-scores.js";
import { averageRanks, mannWhitneyU } from "../src/batch/rank-test.js";
import { aggregate, type ItemRecord } from "../src/batch/report.js";
import { templateTailLength } from "../src/interpret/views/relevancy-views.js";
import { tempDir } from "./fixture-utils.js";

describe("Mann–Whitney U", () => {
  test("ties share their average rank", () => {
    assert.deepEqual(averageRanks([3, 5, 5, 1, 5]), [2, 4, 4, 1, 4]);
  });

  test("hand-checked example with ties: a = [3, 5, 5], b = [1, 5]", () => {
    // Pairs a > b: 3>1, 5>1, 5>1 = 3; ties 5=5 twice = 2 × ½ → U = 4 of 6.
    // σ² = (3·2/12)·(6 − (3³−3)/(5·4)) = 0.5 · 4.8 = 2.4; z = (|4 − 3| − ½)/√2.4 = 0.32275;
    // p = 2·(1 − Φ(0.32275)) = 0.74688 (scipy.stats.mannwhitneyu(method="asymptotic"): 0.7468856).
    const r = mannWhitneyU([3, 5, 5], [1, 5])!;
    assert.equal(r.u, 4);
    assert.ok(Math.abs(r.auc - 4 / 6) < 1e-12);
    assert.ok(Math.abs(r.z - 0.5 / Math.sqrt(2.4)) < 1e-12);
    assert.ok(Math.abs(r.p - 0.7468856) < 1e-5, `p = ${r.p}`);
  });

  test("fully separated samples: U = 0, p = 0.01219 (5 vs 5)", () => {
    // σ = √(25·11/12) = 4.78714; z = −(12.5 − ½)/σ = −2.50671; p = 0.012186 (scipy: 0.0121858).
    const r = mannWhitneyU([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])!;
    assert.equal(r.u, 0);
    assert.equal(r.auc, 0);
    assert.ok(Math.abs(r.z + 2.50671) < 1e-4, `z = ${r.z}`);
    assert.ok(Math.abs(r.p - 0.012186) < 1e-5, `p = ${r.p}`);
    assert.equal(mannWhitneyU([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])!.u, 25);
  });

  test("an empty group gives no test; all values tied gives p = 1", () => {
    assert.equal(mannWhitneyU([], [1]), null);
    assert.equal(mannWhitneyU([2, 2], [2, 2])!.p, 1);
  });
});

describe("answers", () => {
  test("free answers compare normalised text", () => {
    assert.equal(normaliseAnswer(" The Red."), "red");
    assert.deepEqual(judgeAnswer("red</s>", "Red", null), { correct: true, match: "text" });
    assert.deepEqual(judgeAnswer("blue", "red", null), { correct: false, match: "text" });
    assert.deepEqual(judgeAnswer("blue", null, null), { correct: null, match: null });
  });

  test("multiple choice compares option letters, whichever way the model names the option", () => {
    const opts = ["Open", "Closed"];
    assert.equal(promptFor("Is the door open?", opts), "Is the door open? (a) Open (b) Closed");
    assert.equal(optionIndex("(b)", opts), 1);
    assert.equal(optionIndex("b", opts), 1);
    assert.equal(optionIndex("(a) Open", opts), 0);
    assert.equal(optionIndex("closed", opts), 1);
    assert.equal(optionIndex("It is closed.", opts), 1);
    assert.equal(optionIndex("a circle", ["circle", "square"]), 0); // "a" here is an article, not option (a)
    assert.deepEqual(judgeAnswer("(b) Closed", "(b)", opts), { correct: true, match: "letter" });
    assert.deepEqual(judgeAnswer("Open", "(b)", opts), { correct: false, match: "letter" });
    assert.deepEqual(parseMmvpOptions("(a) Open (b) Closed"), ["Open", "Closed"]);
  });
});

describe("dataset readers", () => {
  function jsonl(lines: string[], images: string[] = ["x.png"]): string {
    const dir = tempDir("batch-ds-");
    for (const im of images) fs.writeFileSync(path.join(dir, im), "not read here");
    const f = path.join(dir, "d.jsonl");
    fs.writeFileSync(f, lines.join("\n"));
    return f;
  }
  const oneLine = (f: () => unknown, re: RegExp) =>
    assert.throws(f, (e: Error) => {
      assert.ok(e instanceof DatasetError, String(e));
      assert.ok(!e.message.includes("\n"), e.message);
      assert.match(e.message, re);
      return true;
    });

  test("JSONL: items with relative images, pairs, boxes and options", () => {
    const f = jsonl([
      '{"id":"a 1","image":"x.png","question":"q?","answer":"red","pair":"p","box":[1,2,3,4]}',
      "",
      '{"id":2,"image":"x.png","question":"q?","options":["x","y"]}',
    ]);
    const ds = readDataset(f);
    assert.equal(ds.kind, "jsonl");
    assert.equal(ds.items.length, 2);
    assert.equal(ds.items[0].id, "a_1");
    assert.equal(ds.items[0].imagePath, path.join(path.dirname(f), "x.png"));
    assert.deepEqual(ds.items[0].box, [1, 2, 3, 4]);
    assert.equal(ds.items[1].answer, null);
    assert.deepEqual(ds.items[1].options, ["x", "y"]);
  });

  test("JSONL errors name the file and line", () => {
    oneLine(
      () => readDataset(jsonl(['{"id":"a","image":"x.png","question":"q"}', "{oops"])),
      /d\.jsonl:2: not valid JSON/,
    );
    oneLine(
      () => readDataset(jsonl(['{"id":"a","image":"gone.png","question":"q"}'])),
      /d\.jsonl:1: image "gone\.png" not found/,
    );
    oneLine(() => readDataset(jsonl(['{"id":"a","image":"x.png"}'])), /d\.jsonl:1: "question" is missing/);
    oneLine(
      () => readDataset(jsonl(['{"id":"a","image":"x.png","question":"q","box":[3,0,1,1]}'])),
      /d\.jsonl:1: "box"/,
    );
    oneLine(
      () =>
        readDataset(
          jsonl(['{"id":"a","image":"x.png","question":"q"}', '{"id":"a","image":"x.png","question":"q"}']),
        ),
      /item 2 has the id "a" of item 1/,
    );
    oneLine(() => readDataset(path.join(tempDir("batch-ds-"), "none.jsonl")), /dataset not found/);
  });

  test("MMVP layout: Questions.csv with quoted cells; consecutive indices form pairs; errors name the line", () => {
    const dir = tempDir("batch-mmvp-");
    for (const i of [1, 2]) fs.writeFileSync(path.join(dir, `${i}.jpg`), "x");
    fs.writeFileSync(
      path.join(dir, "Questions.csv"),
      'Index,Question,Options,Correct Answer\n1,"Is the door open, or closed?",(a) Open (b) Closed,(a)\n2,Is the door open?,(a) Open (b) Closed,(b)\n',
    );
    const ds = readDataset(dir);
    assert.equal(ds.kind, "mmvp");
    assert.deepEqual(
      ds.items.map((i) => [i.id, i.pair, i.question, i.answer]),
      [
        ["1", "1", "Is the door open, or closed?", "(a)"],
        ["2", "1", "Is the door open?", "(b)"],
      ],
    );
    fs.writeFileSync(path.join(dir, "Questions.csv"), "Index,Question,Correct Answer\n1,q,(a)\n");
    oneLine(() => readDataset(dir), /Questions\.csv:1: column "Options" missing/);
    fs.writeFileSync(
      path.join(dir, "Questions.csv"),
      "Index,Question,Options,Correct Answer\n1,q,(a) x (b) y,(a)\n3,q,(a) x (b) y,(a)\n",
    );
    oneLine(() => readDataset(dir), /Questions\.csv:3: image 3\.jpg not found/);
    oneLine(() => readDataset(tempDir("batch-mmvp-")), /must hold MMVP's Questions\.csv/);
    assert.deepEqual(parseCsv('a,"b ""c"", d"\r\n1,2', "t.csv"), [
      ["a", 'b "c", d'],
      ["1", "2"],
    ]);
    assert.throws(() => parseCsv('a,"b\n', "t.csv"), /t\.csv:1: quoted field never closed/);
  });
});

describe("scores", () => {
  test("template tail: word-level and sub-word vocabularies", () => {
    // Word-level: unknown words become <unk> (0); tail "assistant", ":" = [13, 7].
    const word = (q: string) => [1, 4, 4, ...q.split(" ").map(() => 0), 13, 7];
    assert.equal(templateTailLength(word), 2);
    // Sub-word: "zebra" = [50, 51]; tail of three tokens.
    const sub = (q: string) => [1, 4, ...q.split(" ").flatMap(() => [50, 51]), 9, 13, 7];
    assert.equal(templateTailLength(sub), 3);
  });

  test("box coverage: the share of each token box inside the object box; no place, no coverage", () => {
    const boxes = Float32Array.from([
      0,
      0,
      10,
      10,
      10,
      0,
      20,
      10,
      Number.NaN,
      Number.NaN,
      Number.NaN,
      Number.NaN,
    ]);
    assert.deepEqual([...boxCoverage(boxes, [5, 0, 10, 10])], [0.5, 0, 0]);
  });

  test("aggregates: accuracy over judged items; pairs count once both items are answered", () => {
    const rec = (id: string, pair: string | null, correct: boolean | null, share: number): ItemRecord => ({
      id,
      index: 0,
      pair,
      run: `runs/${id}`,
      image: "x.png",
      question: "q",
      options: null,
      answer: "a",
      expected: correct === null ? null : "a",
      correct,
      match: correct === null ? null : "text",
      reliance: {
        token: 0,
        lvlm: share,
        lvlm_mean: share,
        image_share: share,
        image_share_mean: share,
        image_max: 0,
      },
      top_words: [],
      pointing: null,
      seconds: 1,
    });
    const a = aggregate(
      [
        rec("1a", "1", true, 0.9),
        rec("1b", "1", true, 0.8),
        rec("2a", "2", true, 0.7),
        rec("2b", "2", false, 0.2),
        rec("3a", "3", false, 0.1),
        rec("4a", null, null, 0.5),
      ],
      7,
    );
    assert.equal(a.with_expected, 5);
    assert.equal(a.correct, 3);
    assert.equal(a.accuracy, 3 / 5);
    assert.deepEqual(a.pairs, { n: 2, both: 1, one: 1, none: 0, accuracy: 0.5 });
    assert.equal(a.reliance.image_share.right.median, 0.8);
    assert.equal(a.reliance.image_share.test!.u, 6); // every right answer relies more on the image
  });
});

test("ids become the server's run ids (letters, digits, _ and -; a letter or digit first; ≤ 80)", async () => {
  const { safeId } = await import("../src/batch/dataset.js");
  const { RUN_ID_RE } = await import("../src/server/run-store.js");
  for (const id of ["a 1", "../x", ".hidden", "_u", "p1.v2", "é", "x".repeat(100), "42"]) {
    assert.match(safeId(id), RUN_ID_RE, id);
  }
  assert.equal(safeId("a 1"), "a_1");
  assert.equal(safeId("../x"), "x___x");
});
