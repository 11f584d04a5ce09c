/**
 * Matmul kernel benchmarks: `linear` GFLOPS for the TS and ORT kernels on prefill-shaped and decode-shaped
 * products, with F32 and BF16 weights (F16 on request). Each case: at least three warm-up calls (up to a
 * quarter of the time budget), then timed calls until the budget is used (at least two). The TS kernels get
 * fewer prefill rows so a case finishes in about a second; GFLOPS stay comparable because the work per row
 * is the same (16-bit weights are widened once per call, so fewer rows slightly understate TS there).
 */

import { OrtKernels } from "../src/kernels/ort-kernels.js";
import { TsKernels } from "../src/kernels/ts-kernels.js";
import type { Kernels, WeightMatrix } from "../src/kernels/types.js";
import { f32ToBf16, f32ToF16 } from "../src/tensor/half.js";

export interface KernelBenchRow {
  impl: string;
  m: number;
  k: number;
  n: number;
  gflops: number;
}

export interface KernelBenchOptions {
  quick?: boolean;
  /** Weight dtypes to measure; default F32 and BF16. */
  dtypes?: WeightMatrix["dtype"][];
  /** Seconds of timed calls per case; default 1 (0.3 when quick). */
  budgetS?: number;
  /** Called with each row as it is measured (progress output). */
  onRow?: (row: KernelBenchRow) => void;
}

/** xorshift32 → uniform [-1, 1); deterministic and fast enough for 45M-element matrices. */
function fillRandom(a: Float32Array, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    a[i] = (s >>> 0) / 2147483648 - 1;
  }
  return a;
}

function makeWeight(n: number, k: number, dtype: WeightMatrix["dtype"], seed: number): WeightMatrix {
  const f = fillRandom(new Float32Array(n * k), seed);
  if (dtype === "F32") return { rows: n, cols: k, dtype, data: f };
  const enc = dtype === "BF16" ? f32ToBf16 : f32ToF16;
  const h = new Uint16Array(n * k);
  for (let i = 0; i < h.length; i++) h[i] = enc(f[i]);
  return { rows: n, cols: k, dtype, data: h };
}

async function timeLinear(
  kern: Kernels,
  x: Float32Array,
  m: number,
  w: WeightMatrix,
  budgetS: number,
  minReps: number,
): Promise<number> {
  // Warm-up: session creation, JIT, and ORT's arena growing to the call's intermediates (a BF16/F16 weight
  // cast to f32 is a fresh buffer as big as the weight; the first two calls of such a shape are slow).
  const w0 = performance.now();
  for (let i = 0; i < 3 || (i < 20 && performance.now() - w0 < budgetS * 250); i++)
    await kern.linear(x, m, w);
  let reps = 0;
  const t0 = performance.now();
  let elapsed = 0;
  while (reps < minReps || elapsed < budgetS * 1000) {
    await kern.linear(x, m, w);
    reps++;
    elapsed = performance.now() - t0;
  }
  return (2 * m * w.cols * w.rows * reps) / (elapsed * 1e6);
}

interface Shape {
  label: string;
  k: number;
  n: number;
  /** Rows for ORT and for TS. */
  mOrt: number;
  mTs: number;
}

export async function benchKernels(opts: KernelBenchOptions = {}): Promise<KernelBenchRow[]> {
  const quick = opts.quick ?? false;
  const budgetS = opts.budgetS ?? (quick ? 0.3 : 1);
  const dtypes = opts.dtypes ?? ["F32", "BF16"];
  const shapes: Shape[] = quick
    ? [
        { label: "prefill", k: 2048, n: 2048, mOrt: 128, mTs: 4 },
        { label: "decode", k: 4096, n: 11008, mOrt: 1, mTs: 1 },
      ]
    : [
        { label: "prefill", k: 4096, n: 4096, mOrt: 512, mTs: 8 },
        { label: "decode", k: 4096, n: 11008, mOrt: 1, mTs: 1 },
      ];
  const ts = new TsKernels();
  const ort = await OrtKernels.create();
  const rows: KernelBenchRow[] = [];
  try {
    for (const shape of shapes) {
      const xOrt = fillRandom(new Float32Array(shape.mOrt * shape.k), 7);
      const xTs = xOrt.subarray(0, shape.mTs * shape.k);
      for (const dtype of dtypes) {
        let w: WeightMatrix | null = makeWeight(shape.n, shape.k, dtype, 11);
        for (const [kern, x, m] of [
          [ts, xTs, shape.mTs],
          [ort, xOrt, shape.mOrt],
        ] as const) {
          const gflops = await timeLinear(kern, x, m, w, budgetS, 2);
          const row = { impl: `${kern.name}-${dtype.toLowerCase()}`, m, k: shape.k, n: shape.n, gflops };
          rows.push(row);
          opts.onRow?.(row);
        }
        w = null;
      }
    }
  } finally {
    await ort.dispose();
    await ts.dispose();
  }
  return rows;
}

export interface CrossoverRow {
  m: number;
  k: number;
  n: number;
  flops: number;
  tsUs: number;
  ortUs: number;
}

/** Per-call time of TS vs ORT `linear` (F32) on small shapes, to place the "auto" threshold. */
export async function benchCrossover(budgetS = 0.2): Promise<CrossoverRow[]> {
  const shapes: [number, number, number][] = [
    [1, 16, 16],
    [1, 64, 64],
    [4, 64, 64],
    [1, 128, 256],
    [16, 64, 64],
    [8, 128, 128],
    [1, 512, 512],
    [32, 64, 64],
    [16, 128, 128],
    [64, 64, 64],
    [1, 1024, 1024],
    [32, 128, 128],
    [64, 128, 128],
    [128, 128, 128],
  ];
  const ts = new TsKernels();
  const ort = await OrtKernels.create();
  const out: CrossoverRow[] = [];
  try {
    for (const [m, k, n] of shapes) {
      const x = fillRandom(new Float32Array(m * k), 3);
      const w = makeWeight(n, k, "F32", 5);
      const us = async (kern: Kernels) => {
        const gf = await timeLinear(kern, x, m, w, budgetS, 5);
        return (2 * m * k * n) / (gf * 1e3);
      };
      // Interleave twice and keep the best, to damp noise from other processes on the machine.
      const tsUs = Math.min(await us(ts), await us(ts));
      const ortUs = Math.min(await us(ort), await us(ort));
      out.push({ m, k, n, flops: 2 * m * k * n, tsUs, ortUs });
    }
  } finally {
    await ort.dispose();
  }
  return out;
}
