/**
 * The run index records where an imported run came from (the archive's name), and an index written before
 * that column existed still opens: the column is added, older rows read as unknown origin.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import Database from "better-sqlite3";
import { uploadName } from "../src/server/routes/archive.js";
import { INDEX_FILE, RunStore } from "../src/server/run-store.js";
import { tempDir } from "./fixture-utils.js";
import { syntheticManifest, writeSyntheticRun } from "./synthetic-run.js";

const spec = {
  T: 8,
  G: 2,
  layers: 1,
  heads: 1,
  imageStart: 2,
  grid: [2, 2] as [number, number],
  value: () => 0.1,
};

test("an imported run keeps its archive name; other runs have none", () => {
  const dir = tempDir("store-origin");
  try {
    const store = RunStore.open(dir);
    const m = syntheticManifest(spec);
    store.add("a", m, "generated");
    store.add("b", m, "imported", "lvlm-run-a.tar.gz");
    const byId = new Map(store.list().map((r) => [r.id, r]));
    assert.equal(byId.get("a")!.origin, null);
    assert.equal(byId.get("b")!.origin, "lvlm-run-a.tar.gz");
    assert.equal(byId.get("b")!.source, "imported");
    store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("an index from before the origin column opens, keeps its rows and gains the column", () => {
  const dir = tempDir("store-origin-old");
  try {
    writeSyntheticRun(path.join(dir, "old-run"), spec);
    const db = new Database(path.join(dir, INDEX_FILE));
    db.exec(`CREATE TABLE runs (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, prompt TEXT NOT NULL,
      answer TEXT NOT NULL, n_tokens INTEGER NOT NULL, seq_len INTEGER NOT NULL, model TEXT NOT NULL,
      image_mode TEXT NOT NULL, source TEXT NOT NULL, indexed_at TEXT NOT NULL)`);
    db.prepare(
      `INSERT INTO runs VALUES ('old-run', '2026-01-01', 'synthetic', 't0t1', 2, 9, 'm', 'default', 'imported', '2026-01-02')`,
    ).run();
    db.close();
    const store = RunStore.open(dir);
    const rows = store.list();
    assert.equal(rows.length, 1);
    assert.equal(rows[0].source, "imported");
    assert.equal(rows[0].origin, null);
    store.add("old-run", syntheticManifest(spec), "imported", "x.tar.gz");
    assert.equal(store.get("old-run")!.origin, "x.tar.gz");
    store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the uploaded name is a plain label: last path part, no control or bidi characters, bounded", () => {
  assert.equal(uploadName("lvlm-run-1.tar.gz"), "lvlm-run-1.tar.gz");
  assert.equal(uploadName("C:\\Users\\me\\run.tar.gz"), "run.tar.gz");
  assert.equal(uploadName("../../etc/passwd"), "passwd");
  assert.equal(uploadName("a\u202Eb\nc.tgz"), "abc.tgz");
  assert.equal(uploadName(""), null);
  assert.equal(uploadName(undefined), null);
  assert.equal(uploadName(["a"]), null);
  assert.equal(uploadName("x".repeat(500))!.length, 200);
});
