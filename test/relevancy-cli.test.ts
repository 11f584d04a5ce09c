/**
 * `lvlm-interpret relevancy` end to end on a traced fixture run: the tensors it adds (names, shapes, rows
 * against the fixture's rel_exact / rel_lvlm / rel_*_lvlm references), the manifest record, merging of token
 * subsets computed in separate calls, and one-line errors for bad input.
 *
 * The command is run in a child process through a minimal program holding only `relevancyCommand()` with
 * the CLI's error reporting (the main program wires the same command).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { type RelevancyRecord, relevancyRecord } from "../src/interpret/relevancy/index.js";
import { createKernels } from "../src/kernels/index.js";
import { loadModel } from "../src/models/registry.js";
import { Run } from "../src/run/run-dir.js";
import { maxAbsDiff } from "../src/tensor/tensor.js";
import { traceWithModel } from "../src/trace.js";
import { fixtureDir, loadFixture, ROOT, tempDir } from "./fixture-utils.js";

const DRIVER = `
import { Command } from "commander";
import { relevancyCommand } from ${JSON.stringify(path.join(ROOT, "dist/src/cli/relevancy-command.js"))};
import { reportAndExit } from ${JSON.stringify(path.join(ROOT, "dist/src/cli/errors.js"))};
const program = new Command("lvlm-interpret").exitOverride()
  .configureOutput({ outputError: (str, write) => write(str.split("\\n")[0] + "\\n") });
program.addCommand(relevancyCommand());
try {
  await program.parseAsync(process.argv.slice(1), { from: "user" });
} catch (e) {
  const code = e && e.code;
  if (code && code.startsWith("commander.")) process.exit(code === "commander.helpDisplayed" ? 0 : 1);
  reportAndExit(e);
}
`;

function runCli(args: string[]) {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", DRIVER, "relevancy", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, LVLM_DEBUG: "" },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

describe("lvlm-interpret relevancy", () => {
  const fx = loadFixture("llava-tiny-llama");
  const e = fx.expected;
  const ref = (k: string) => fx.tensors.readF32(k);
  const work = tempDir("rel-cli");
  const runDir = path.join(work, "run");
  const T = e.T;
  const G = e.generated_ids.length;
  const S = e.T_full;
  const P = e.image_token_count;
  const Sv = P + 1;

  before(async () => {
    const model = loadModel(fx.dir);
    const kernels = await createKernels("ts");
    try {
      await traceWithModel(model, kernels, {
        image: { bytes: fs.readFileSync(path.join(fx.dir, "image.png")), name: "image.png" },
        prompt: e.question,
        maxNewTokens: G,
        temperature: 0,
        topP: 1,
        seed: 0,
        imageMode: "default",
        attnDtype: "f32",
        out: runDir,
      });
    } finally {
      model.close();
      await kernels.dispose();
    }
  });
  after(() => {
    fx.tensors.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const open = () => Run.open(runDir);
  const checkLlmRows = (run: Run, mode: "exact" | "incremental", tokens: number[]) => {
    const rel = run.tensor(`rel.llm.${mode}`);
    assert.deepEqual(rel.shape, [G, S]);
    for (let t = 0; t < G; t++) {
      const row = rel.data.subarray(t * S, (t + 1) * S);
      if (!tokens.includes(t)) {
        assert.equal(maxAbs(row), 0, `row ${t} should be empty`);
        continue;
      }
      const n = T + t;
      const expected =
        mode === "exact"
          ? ref(`rel_exact.${t}.last_row_raw`)
          : ref(`rel_lvlm.${t}.R_raw`).subarray((n - 1) * n, n * n);
      assert.ok(maxAbsDiff(row.subarray(0, n), expected) <= 1e-4 * maxAbs(expected), `${mode} row ${t}`);
      assert.equal(maxAbs(row.subarray(n)), 0, `row ${t} zero-padded`);
    }
  };

  test("exact, a token subset, every vision map", () => {
    const r = runCli([
      "--run",
      runDir,
      "--mode",
      "exact",
      "--vision",
      "vit,all,all_v2,chain",
      "--tokens",
      "0,2",
      "--kernels",
      "ts",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split("\n"), [
      "rel.llm.exact",
      "rel.vit.exact",
      "rel.all.exact",
      "rel.all_v2.exact",
      "rel.chain.exact",
    ]);
    assert.match(r.stderr, /relevancy \(exact\) for 2 tokens added to rel\.exact\.safetensors/);
    const run = open();
    try {
      assert.ok(run.manifest.tensor_files.includes("rel.exact.safetensors"));
      const rec = relevancyRecord(run, "exact")!;
      assert.deepEqual(rec.computed.llm, [0, 2]);
      assert.deepEqual(rec.computed.chain, [0, 2]);
      assert.equal(rec.vit_gradients, "fresh");
      assert.deepEqual(rec.vit_layers, [0, 1]);
      checkLlmRows(run, "exact", [0, 2]);
      for (const [kind, key] of [
        ["vit", "rel_vit_exact"],
        ["all", "rel_all_exact"],
      ] as const) {
        const x = run.tensor(`rel.${kind}.exact`);
        assert.deepEqual(x.shape, [G, Sv]);
        for (const t of [0, 2]) {
          const expected = ref(`${key}.${t}.R_raw`).subarray(0, Sv);
          assert.ok(
            maxAbsDiff(x.data.subarray(t * Sv, (t + 1) * Sv), expected) <= 1e-4 * maxAbs(expected),
            `${kind} ${t}`,
          );
        }
      }
      const v2 = run.tensor("rel.all_v2.exact");
      assert.ok(
        maxAbsDiff(v2.data.subarray(2 * Sv, 3 * Sv), ref("rel_all_v2_exact.2.cls_row_raw")) <= 1e-4 * 2,
      );
      assert.deepEqual(run.tensor("rel.chain.exact").shape, [G, P]);
    } finally {
      run.close();
    }
  });

  test("a second call fills the other tokens and keeps the first ones", () => {
    const r = runCli(["--run", runDir, "--mode", "exact", "--vision", "vit", "--tokens", "1,3-7"]);
    assert.equal(r.code, 0, r.stderr);
    const run = open();
    try {
      const rec = relevancyRecord(run, "exact") as RelevancyRecord;
      assert.deepEqual(rec.computed.llm, [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(rec.computed.vit, [0, 1, 2, 3, 4, 5, 6, 7]);
      // Maps not requested this time keep their earlier rows.
      assert.deepEqual(rec.computed.chain, [0, 2]);
      assert.deepEqual(rec.computed.all, [0, 2]);
      checkLlmRows(run, "exact", [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.equal(run.manifest.tensor_files.filter((f) => f === "rel.exact.safetensors").length, 1);
    } finally {
      run.close();
    }
  });

  test("incremental mode: the tool's maps (accumulated ViT gradients by default)", () => {
    const r = runCli([
      "--run",
      runDir,
      "--mode",
      "incremental",
      "--vision",
      "vit,all_v2",
      "--model",
      fixtureDir("llava-tiny-llama"),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const run = open();
    try {
      checkLlmRows(run, "incremental", [0, 1, 2, 3, 4, 5, 6, 7]);
      const rec = relevancyRecord(run, "incremental")!;
      assert.equal(rec.vit_gradients, "accumulated");
      const vit = run.tensor("rel.vit.incremental");
      const v2 = run.tensor("rel.all_v2.incremental");
      for (let t = 0; t < G; t++) {
        const a = ref(`rel_vit_lvlm.${t}.cls_row_raw`);
        const b = ref(`rel_all_v2_lvlm.${t}.cls_row_raw`);
        assert.ok(maxAbsDiff(vit.data.subarray(t * Sv, (t + 1) * Sv), a) <= 1e-4 * maxAbs(a));
        assert.ok(maxAbsDiff(v2.data.subarray(t * Sv, (t + 1) * Sv), b) <= 1e-4 * maxAbs(b));
      }
      // The exact maps are still there.
      assert.ok(run.has("rel.llm.exact"));
    } finally {
      run.close();
    }
  });

  test("trace --relevancy adds the same maps in the same process; its relevancy flags need it", () => {
    const cli = (args: string[]) =>
      spawnSync(process.execPath, [path.join(ROOT, "dist/src/cli/main.js"), ...args], {
        encoding: "utf8",
        env: { ...process.env, LVLM_DEBUG: "", LVLM_INTERPRET_HUGEPAGES: "0" },
      });
    const out = path.join(work, "traced-with-relevancy");
    const trace = [
      "trace",
      "--model",
      fx.dir,
      "--image",
      path.join(fx.dir, "image.png"),
      "--prompt",
      e.question,
      "--max-new-tokens",
      String(G),
      "--out",
      out,
    ];
    const refused = cli([...trace, "--vision", "vit"]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr.trim(), /^error: --vision applies to --relevancy, which was not given/);
    assert.ok(!fs.existsSync(out), "nothing traced before the refusal");
    // Maps the model cannot give (Qwen2-VL's tower has no CLS token) are refused once the image is
    // preprocessed, before the trace runs: no run directory is left behind.
    const qwen = path.join(ROOT, "test/fixtures/qwen2-vl-tiny");
    const noCls = cli([
      ...trace.map((a) => (a === fx.dir ? qwen : a)),
      "--relevancy",
      "incremental",
      "--vision",
      "vit,chain",
    ]);
    assert.equal(noCls.status, 1, noCls.stderr);
    const lines = noCls.stderr.split(/[\r\n]+/).filter((l) => l.trim() && !/^\[\w+\] \d+\/\d+$/.test(l));
    assert.equal(lines.length, 1, noCls.stderr);
    assert.match(
      lines[0],
      /^error: vit relevancy needs a vision tower with a CLS token \(this one has none\); use "chain"$/,
    );
    assert.ok(!fs.existsSync(out), "no run written for a refused relevancy request");

    const r = cli([...trace, "--relevancy", "incremental", "--vision", "vit,all_v2"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /relevancy \(incremental\) for 8 tokens added to rel\.incremental\.safetensors/);
    const run = Run.open(out);
    try {
      assert.deepEqual(run.manifest.generated_ids, e.generated_ids);
      checkLlmRows(run, "incremental", [0, 1, 2, 3, 4, 5, 6, 7]);
      const vit = run.tensor("rel.vit.incremental");
      for (let t = 0; t < G; t++) {
        const a = ref(`rel_vit_lvlm.${t}.cls_row_raw`);
        assert.ok(maxAbsDiff(vit.data.subarray(t * Sv, (t + 1) * Sv), a) <= 1e-4 * maxAbs(a), `vit row ${t}`);
      }
      assert.ok(run.has("rel.all_v2.incremental"));
    } finally {
      run.close();
    }
  });

  test("bad input: one error line, exit code 1", () => {
    const cases: [string[], RegExp][] = [
      [["--run", runDir, "--tokens", "x"], /--tokens must be "all" or indices/],
      [["--run", runDir, "--tokens", "8"], /token index 8 outside 0…7/],
      [["--run", runDir, "--vision", "vit,foo"], /--vision: unknown map "foo"/],
      [["--run", runDir, "--mode", "fast"], /argument 'fast' is invalid/],
      [["--run", path.join(work, "nope")], /not a run directory/],
      [["--run", runDir, "--model", fixtureDir("llava-tiny-gemma")], /not the model of this run/],
    ];
    for (const [args, re] of cases) {
      const r = runCli(args);
      assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
      // Progress lines may precede it; exactly one error line, no stack trace.
      const lines = r.stderr
        .trim()
        .split("\n")
        .filter((l) => !/^\[\w+\] \d+\/\d+$/.test(l));
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], /^error: /);
      assert.match(lines[0], re);
    }
  });
});
