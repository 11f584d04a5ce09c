/** `lvlm-interpret causal` through its commander command: output file, options, one-line errors. */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { causalCommand } from "../src/cli/causal-command.js";
import type { CausalDocument } from "../src/interpret/causal/explain-run.js";
import { readRefCausal, writeFixtureRun } from "./causal-helpers.js";
import { tempDir } from "./fixture-utils.js";

const work = tempDir("causal-cli");
const run = path.join(work, "run");
after(() => fs.rmSync(work, { recursive: true, force: true }));

async function cli(args: string[]): Promise<void> {
  const cmd = causalCommand()
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} });
  await cmd.parseAsync(args, { from: "user" });
}

function readDoc(k: number): CausalDocument {
  return JSON.parse(fs.readFileSync(path.join(run, "causal", `${k}.json`), "utf8"));
}

describe("causal command", () => {
  let T = 0;
  before(() => {
    T = writeFixtureRun("llava-tiny-llama", run).input_ids.length;
  });

  test("selected heads of the last token, matching the fixture", async () => {
    await cli(["--run", run, "--heads", "1,3", "--jobs", "1", "--quiet"]);
    const doc = readDoc(7);
    const ref = readRefCausal("llava-tiny-llama");
    assert.deepEqual(
      doc.heads.map((h) => h.head),
      [1, 3],
    );
    for (const h of doc.heads) {
      const rh = ref.heads.find((r) => r.head === h.head)!;
      assert.deepEqual(h.explanation, rh.explanation);
      assert.deepEqual(h.explanation_per_radius, rh.explanation_per_radius);
    }
    assert.equal(doc.token_to_explain, T - 1 + 7);
  });

  test("--token k explains position len(input_ids) − 1 + k, with the given hyper-parameters", async () => {
    await cli([
      "--run",
      run,
      "--token",
      "2",
      "--layer",
      "1",
      "--heads",
      "0-1",
      "--alpha",
      "0.001",
      "--att-th",
      "0.02",
      "--radius",
      "2",
      "--max-image-tokens",
      "10",
      "--dof",
      "64",
      "--quiet",
    ]);
    const doc = readDoc(2);
    assert.equal(doc.token_index, 2);
    assert.equal(doc.token_to_explain, T - 1 + 2);
    assert.equal(doc.layer, 1);
    assert.deepEqual(doc.params, {
      p_val_th: 0.001,
      num_samples: 64,
      max_range: 2,
      att_th: 0.02,
      max_num_image_tokens: 10,
    });
    for (const h of doc.heads) {
      assert.ok(h.relevant_image_tokens.length <= 10);
      assert.ok(h.nodes.every((v) => v <= T + 1));
      assert.ok(Object.keys(h.explanation_per_radius).length <= 3);
      assert.equal(h.explanation_per_radius["0"], T + 1);
    }
  });

  test("progress per head on stderr", async () => {
    const lines: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => {
      lines.push(String(s));
      return true;
    }) as typeof process.stderr.write;
    try {
      await cli(["--run", run, "--heads", "0,2", "--jobs", "1"]);
    } finally {
      process.stderr.write = orig;
    }
    assert.equal(lines.filter((l) => /head \d+ \(\d\/2\)/.test(l)).length, 2);
    assert.ok(lines.some((l) => l.includes(path.join(run, "causal", "7.json"))));
  });

  const errors: [string, string[], RegExp][] = [
    ["token out of range", ["--token", "8"], /^token 8 out of range \(the run generated 8 tokens: 0…7\)$/],
    ["layer out of range", ["--layer", "4"], /^layer 4 out of range \(the model has 4 LLM layers: 0…3\)$/],
    ["head out of range", ["--heads", "2,9"], /head 9 out of range/],
    ["bad head list", ["--heads", "x"], /--heads: "x" is not a head number/],
  ];
  for (const [what, args, re] of errors) {
    test(`error: ${what}`, async () => {
      await assert.rejects(cli(["--run", run, "--quiet", ...args]), (e: Error) => {
        assert.match(e.message, re);
        assert.ok(!e.message.includes("\n"), "one line");
        return true;
      });
    });
  }

  test("error: not a run directory", async () => {
    await assert.rejects(cli(["--run", work, "--quiet"]), /not a run directory/);
  });

  test("error: invalid option values are rejected by the parser", async () => {
    await assert.rejects(cli(["--run", run, "--alpha", "0"]), (e: { code?: string; message: string }) => {
      assert.equal(e.code, "commander.invalidArgument");
      assert.match(e.message, /--alpha must be a number in \(0, 1\]/);
      return true;
    });
    await assert.rejects(cli(["--run", run, "--dof", "2"]), /--dof must be an integer ≥ 4/);
    await assert.rejects(
      cli(["--radius", "1"]),
      (e: { code?: string }) => e.code === "commander.missingMandatoryOptionValue",
    );
  });

  test("--help explains every hyper-parameter", () => {
    const cmd = causalCommand();
    let help = "";
    cmd.configureOutput({ writeOut: (s) => (help += s) });
    cmd.outputHelp();
    for (const opt of [
      "--run",
      "--token",
      "--layer",
      "--heads",
      "--alpha",
      "--att-th",
      "--radius",
      "--max-image-tokens",
      "--dof",
      "--jobs",
    ]) {
      assert.ok(help.includes(opt), opt);
    }
    assert.match(help, /independent when p > alpha/);
    assert.match(help, /\(default: (1e-05|0\.00001)\)/);
    assert.match(help, /len\(input_ids\) - 1 \+ k/);
  });
});
