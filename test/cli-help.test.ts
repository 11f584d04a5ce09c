/** The CLI's help names every supported model type for --model, not one family's checkpoints. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { test } from "node:test";
import { SUPPORTED_MODEL_TYPES } from "../src/models/registry.js";
import { ROOT } from "./fixture-utils.js";

const CLI = path.join(ROOT, "dist/src/cli/main.js");

test("--model help of trace, serve, batch and relevancy lists every supported model_type", () => {
  for (const cmd of ["trace", "serve", "batch", "relevancy"]) {
    const r = spawnSync(process.execPath, [CLI, cmd, "--help"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const help = r.stdout.replace(/\s+/g, " ");
    assert.ok(!/llava-hf/i.test(help), `${cmd}: still says llava-hf`);
    const line = help.slice(help.indexOf("--model <dir>"));
    for (const t of SUPPORTED_MODEL_TYPES) assert.ok(line.includes(t), `${cmd} --model help lacks ${t}`);
  }
});
