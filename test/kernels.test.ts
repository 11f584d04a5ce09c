import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  AUTO_THRESHOLD_FLOPS,
  AutoKernels,
  createKernels,
  OrtKernels,
  parseKernelChoice,
  TsKernels,
} from "../src/kernels/index.js";
import type { Kernels, WeightMatrix } from "../src/kernels/types.js";
import { f16ToF32, f32ToBf16, f32ToF16 } from "../src/tensor/half.js";

/** mulberry32: small seeded PRNG, uniform [0, 1). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

function makeWeight(rows: number, cols: number, dtype: WeightMatrix["dtype"], seed: number): WeightMatrix {
  const f = randArray(rows * cols, seed, 0.5);
  if (dtype === "F32") return { rows, cols, dtype, data: f };
  const enc = dtype === "BF16" ? f32ToBf16 : f32ToF16;
  return { rows, cols, dtype, data: Uint16Array.from(f, enc) };
}

/** Exact float64 value of each weight element (16-bit codes widened exactly). */
function weightF64(w: WeightMatrix): Float64Array {
  const out = new Float64Array(w.data.length);
  const bits = new Uint32Array(1);
  const asFloat = new Float32Array(bits.buffer);
  for (let i = 0; i < out.length; i++) {
    const v = w.data[i];
    if (w.dtype === "F32") out[i] = v;
    else if (w.dtype === "F16") out[i] = f16ToF32(v);
    else {
      bits[0] = v << 16;
      out[i] = asFloat[0];
    }
  }
  return out;
}

/** Trivially naive triple loop in float64: y[i, j] = Σ_t x[i, t]·w[j, t] + b[j]. */
function naiveLinear(x: Float32Array, m: number, w: WeightMatrix, bias: Float32Array | null): Float64Array {
  const wf = weightF64(w);
  const y = new Float64Array(m * w.rows);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < w.rows; j++) {
      let s = 0;
      for (let t = 0; t < w.cols; t++) s += x[i * w.cols + t] * wf[j * w.cols + t];
      y[i * w.rows + j] = s + (bias ? bias[j] : 0);
    }
  }
  return y;
}

function naiveBmm(
  a: Float32Array,
  b: Float32Array,
  batch: number,
  m: number,
  k: number,
  n: number,
  transB: boolean,
): Float64Array {
  const out = new Float64Array(batch * m * n);
  for (let p = 0; p < batch; p++) {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let t = 0; t < k; t++) {
          const bv = transB ? b[p * n * k + j * k + t] : b[p * k * n + t * n + j];
          s += a[p * m * k + i * k + t] * bv;
        }
        out[p * m * n + i * n + j] = s;
      }
    }
  }
  return out;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/**
 * Tolerance for an f32 result of k-term dot products against the exact (float64) value.
 * Each term is bounded by c = max|x|·max|w|; f32 unit roundoff is u = 2^-24 ≈ 6e-8. With random-sign terms
 * the partial sums are ~√i·c/√3, each addition rounds with error ≲ u·|partial sum|, and the k errors add in
 * quadrature, so sequential f32 accumulation is off by ≈ u·c·k/√6 (blocked/SIMD sums such as MLAS's are
 * better). That is ≤ 1.3e-5·c for k ≤ 512 (the sizes tested) against a tolerance of 1e-5·√k·c = 2.3e-4·c
 * at k = 512 and ≥ 3.6e-5·c at k ≥ 13; measured errors stay below 0.12× the tolerance even at k = 4096.
 * Any real bug (a missed or misplaced term, wrong transpose, wrong widening) is an error of order c, far
 * above it. Results are ~√k·c/3 in size, so this is a relative-accuracy check at the ~3e-5 level. The bias
 * adds one rounding of ≈ u·|b|, covered by 1e-6·max|b|.
 */
function tolerance(k: number, maxX: number, maxW: number, maxB = 0): number {
  return 1e-5 * Math.sqrt(Math.max(k, 1)) * maxX * maxW + 1e-6 * maxB + 1e-30;
}

function assertClose(got: Float32Array, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst)) {
      worst = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
      at = i;
    }
  }
  assert.ok(worst <= tol, `${what}: max |diff| ${worst} at ${at} exceeds tol ${tol}`);
}

const LINEAR_SHAPES: [m: number, k: number, n: number][] = [
  [1, 13, 7],
  [7, 13, 5],
  [1, 300, 70],
  [3, 64, 33],
  [5, 512, 301], // several TS weight blocks (64 Ki floats each) plus a ragged tail of rows
  [33, 96, 17],
];

const BMM_SHAPES: [batch: number, m: number, k: number, n: number][] = [
  [1, 7, 13, 5],
  [3, 2, 7, 9],
  [4, 1, 64, 37],
  [2, 17, 33, 17],
];

describe("kernels", () => {
  const ts = new TsKernels();
  let ort: OrtKernels;
  let ortWiden: OrtKernels;
  before(async () => {
    ort = await OrtKernels.create();
    ortWiden = new OrtKernels({ bf16: "widen" });
  });
  after(async () => {
    await ort.dispose();
    await ortWiden.dispose();
  });

  for (const dtype of ["F32", "F16", "BF16"] as const) {
    for (const withBias of [false, true]) {
      test(`linear ${dtype} ${withBias ? "with" : "without"} bias: ts, ort vs float64 naive`, async () => {
        let seed = 1;
        for (const [m, k, n] of LINEAR_SHAPES) {
          const x = randArray(m * k, seed++, 2);
          const w = makeWeight(n, k, dtype, seed++);
          const bias = withBias ? randArray(n, seed++, 3) : null;
          const want = naiveLinear(x, m, w, bias);
          const tol = tolerance(k, maxAbs(x), maxAbs(weightF64(w)), bias ? maxAbs(bias) : 0);
          const impls: [string, Kernels][] = [
            ["ts", ts],
            ["ort", ort],
          ];
          if (dtype === "BF16") impls.push(["ort(bf16 widen)", ortWiden]);
          for (const [name, kern] of impls) {
            const got = await kern.linear(x, m, w, bias);
            assertClose(got, want, tol, `${name} linear ${dtype} m=${m} k=${k} n=${n} bias=${withBias}`);
          }
        }
      });
    }
  }

  test("big 16-bit weights (run by ort in row blocks) give the same product", async () => {
    // > 2^20 elements with a few rows (decoding): cache-sized blocks four to a run, the rest one block each;
    // > 2^22 with more rows: 4 Mi-element blocks. Rows of the output must land in place, the bias once.
    const cases: [number, number, number, boolean][] = [
      [3, 4096, 1100, true], // one run of four 256-row blocks, then 76 rows
      [3, 4096, 1100, false],
      [1, 4096, 2048, true], // two runs, nothing left over
      [8, 1000, 1049, true], // 1048 rows to a block: one block alone, then one row
      [12, 4096, 1100, true], // more rows than FEW_ROWS: 4 Mi-element blocks
    ];
    let seed = 41;
    for (const [m, k, n, withBias] of cases)
      for (const dtype of ["BF16", "F16"] as const) {
        const x = randArray(m * k, seed++, 2);
        const w = makeWeight(n, k, dtype, seed++);
        const bias = withBias ? randArray(n, seed++, 3) : null;
        const want = naiveLinear(x, m, w, bias);
        const tol = tolerance(k, maxAbs(x), maxAbs(weightF64(w)), bias ? maxAbs(bias) : 0);
        const what = `${dtype} m=${m} k=${k} n=${n} bias=${withBias}`;
        assertClose(await ort.linear(x, m, w, bias), want, tol, `ort row-blocked linear ${what}`);
        if (dtype === "BF16")
          assertClose(await ortWiden.linear(x, m, w, bias), want, tol, `ort(widen) row-blocked ${what}`);
      }
  });

  test("ort feeds BF16 through the in-graph BitCast on this onnxruntime", async () => {
    await ort.linear(new Float32Array(4), 1, makeWeight(3, 4, "BF16", 9));
    assert.equal(ort.bf16Path, "bitcast");
    assert.equal(ortWiden.bf16Path, "widen");
  });

  for (const transB of [false, true]) {
    test(`bmm transB=${transB}: ts, ort vs float64 naive`, async () => {
      let seed = 100;
      for (const [batch, m, k, n] of BMM_SHAPES) {
        const a = randArray(batch * m * k, seed++, 2);
        const b = randArray(batch * k * n, seed++, 1.5);
        const want = naiveBmm(a, b, batch, m, k, n, transB);
        const tol = tolerance(k, maxAbs(a), maxAbs(b));
        for (const kern of [ts, ort] as Kernels[]) {
          const got = await kern.bmm(a, b, batch, m, k, n, transB);
          assertClose(got, want, tol, `${kern.name} bmm b=${batch} m=${m} k=${k} n=${n} transB=${transB}`);
        }
      }
    });
  }

  test("matmulTransA: ts, ort vs float64 naive, with shape errors", async () => {
    let seed = 150;
    for (const [k, m, n] of [
      [1, 1, 1],
      [7, 3, 5],
      [116, 256, 688],
      [232, 116, 32],
      [65, 96, 384],
    ] as const) {
      const a = randArray(k * m, seed++, 2);
      const b = randArray(k * n, seed++, 1.5);
      // aᵀ·b is a bmm of the explicit transpose.
      const at = new Float32Array(m * k);
      for (let r = 0; r < k; r++) for (let c = 0; c < m; c++) at[c * k + r] = a[r * m + c]!;
      const want = naiveBmm(at, b, 1, m, k, n, false);
      const tol = tolerance(k, maxAbs(a), maxAbs(b));
      for (const kern of [ts, ort] as Kernels[])
        assertClose(
          await kern.matmulTransA(a, b, k, m, n),
          want,
          tol,
          `${kern.name} matmulTransA ${k}x${m}x${n}`,
        );
    }
    for (const kern of [ts, ort] as Kernels[]) {
      assert.equal((await kern.matmulTransA(new Float32Array(0), new Float32Array(0), 0, 2, 3)).length, 6);
      await assert.rejects(
        kern.matmulTransA(new Float32Array(6), new Float32Array(5), 2, 3, 3),
        /b length 5/,
      );
    }
  });

  test("empty products and shape errors", async () => {
    const w = makeWeight(5, 3, "F32", 3);
    for (const kern of [ts, ort] as Kernels[]) {
      assert.equal((await kern.linear(new Float32Array(0), 0, w)).length, 0);
      assert.equal((await kern.bmm(new Float32Array(0), new Float32Array(0), 0, 2, 3, 4, true)).length, 0);
      await assert.rejects(kern.linear(new Float32Array(4), 1, w), /input length 4/);
      await assert.rejects(kern.linear(new Float32Array(3), 1, w, new Float32Array(4)), /bias length 4/);
      await assert.rejects(
        kern.bmm(new Float32Array(6), new Float32Array(5), 1, 2, 3, 2, false),
        /b length 5/,
      );
      const bad: WeightMatrix = { rows: 5, cols: 3, dtype: "BF16", data: new Float32Array(15) };
      await assert.rejects(kern.linear(new Float32Array(3), 1, bad), /dtype BF16/);
    }
  });

  test("a weight with a negative shape is refused even when its sizes multiply to its length", async () => {
    const w: WeightMatrix = { rows: -1, cols: -1, dtype: "F32", data: new Float32Array(1) };
    for (const kern of [ts, ort] as Kernels[])
      await assert.rejects(kern.linear(new Float32Array(0), 0, w), /bad weight shape -1x-1/);
  });

  test("ort refuses an output larger than any array before onnxruntime allocates it", async () => {
    // 2^17 × 2^17 floats (64 GiB) from two 512 KiB inputs: without the check onnxruntime tries to allocate
    // (and fill) it; whatever it managed, the result could not come back as one Float32Array.
    const side = 1 << 17;
    const a = new Float32Array(side);
    const started = performance.now();
    await assert.rejects(ort.bmm(a, a, 1, side, 1, side, false), /bmm: output 1×131072×131072 .* exceeds/);
    await assert.rejects(ort.matmulTransA(a, a, 1, side, side), /matmulTransA: output .* exceeds/);
    const w: WeightMatrix = { rows: side, cols: 1, dtype: "F32", data: a };
    await assert.rejects(ort.linear(a, side, w), /linear: output .* exceeds/);
    assert.ok(performance.now() - started < 10_000, "refused before any work");
  });

  test("concurrent ort calls (shared BF16 scratch pool) stay correct", async () => {
    const m = 3;
    const k = 40;
    const ws = [0, 1, 2, 3].map((i) => makeWeight(20 + i, k, "BF16", 50 + i));
    const x = randArray(m * k, 60);
    for (const kern of [ort, ortWiden]) {
      const got = await Promise.all(ws.map((w) => kern.linear(x, m, w)));
      ws.forEach((w, i) => {
        assertClose(got[i], naiveLinear(x, m, w, null), tolerance(k, maxAbs(x), 0.5), `concurrent #${i}`);
      });
    }
  });
});

describe("ort dispose", () => {
  test("releases sessions, is idempotent, and refuses later calls", async () => {
    const k = await OrtKernels.create();
    const w = makeWeight(4, 6, "F16", 7);
    await k.linear(randArray(12, 8), 2, w);
    await k.bmm(randArray(6, 9), randArray(6, 10), 1, 2, 3, 2, true);
    await k.dispose();
    await k.dispose();
    await assert.rejects(k.linear(randArray(12, 8), 2, w), /after dispose/);
    await assert.rejects(k.bmm(randArray(6, 9), randArray(6, 10), 1, 2, 3, 2, false), /after dispose/);
  });

  test("waits for in-flight runs before releasing sessions", async () => {
    const k = await OrtKernels.create();
    const [m, kk, n] = [64, 512, 512];
    const x = randArray(m * kk, 11);
    const w = makeWeight(n, kk, "BF16", 12);
    await k.linear(x, m, w); // sessions exist, so the next call reaches session.run() at once
    const running = k.linear(x, m, w);
    await new Promise((r) => setImmediate(r));
    await k.dispose();
    assertClose(await running, naiveLinear(x, m, w, null), tolerance(kk, maxAbs(x), 0.5), "in-flight linear");
  });
});

describe("kernel selection", () => {
  test("parseKernelChoice", () => {
    assert.equal(parseKernelChoice("auto"), "auto");
    assert.equal(parseKernelChoice("TS"), "ts");
    assert.equal(parseKernelChoice(" ort "), "ort");
    assert.throws(
      () => parseKernelChoice("gpu"),
      /^Error: invalid kernel choice "gpu" \(expected one of: auto, ts, ort\)$/,
    );
  });

  test("createKernels returns the forced implementation", async () => {
    const t = await createKernels("ts");
    assert.equal(t.name, "ts");
    assert.ok(t instanceof TsKernels);
    const o = await createKernels("ort");
    assert.equal(o.name, "ort");
    assert.ok(o instanceof OrtKernels);
    await t.dispose();
    await o.dispose();
  });

  test("auto routes by FLOPs and returns the same numbers", async () => {
    const auto = await createKernels("auto");
    assert.ok(auto instanceof AutoKernels);
    const ts = new TsKernels();
    try {
      // Tiny call → ts; large call → ort.
      assert.equal(auto.route(1, 16, 16).name, "ts");
      assert.equal(auto.route(64, 256, 256).name, "ort");
      assert.ok(2 * 64 * 256 * 256 >= AUTO_THRESHOLD_FLOPS && 2 * 16 * 16 < AUTO_THRESHOLD_FLOPS);
      assert.equal(auto.route(8, 64, 64, 64).name, "ort", "bmm counts the batch");
      let seed = 200;
      for (const [m, k, n] of [
        [1, 16, 16],
        [64, 256, 256],
      ] as const) {
        const x = randArray(m * k, seed++);
        const w = makeWeight(n, k, "BF16", seed++);
        const bias = randArray(n, seed++);
        const tol = tolerance(k, maxAbs(x), 0.5, maxAbs(bias));
        assertClose(
          await auto.linear(x, m, w, bias),
          await ts.linear(x, m, w, bias),
          2 * tol,
          `auto linear ${m}`,
        );
        const b = randArray(k * n, seed++);
        for (const transB of [false, true]) {
          assertClose(
            await auto.bmm(x, b, 1, m, k, n, transB),
            await ts.bmm(x, b, 1, m, k, n, transB),
            2 * tolerance(k, maxAbs(x), maxAbs(b)),
            `auto bmm ${m} transB=${transB}`,
          );
        }
        const c = randArray(m * n, seed++);
        assertClose(
          await auto.matmulTransA(x, c, m, k, n),
          await ts.matmulTransA(x, c, m, k, n),
          2 * tolerance(m, maxAbs(x), maxAbs(c)),
          `auto matmulTransA ${m}`,
        );
      }
    } finally {
      await auto.dispose();
    }
  });
});
