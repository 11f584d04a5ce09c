/**
 * Every documentation path the project cites exists: `docs/<path>` anywhere in the sources, tests, web app,
 * benchmarks, scripts and docs (help texts and comments sent readers to files that were never written), and
 * every relative link in the Markdown files.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { ROOT } from "./fixture-utils.js";

const SCANNED = ["src", "test", "web/src", "web/index.html", "bench", "scripts", "README.md", "docs"];
const TEXT = /\.(ts|tsx|js|mjs|html|css|md|json)$/;
const SKIP_DIRS = new Set(["node_modules", "dist", "fixtures", "screenshots", "examples"]);

function filesUnder(rel: string): string[] {
  const abs = path.join(ROOT, rel);
  if (!fs.existsSync(abs)) return [];
  if (fs.statSync(abs).isFile()) return [rel];
  return fs
    .readdirSync(abs, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory()
        ? SKIP_DIRS.has(e.name)
          ? []
          : filesUnder(path.join(rel, e.name))
        : TEXT.test(e.name)
          ? [path.join(rel, e.name)]
          : [],
    );
}

const files = SCANNED.flatMap(filesUnder);

/** `docs/` followed by a path that ends in a word character (so "docs/" in prose and templates is skipped). */
const DOC_PATH = /(?<![\w-])docs\/[\w./-]*\w/g;
/** Markdown link targets: `](target)`. */
const MD_LINK = /\]\(([^)\s]+)\)/g;

test("the scan sees the project's files", () => {
  for (const f of ["src/cli/causal-command.ts", "README.md", "docs/trace-format.md"])
    assert.ok(files.includes(f), `${f} not scanned`);
});

test("every docs/ path cited in the project exists", () => {
  const missing: string[] = [];
  let cited = 0;
  for (const f of files) {
    const text = fs.readFileSync(path.join(ROOT, f), "utf8");
    for (const m of text.matchAll(DOC_PATH)) {
      cited++;
      if (!fs.existsSync(path.join(ROOT, m[0]))) missing.push(`${f}: ${m[0]}`);
    }
  }
  assert.ok(cited > 10, `only ${cited} docs/ paths found: the pattern is broken`);
  assert.deepEqual(missing, [], `cited but missing:\n${missing.join("\n")}`);
});

test("every relative link in the Markdown files exists", () => {
  const missing: string[] = [];
  for (const f of files.filter((x) => x.endsWith(".md"))) {
    const text = fs.readFileSync(path.join(ROOT, f), "utf8");
    for (const m of text.matchAll(MD_LINK)) {
      const target = m[1]!.split("#")[0]!;
      if (!target || /^[a-z]+:/i.test(target)) continue;
      if (!fs.existsSync(path.join(ROOT, path.dirname(f), target))) missing.push(`${f}: ${m[1]}`);
    }
  }
  assert.deepEqual(missing, [], `broken links:\n${missing.join("\n")}`);
});
