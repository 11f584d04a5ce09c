/**
 * Fuzzes the run-archive importer (the function POST /api/import runs) with a fixed seed: thousands of archives
 * mutated from a valid export — byte mutations of the gzip, tar-header mutations re-compressed, traversal and
 * absolute names, links, devices, pax and GNU long-name headers, duplicates, huge declared sizes, nested gzip.
 * Each must either import a run that validates, or be refused with a one-line 4xx HttpError — no crash, no
 * hang, nothing left in the data directory, nothing written outside it.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import * as zlib from "node:zlib";
import { exportRunStream, type ImportLimits, importArchive } from "../src/server/archive.js";
import { HttpError } from "../src/server/http-error.js";
import { RunStore } from "../src/server/run-store.js";
import { validateRunDir } from "../src/server/run-validate.js";
import { Rng } from "../src/tensor/rng.js";
import { tempDir } from "./fixture-utils.js";
import { writeSyntheticRun } from "./synthetic-run.js";

const root = tempDir("archive-fuzz");
const dataDir = path.join(root, "data");
const outside = path.join(root, "outside");
let store: RunStore;
let archive: Buffer;
const LIMITS: ImportLimits = { maxArchiveBytes: 16 * 2 ** 20, maxUnpackedBytes: 8 * 2 ** 20, maxRatio: 100 };

before(async () => {
  fs.mkdirSync(outside);
  const runDir = path.join(root, "src-run");
  writeSyntheticRun(runDir, {
    T: 5,
    G: 2,
    layers: 1,
    heads: 1,
    imageStart: 1,
    grid: [1, 2],
    value: (_l, _h, r) => 1 / (r + 1),
  });
  fs.mkdirSync(path.join(runDir, "causal"));
  fs.writeFileSync(path.join(runDir, "causal", "0.json"), '{"format":"lvlm-causal/1","heads":[]}\n');
  const chunks: Buffer[] = [];
  for await (const c of exportRunStream(runDir)) chunks.push(c as Buffer);
  archive = Buffer.concat(chunks);
  store = RunStore.open(dataDir);
});
after(() => {
  store?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** Offsets of the tar's header blocks (walking sizes as written). */
function headerOffsets(tar: Buffer): number[] {
  const out: number[] = [];
  for (let pos = 0; pos + 512 <= tar.length; ) {
    const h = tar.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    out.push(pos);
    const size = Number.parseInt(h.subarray(124, 136).toString("latin1").replace(/\0.*$/, "").trim(), 8) || 0;
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

function setChecksum(h: Buffer): void {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
}

function setField(h: Buffer, off: number, len: number, value: string | Buffer): void {
  h.fill(0, off, off + len);
  (typeof value === "string" ? Buffer.from(value, "utf8") : value).copy(h, off, 0, len);
}

/** A pax extended header entry (type x) carrying `records`. */
function paxEntry(records: Record<string, string>, type = "x"): Buffer {
  let body = "";
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let n = rest.length + 1;
    while (String(n).length + rest.length !== n) n = String(n).length + rest.length;
    body += `${n}${rest}`;
  }
  return tarEntry("PaxHeader/x", Buffer.from(body), type);
}

function tarEntry(name: string, data: Buffer, type = "0", linkname = ""): Buffer {
  const h = Buffer.alloc(512);
  setField(h, 0, 100, name);
  setField(h, 100, 8, "0000644\0");
  setField(h, 108, 8, "0000000\0");
  setField(h, 116, 8, "0000000\0");
  setField(h, 124, 12, `${data.length.toString(8).padStart(11, "0")}\0`);
  setField(h, 136, 12, "00000000000\0");
  setField(h, 156, 1, type);
  setField(h, 157, 100, linkname);
  setField(h, 257, 6, "ustar\0");
  setField(h, 263, 2, "00");
  setChecksum(h);
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

const NAMES = () => [
  "../evil",
  "run/../../evil",
  "run/../../../../../../../../../../../evil",
  "/evil",
  `${outside}/abs-escape`,
  "run/./manifest.json",
  "./run/manifest.json",
  "run//manifest.json",
  "run/.hidden",
  "run/a\\..\\..\\evil",
  "run/a/b/c/d",
  "other/manifest.json",
  "run",
  "",
  "run/x\u0000y",
  `run/${"a".repeat(99)}`,
  "run/ü.png",
  "run/manifest.json",
  "run/causal",
  "run/image.png/x",
  "run/con:x",
];
const TYPES = ["1", "2", "3", "4", "5", "6", "7", "x", "g", "L", "K", "S", "V", "D", "M", "N", "\0", "Z"];
const LINKS = ["/etc/passwd", "../../../etc/passwd", "run/manifest.json", outside, "tensors.safetensors"];

/** One mutated archive. */
function mutate(rng: Rng): Buffer {
  // Weights favour what reaches the checks; mutations of fields nobody reads (mostly imports) are rarer.
  const kind = rng.pickWeighted([0, 3, 4, 5, 6, 7, 8, 9], [30, 12, 12, 10, 5, 16, 9, 6]);
  if (kind === 0) {
    // Bytes of the gzip itself: flips, truncation, junk around it, a broken trailer.
    const b = Buffer.from(archive);
    switch (rng.int(0, 4)) {
      case 0:
        for (let i = rng.int(1, 6); i > 0; i--) b[rng.int(0, b.length - 1)] ^= 1 << rng.int(0, 7);
        return b;
      case 1:
        return b.subarray(0, rng.int(0, b.length - 1));
      case 2:
        return Buffer.concat([b, Buffer.from(rng.pick(["junk", "\x1f\x8b", "\0\0\0\0"]))]);
      case 3:
        b.writeUInt32LE(rng.nextU32(), b.length - rng.pick([4, 8]));
        return b;
      default:
        return Buffer.concat([Buffer.from([rng.int(0, 255)]), b]);
    }
  }
  let tar = zlib.gunzipSync(archive);
  const offsets = headerOffsets(tar);
  const at = rng.pick(offsets);
  const h = tar.subarray(at, at + 512);
  let fixSum = rng.bool(0.85);
  switch (kind) {
    case 3:
      setField(h, 0, 100, rng.pick(NAMES()));
      break;
    case 4:
      setField(h, 156, 1, rng.pick(TYPES));
      if (rng.bool()) setField(h, 157, 100, rng.pick(LINKS));
      break;
    case 5: {
      // Declared sizes: huge octal, base-256 (positive, negative, beyond 2^53), off by one, not a number.
      const sizes: (string | Buffer)[] = [
        "77777777777\0",
        "00000000000\0",
        "zzzzzzzzzzz\0",
        `${(Number.parseInt(h.subarray(124, 135).toString("latin1"), 8) + rng.pick([1, -1, 512, -512])).toString(8).padStart(11, "0")}\0`,
        Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]),
        Buffer.from([0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]),
        Buffer.from([0x80, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
      ];
      setField(h, 124, 12, rng.pick(sizes));
      break;
    }
    case 6: {
      // Random bytes over a random header field (mode, ids, mtime, magic, prefix...).
      const [off, len] = rng.pick([
        [100, 8],
        [108, 8],
        [124, 12],
        [136, 12],
        [148, 8],
        [257, 8],
        [265, 64],
        [345, 155],
      ] as [number, number][]);
      for (let i = 0; i < len; i++) if (rng.bool(0.3)) h[off + i] = rng.int(0, 255);
      if (off === 148) fixSum = false;
      break;
    }
    case 7: {
      // Extra entries: duplicates, links, pax and GNU long-name headers, other top folders, huge pax sizes.
      const dup = tar.subarray(at, offsets[offsets.indexOf(at) + 1] ?? at + 512);
      const extra = rng.pick([
        () => Buffer.from(dup),
        () => tarEntry(rng.pick(NAMES()), Buffer.from("x")),
        () => tarEntry("run/link", Buffer.alloc(0), rng.pick(["1", "2"]), rng.pick(LINKS)),
        () => tarEntry("run/dev", Buffer.alloc(0), rng.pick(["3", "4", "6"])),
        () =>
          Buffer.concat([paxEntry({ path: rng.pick(NAMES()) }), tarEntry("run/ok.txt", Buffer.from("x"))]),
        () =>
          Buffer.concat([
            paxEntry({ size: rng.pick(["99999999999999", "-5", "1e400", "x"]) }),
            tarEntry("run/s.bin", Buffer.from("x")),
          ]),
        () =>
          Buffer.concat([
            paxEntry({ linkpath: "/etc/passwd" }),
            tarEntry("run/l", Buffer.alloc(0), "2", "x"),
          ]),
        () =>
          Buffer.concat([
            tarEntry("././@LongLink", Buffer.from(`${rng.pick(NAMES())}\0`), "L"),
            tarEntry("run/short", Buffer.from("x")),
          ]),
        () => tarEntry("././@LongLink", Buffer.alloc(2 * 2 ** 20, 0x61), "L"),
        () => tarEntry("run/zeros.bin", Buffer.alloc(rng.pick([1, 2 ** 20, 9 * 2 ** 20]))),
      ])();
      tar = rng.bool()
        ? Buffer.concat([tar.subarray(0, at), extra, tar.subarray(at)])
        : Buffer.concat([extra, tar]);
      return zlib.gzipSync(tar, { level: 1 });
    }
    case 8:
      // The tar cut anywhere, its end blocks dropped, or junk after them.
      tar = rng.pick([
        () => tar.subarray(0, rng.int(0, tar.length)),
        () => tar.subarray(0, offsets[offsets.length - 1] + 512),
        () => Buffer.concat([tar, Buffer.from("trailing junk")]),
        () => Buffer.alloc(rng.pick([0, 512, 1024, 10_240])),
      ])();
      return zlib.gzipSync(tar, { level: 1 });
    default:
      // Compressed twice, or not compressed at all.
      return rng.bool() ? zlib.gzipSync(archive) : tar;
  }
  if (fixSum) setChecksum(h);
  return zlib.gzipSync(tar, { level: 1 });
}

/** Everything under a folder, as sorted relative paths. */
function listing(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

async function importWithin(bytes: Buffer, ms: number): Promise<string> {
  // Small chunks, so the stream checks see the archive arrive piece by piece as an upload would.
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 16_384) chunks.push(bytes.subarray(i, i + 16_384));
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      importArchive(store, Readable.from(chunks), LIMITS),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`import did not settle within ${ms} ms (hang)`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe("run archive import fuzzing", () => {
  test("5000 mutated archives: a valid run or a clear 4xx, nothing left behind", {
    timeout: 300_000,
  }, async () => {
    const rng = new Rng(0xa5c41e);
    const baseData = listing(dataDir).filter((f) => !f.startsWith(".tmp"));
    const baseRoot = fs.readdirSync(root).sort();
    const t0 = Date.now();
    const outcomes = new Map<string, number>();
    /** One case: an imported run (validated, then removed) or a clean refusal; returns the outcome's kind. */
    const runCase = async (i: number, bytes: Buffer): Promise<string> => {
      try {
        const id = await importWithin(bytes, 20_000);
        // Whatever was imported is a whole, valid run.
        validateRunDir(store.dir(id));
        store.remove(id);
        return "imported";
      } catch (e) {
        const err = e as Error;
        assert.ok(err instanceof HttpError, `case ${i}: ${err?.name}: ${err?.message} (${err?.stack})`);
        assert.ok([400, 413, 422].includes(err.status), `case ${i}: status ${err.status}: ${err.message}`);
        assert.ok(!err.message.includes("\n"), `case ${i}: one line: ${JSON.stringify(err.message)}`);
        assert.ok(!err.message.includes(dataDir), `case ${i}: no host path: ${err.message}`);
        assert.doesNotMatch(
          err.message,
          /TypeError|RangeError|undefined|\[object |NaN|Cannot read/,
          `case ${i}: ${err.message}`,
        );
        return `${err.status} ${err.message.replace(/".*?"|\d+/g, "…").slice(0, 70)}`;
      }
    };
    // Cases run eight at a time (concurrent imports, as a server sees them); after each batch nothing may be
    // left in the scratch folder, the data folder or beside it.
    const CASES = 5001;
    const BATCH = 8;
    for (let i = 0; i < CASES; i += BATCH) {
      const batch: Promise<string>[] = [];
      for (let j = i; j < Math.min(i + BATCH, CASES); j++)
        batch.push(runCase(j, j === 0 ? archive : mutate(rng)));
      for (const outcome of await Promise.all(batch)) outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      const cases = `cases ${i}…${i + BATCH - 1}`;
      assert.deepEqual(fs.readdirSync(path.join(dataDir, ".tmp")), [], `${cases}: scratch left behind`);
      assert.deepEqual(
        listing(dataDir).filter((f) => !f.startsWith(".tmp")),
        baseData,
        `${cases}: data dir changed`,
      );
      assert.deepEqual(fs.readdirSync(root).sort(), baseRoot, `${cases}: wrote beside the data dir`);
      assert.deepEqual(fs.readdirSync(outside), [], `${cases}: wrote outside the data dir`);
    }
    const took = Date.now() - t0;
    const summary = [...outcomes].sort((a, b) => b[1] - a[1]);
    console.log(`archive fuzz: ${took} ms`, summary);
    assert.ok((outcomes.get("imported") ?? 0) > 20, "some mutations still import (mtime, mode, padding)");
    assert.ok(summary.length > 15, "the mutations reach many different checks");
    assert.ok(took < 120_000, `fuzzing took ${took} ms`);
  });
});
