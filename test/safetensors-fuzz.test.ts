/**
 * Fuzzes the safetensors header/offset parser with a fixed seed: thousands of mutated files (bit flips,
 * truncation, odd header-length fields, broken JSON, deep JSON, overlapping or out-of-range offsets, dtypes and
 * shapes that do not match the byte sizes, shapes whose product overflows). Every file must either open and
 * read back consistently, or be refused with a one-line SafetensorsError that names the problem — never a
 * crash, a hang, or a TypeError/RangeError from deep inside.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, describe, test } from "node:test";
import { DTYPE_BYTES, SafetensorsError, SafetensorsFile, writeSafetensors } from "../src/hf/safetensors.js";
import { Rng } from "../src/tensor/rng.js";
import { tempDir } from "./fixture-utils.js";

const dir = tempDir("st-fuzz");
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A parsed header: tensor entries (and `__metadata__`) by name. */
type Header = Record<string, Record<string, unknown>>;

/** A small valid file with several dtypes; returns its bytes and header. */
function baseFile(): { bytes: Buffer; header: Header; headerLen: number } {
  const f = path.join(dir, "base.safetensors");
  writeSafetensors(
    f,
    [
      { name: "a", dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      { name: "b", dtype: "F16", shape: [4], data: new Uint16Array([0x3c00, 0, 0x4000, 0x7bff]) },
      { name: "c", dtype: "I64", shape: [2], data: new BigInt64Array([1n, -2n]) },
      { name: "d", dtype: "U8", shape: [0], data: new Uint8Array(0) },
      { name: "e", dtype: "BF16", shape: [1, 1, 3], data: new Uint16Array([0x3f80, 0x4000, 0]) },
    ],
    { note: "fuzz" },
  );
  const bytes = fs.readFileSync(f);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  return { bytes, header: JSON.parse(bytes.subarray(8, 8 + headerLen).toString()), headerLen };
}

/** A file from a header object (or raw header text) and a data section. */
function assemble(header: unknown, data: Buffer, lenOverride?: bigint): Buffer {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

const deep = (n: number) => "[".repeat(n) + "]".repeat(n);

/** One mutated file. */
function mutate(rng: Rng, base: ReturnType<typeof baseFile>): Buffer {
  const data = base.bytes.subarray(8 + base.headerLen);
  const h = () => JSON.parse(JSON.stringify(base.header)) as Header;
  const tensor = () => rng.pick(["a", "b", "c", "d", "e"]);
  const bigs = [0, 1, -1, 7, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 1e300, -1e300, 0.5, 2 ** 62];
  switch (rng.int(0, 17)) {
    case 0: {
      // Bit flips anywhere, mostly in the header.
      const b = Buffer.from(base.bytes);
      for (let i = rng.int(1, 8); i > 0; i--) {
        const at = rng.bool(0.8) ? rng.int(0, 8 + base.headerLen - 1) : rng.int(0, b.length - 1);
        b[at] ^= 1 << rng.int(0, 7);
      }
      return b;
    }
    case 1:
      return Buffer.from(base.bytes.subarray(0, rng.int(0, base.bytes.length - 1)));
    case 2: {
      // Header-length field: huge, "negative" (top bit set), off by a few (misaligned), zero.
      const b = Buffer.from(base.bytes);
      const choices = [
        0n,
        2n ** 64n - 1n,
        2n ** 63n,
        2n ** 53n + 1n,
        BigInt(b.length),
        BigInt(b.length - 8),
        BigInt(base.headerLen + rng.int(-7, 7)),
        BigInt(rng.int(0, 2 ** 31)),
      ];
      b.writeBigUInt64LE(rng.pick(choices));
      return b;
    }
    case 3: {
      // Offsets overlapping, reversed or out of range.
      const hd = h();
      const t = hd[tensor()];
      const [b, e] = t.data_offsets as [number, number];
      t.data_offsets = rng.pick([
        [e, b],
        [b, e + rng.int(1, 64)],
        [b - rng.int(1, 8), e],
        [0, e - b],
        [b + data.length, e + data.length],
        [rng.pick(bigs), rng.pick(bigs)],
        [b],
        [b, e, e],
        "0,4",
        null,
        [String(b), e],
      ]);
      return assemble(hd, data);
    }
    case 4: {
      // dtype mismatching the bytes, unknown, or prototype names.
      const hd = h();
      hd[tensor()].dtype = rng.pick([
        "F64",
        "U8",
        "I32",
        "f32",
        "F8",
        "toString",
        "__proto__",
        "constructor",
        "hasOwnProperty",
        "",
        7,
        null,
        ["F32"],
      ]);
      return assemble(hd, data);
    }
    case 5: {
      // Shapes mismatching the bytes, invalid, or with a product beyond exact integers.
      const hd = h();
      hd[tensor()].shape = rng.pick([
        [2, 4],
        [-1, 6],
        [1.5, 4],
        ["2", 3],
        [2 ** 53, 2 ** 53],
        [2 ** 26, 2 ** 26, 2 ** 26, 0],
        Array(40).fill(2 ** 52),
        [...Array(40).fill(2 ** 52), 0],
        [1e308, 1e308],
        [Number.MAX_SAFE_INTEGER, 2],
        "2,3",
        null,
        {},
        [[2], [3]],
        [],
      ]);
      return assemble(hd, data);
    }
    case 6: {
      // Not JSON at all, or JSON that is not an object.
      const texts = [
        "",
        "{",
        "{'a': 1}",
        "null",
        "[]",
        "42",
        '"str"',
        "{} trailing",
        "\uFEFF{}",
        "{NaN: 1}",
        "\0\0\0\0",
      ];
      const junk = Buffer.alloc(rng.int(1, 64));
      for (let i = 0; i < junk.length; i++) junk[i] = rng.int(0, 255);
      return rng.bool(0.5) ? assemble(rng.pick(texts), data) : assemble(junk.toString("latin1"), data);
    }
    case 7: {
      // Deep JSON: as the whole header, as a shape, as an entry, as metadata.
      const n = rng.pick([1000, 10_000, 100_000]);
      const where = rng.int(0, 3);
      if (where === 0) return assemble(deep(n), data);
      const text = JSON.stringify(h()).replace(
        where === 1 ? /"shape":\[[^\]]*\]/ : where === 2 ? /"a":\{[^}]*\}/ : /"__metadata__":\{[^}]*\}/,
        where === 1 ? `"shape":${deep(n)}` : where === 2 ? `"a":${deep(n)}` : `"__metadata__":${deep(n)}`,
      );
      return assemble(text, data);
    }
    case 8: {
      // Entries that are not objects, metadata of the wrong kind.
      const hd = h();
      if (rng.bool()) hd[tensor()] = rng.pick([null, 1, "x", [], true]) as unknown as Header[string];
      else
        hd.__metadata__ = rng.pick([
          null,
          1,
          "x",
          [1, 2],
          { a: 1 },
          { a: { b: "c" } },
          { a: null },
        ]) as Header[string];
      return assemble(hd, data);
    }
    case 9: {
      // Odd tensor names: huge, control characters, prototype keys, duplicates after re-serialisation.
      const hd = h();
      const name = rng.pick(["x".repeat(100_000), "a\nb", "\u0000", "__proto__", "constructor", ""]);
      hd[name] = hd[tensor()];
      return assemble(hd, data);
    }
    case 10: {
      // Two tensors sharing bytes.
      const hd = h();
      hd.z = { ...hd.a };
      return assemble(hd, data);
    }
    case 11: {
      // Data section truncated or extended.
      const cut = rng.bool() ? data.subarray(0, rng.int(0, data.length)) : Buffer.concat([data, data]);
      return assemble(h(), cut);
    }
    case 12: {
      // Declared header length larger than the header, with the data shifted into it.
      const json = Buffer.from(JSON.stringify(h()));
      return assemble(JSON.stringify(h()), data, BigInt(json.length + rng.int(1, 40)));
    }
    case 13: {
      // A huge tensor claimed by a small file.
      const hd = h();
      hd.big = { dtype: "F32", shape: [1 << 20, 1 << 20], data_offsets: [0, 4 * 2 ** 40] };
      return assemble(hd, data);
    }
    case 14: {
      // Random printable garbage spliced into the header text.
      const text = JSON.stringify(h());
      const at = rng.int(0, text.length);
      const junk = rng.pick([",", "}", "{", '"', ":", "[", "]", "1e999", "-", "\\u12", "true", "\n"]);
      return assemble(text.slice(0, at) + junk + text.slice(at + rng.int(0, 3)), data);
    }
    case 15: {
      // Byte flips in the data section only: must still open (data is opaque).
      const b = Buffer.from(base.bytes);
      for (let i = rng.int(1, 8); i > 0; i--) b[rng.int(8 + base.headerLen, b.length - 1)] ^= 0xff;
      return b;
    }
    case 16:
      return Buffer.alloc(rng.int(0, 7), rng.int(0, 255));
    default: {
      // Several mutations at once.
      const once = mutate(rng, base);
      const b = Buffer.from(once);
      if (b.length > 0) b[rng.int(0, b.length - 1)] ^= 1 << rng.int(0, 7);
      return b;
    }
  }
}

describe("safetensors parser fuzzing", () => {
  test("6000 mutated files: each opens consistently or fails with a clear SafetensorsError", {
    timeout: 120_000,
  }, () => {
    const base = baseFile();
    const rng = new Rng(0x5afe7e45);
    const file = path.join(dir, "fuzz.safetensors");
    const t0 = Date.now();
    let opened = 0;
    let refused = 0;
    for (let i = 0; i < 6000; i++) {
      const bytes = mutate(rng, base);
      fs.writeFileSync(file, bytes);
      let st: SafetensorsFile | null = null;
      try {
        st = SafetensorsFile.open(file, { label: "fuzz.safetensors" });
        // Whatever opened reads back exactly what the header promised.
        for (const [name, info] of st.tensors) {
          assert.ok(info.offset + info.byteLength <= bytes.length, `case ${i}: ${name} ends past the file`);
          assert.equal(st.readBytes(name).byteLength, info.byteLength, `case ${i}: ${name}`);
          const n = info.byteLength / DTYPE_BYTES[info.dtype];
          assert.equal(st.readF32(name).length, n, `case ${i}: ${name} element count`);
        }
        for (const v of Object.values(st.metadata)) assert.equal(typeof v, "string", `case ${i}: metadata`);
        opened++;
      } catch (e) {
        if (e instanceof assert.AssertionError) throw e;
        const err = e as Error;
        assert.ok(
          err instanceof SafetensorsError,
          `case ${i}: ${err?.constructor?.name} instead of SafetensorsError: ${String(err?.message).slice(0, 200)}`,
        );
        assert.match(err.message, /^fuzz\.safetensors: \S/, `case ${i}: message names the file`);
        assert.ok(
          !err.message.includes("\n"),
          `case ${i}: one line: ${JSON.stringify(err.message.slice(0, 200))}`,
        );
        assert.ok(err.message.length <= 300, `case ${i}: short message (${err.message.length} chars)`);
        assert.doesNotMatch(
          err.message,
          /NaN|undefined|\[object |Infinity|call stack/,
          `case ${i}: ${err.message}`,
        );
        assert.ok(!err.message.includes(dir), `case ${i}: no host path`);
        refused++;
      } finally {
        st?.close();
      }
    }
    assert.ok(
      opened > 100 && refused > 3000,
      `both outcomes exercised (opened ${opened}, refused ${refused})`,
    );
    assert.ok(Date.now() - t0 < 60_000, `fuzzing took ${Date.now() - t0} ms`);
  });

  test("regressions the fuzzer found", () => {
    const base = baseFile();
    const data = base.bytes.subarray(8 + base.headerLen);
    const file = path.join(dir, "regress.safetensors");
    const open = (bytes: Buffer) => {
      fs.writeFileSync(file, bytes);
      return () => SafetensorsFile.open(file, { label: "r.safetensors" }).close();
    };
    const hd = () => JSON.parse(JSON.stringify(base.header));
    // A deeply nested shape used to overflow the stack while quoting it in the message.
    const deepShape = JSON.stringify(hd()).replace(/"shape":\[[^\]]*\]/, `"shape":${deep(100_000)}`);
    assert.throws(open(assemble(deepShape, data)), /r\.safetensors: tensor "a" has an invalid shape \[\[\[/);
    // dtype names inherited from Object.prototype are unknown dtypes, not NaN byte counts.
    for (const dtype of ["toString", "constructor", "__proto__"]) {
      const h = hd();
      h.a.dtype = dtype;
      assert.throws(open(assemble(h, data)), new RegExp(`tensor "a" has unknown dtype "${dtype}"`));
    }
    // A shape whose element count is beyond exact integers is named as such; one with a zero holds 0 bytes
    // (the product used to overflow to Infinity first and give "needs NaN").
    const big = hd();
    big.a.shape = Array(40).fill(2 ** 52);
    assert.throws(open(assemble(big, data)), /tensor "a" has a shape \[.* whose element count is too large/);
    big.a.shape = [...Array(40).fill(2 ** 52), 0];
    assert.throws(open(assemble(big, data)), /tensor "a" holds 24 bytes but F32\[.* needs 0$/);
    // Metadata must be a flat object of strings.
    const meta = hd();
    meta.__metadata__ = { a: { b: "c" } };
    assert.throws(open(assemble(meta, data)), /__metadata__ must map names to strings/);
    // Names are quoted and cut short: a tensor name with a newline or 100 kB long keeps the message one line.
    const named = hd();
    named[`x\n${"y".repeat(100_000)}`] = { ...named.a, dtype: "F99" };
    assert.throws(open(assemble(named, data)), (e: Error) => {
      assert.ok(e instanceof SafetensorsError);
      assert.ok(!e.message.includes("\n") && e.message.length < 300, e.message.slice(0, 100));
      return true;
    });
  });
});

describe("writeSafetensors with tensors made when their turn comes", () => {
  test("each is made once, in order, and reads back; a wrong size fails naming the tensor", () => {
    const f = path.join(dir, "lazy.safetensors");
    const made: string[] = [];
    const lazy = (name: string, values: number[]) => ({
      name,
      dtype: "F32" as const,
      shape: [values.length],
      data: () => {
        made.push(name);
        return Float32Array.from(values);
      },
    });
    writeSafetensors(f, [
      lazy("x", [1, 2, 3]),
      { name: "y", dtype: "F32", shape: [1], data: new Float32Array([4]) },
      lazy("z", [5, 6]),
    ]);
    assert.deepEqual(made, ["x", "z"]);
    const st = SafetensorsFile.open(f);
    try {
      assert.deepEqual([...st.readF32("x")], [1, 2, 3]);
      assert.deepEqual([...st.readF32("y")], [4]);
      assert.deepEqual([...st.readF32("z")], [5, 6]);
    } finally {
      st.close();
    }
    assert.throws(
      () => writeSafetensors(f, [{ ...lazy("w", [1, 2]), shape: [3] }]),
      /"w" has 8 bytes, F32\[3\] needs 12/,
    );
  });
});
