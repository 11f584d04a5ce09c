/**
 * Import errors in words a user can act on: not gzip, cut short, gzip without a tar inside — never the
 * libraries' codes (Z_DATA_ERROR, TAR_BAD_ARCHIVE) or jargon ("invalid base256 encoding").
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { Readable } from "node:stream";
import { test } from "node:test";
import * as zlib from "node:zlib";
import { importArchive } from "../src/server/archive.js";
import { HttpError } from "../src/server/http-error.js";
import { RunStore } from "../src/server/run-store.js";
import { tempDir } from "./fixture-utils.js";
import { rawTarGz } from "./server-utils.js";

const LIMITS = { maxArchiveBytes: 1 << 24, maxUnpackedBytes: 1 << 26, maxRatio: 100 };

async function importError(bytes: Uint8Array): Promise<string> {
  const dir = tempDir("archive-errors");
  const store = RunStore.open(dir);
  try {
    await importArchive(store, Readable.from([Buffer.from(bytes)]), LIMITS);
  } catch (e) {
    assert.ok(e instanceof HttpError && e.status === 400, String(e));
    return e.message;
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  throw new Error("the import did not fail");
}

test("import errors say what is wrong with the file and what to do, without library codes", async () => {
  const pseudoRandom = Uint8Array.from({ length: 4000 }, (_, i) => (i * 2654435761) >>> 24);
  const whole = rawTarGz([{ name: "run/x.bin", data: Buffer.from(pseudoRandom) }]);
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "text",
      new TextEncoder().encode("not an archive at all"),
      /the file is not gzip-compressed; choose a \.tar\.gz saved with “Export run”$/,
    ],
    [
      "cut",
      whole.subarray(0, whole.length >> 1),
      /the file ends early \(an incomplete download or copy\?\); export or copy the run again$/,
    ],
    [
      "gzip of noise",
      zlib.gzipSync(pseudoRandom),
      /gzip-compressed, but what it holds is not a run's tar archive; choose/,
    ],
    [
      "gzip of zeros",
      zlib.gzipSync(Buffer.alloc(1100, 7)),
      /gzip-compressed, but what it holds is not a run's tar archive; choose/,
    ],
  ];
  for (const [name, bytes, expected] of cases) {
    const message = await importError(bytes);
    assert.match(message, /^not a readable run archive \(\.tar\.gz\): /, name);
    assert.match(message, expected, `${name}: ${message}`);
    assert.doesNotMatch(message, /Z_[A-Z]+|TAR_[A-Z]+|base256|header check/, `${name}: ${message}`);
  }
});
