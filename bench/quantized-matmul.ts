/**
 * npm run bench:quantized [-- --json]
 *
 * What an opt-in weight-only quantised path (issue 20) would buy before it is built: one llama-7B MLP matrix
 * [11008, 4096] times one row (a decode step) and 594 rows (a llava-1.5 prefill), through the project's own
 * linear (f32 and bf16 weights) and through onnxruntime's MatMulNBits (com.microsoft; int8 and int4 weights in
 * blocks of 32, at accuracy levels 0 and 4, i.e. f32 or int8 activations). Prints the median time, GFLOPS and
 * the largest deviation from the f32 product. The quantiser here is a plain symmetric one (zero point at
 * mid-range, scale = block max / (2^(bits-1) - 1)), good enough to time the kernel and size its error.
 */
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { OrtKernels } from "../src/kernels/ort-kernels.js";
import type { WeightMatrix } from "../src/kernels/types.js";

const { onnx } = onnxProto;
const DT = onnx.TensorProto.DataType;
const INT = onnx.AttributeProto.AttributeType.INT;

const N = 11008;
const K = 4096;
const BLOCK = 32;
const ROWS = [1, 594];

interface Row {
  path: string;
  m: number;
  ms: number;
  gflops: number;
  maxAbsDiff: number;
  maxAbsRef: number;
}

/** Deterministic weights of a trained layer's scale (|w| ≤ 0.05). */
function weights(): Float32Array {
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = Math.sin(i * 12.9898) * 0.05;
  return w;
}

/** bf16 bits of an f32 array (round to nearest even). */
function toBf16(w: Float32Array): Uint16Array {
  const u = new Uint32Array(w.buffer, w.byteOffset, w.length);
  const out = new Uint16Array(w.length);
  for (let i = 0; i < u.length; i++) out[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16;
  return out;
}

/** MatMulNBits' inputs: packed codes [N, blocks, blob], scales [N·blocks], zero points (packed for 4 bits). */
function quantize(w: Float32Array, bits: 4 | 8) {
  const blocks = K / BLOCK;
  const blob = (BLOCK * bits) / 8;
  const codes = new Uint8Array(N * blocks * blob);
  const scales = new Float32Array(N * blocks);
  const zpPerRow = bits === 8 ? blocks : Math.ceil(blocks / 2);
  const zeros = new Uint8Array(N * zpPerRow);
  const mid = 1 << (bits - 1);
  const top = (1 << bits) - 1;
  for (let n = 0; n < N; n++)
    for (let b = 0; b < blocks; b++) {
      const at = n * K + b * BLOCK;
      let amax = 0;
      for (let j = 0; j < BLOCK; j++) amax = Math.max(amax, Math.abs(w[at + j]));
      const s = amax / (mid - 1) || 1;
      scales[n * blocks + b] = s;
      if (bits === 8) zeros[n * zpPerRow + b] = mid;
      else zeros[n * zpPerRow + (b >> 1)] |= mid << ((b & 1) * 4);
      const o = (n * blocks + b) * blob;
      for (let j = 0; j < BLOCK; j++) {
        const q = Math.max(0, Math.min(top, Math.round(w[at + j] / s) + mid));
        if (bits === 8) codes[o + j] = q;
        else codes[o + (j >> 1)] |= q << ((j & 1) * 4);
      }
    }
  return { codes, scales, zeros, blocks, blob };
}

function valueInfo(name: string, dims: (number | string)[]) {
  return {
    name,
    type: {
      tensorType: {
        elemType: DT.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

async function nbitsSession(w: Float32Array, bits: 4 | 8, accuracy: 0 | 4): Promise<ort.InferenceSession> {
  const q = quantize(w, bits);
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: "lvlm-interpret bench",
    opsetImport: [
      { domain: "", version: 17 },
      { domain: "com.microsoft", version: 1 },
    ],
    graph: {
      name: `matmul_${bits}bits`,
      node: [
        {
          opType: "MatMulNBits",
          domain: "com.microsoft",
          input: ["x", "codes", "scales", "zeros"],
          output: ["y"],
          attribute: [
            { name: "K", type: INT, i: K },
            { name: "N", type: INT, i: N },
            { name: "bits", type: INT, i: bits },
            { name: "block_size", type: INT, i: BLOCK },
            { name: "accuracy_level", type: INT, i: accuracy },
          ],
        },
      ],
      input: [valueInfo("x", ["m", K])],
      output: [valueInfo("y", ["m", N])],
      initializer: [
        { name: "codes", dataType: DT.UINT8, dims: [N, q.blocks, q.blob], rawData: q.codes },
        {
          name: "scales",
          dataType: DT.FLOAT,
          dims: [N * q.blocks],
          rawData: new Uint8Array(q.scales.buffer),
        },
        { name: "zeros", dataType: DT.UINT8, dims: [q.zeros.length], rawData: q.zeros },
      ],
    },
  });
  return ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), { intraOpNumThreads: 2 });
}

function input(m: number): Float32Array {
  const x = new Float32Array(m * K);
  for (let i = 0; i < x.length; i++) x[i] = Math.cos(i * 0.37) * 0.5;
  return x;
}

async function timed(
  run: () => Promise<Float32Array>,
  reps: number,
): Promise<{ ms: number; y: Float32Array }> {
  const y = await run();
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await run();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { ms: t[t.length >> 1], y };
}

async function main(): Promise<void> {
  const json = process.argv.includes("--json");
  const w = weights();
  const f32: WeightMatrix = { rows: N, cols: K, dtype: "F32", data: w };
  const bf16: WeightMatrix = { rows: N, cols: K, dtype: "BF16", data: toBf16(w) };
  const kernels = await OrtKernels.create();
  const paths: { path: string; linear: (x: Float32Array, m: number) => Promise<Float32Array> }[] = [
    { path: "project linear, f32 weights", linear: (x, m) => kernels.linear(x, m, f32) },
    { path: "project linear, bf16 weights", linear: (x, m) => kernels.linear(x, m, bf16) },
  ];
  for (const [bits, accuracy] of [
    [8, 4],
    [8, 0],
    [4, 4],
    [4, 0],
  ] as const) {
    const s = await nbitsSession(w, bits, accuracy);
    paths.push({
      path: `MatMulNBits int${bits}, accuracy_level ${accuracy}`,
      linear: async (x, m) =>
        (await s.run({ x: new ort.Tensor("float32", x, [m, K]) })).y.data as Float32Array,
    });
  }
  const rows: Row[] = [];
  const reference = new Map<number, Float32Array>();
  for (const p of paths)
    for (const m of ROWS) {
      const x = input(m);
      const { ms, y } = await timed(() => p.linear(x, m), m === 1 ? 20 : 4);
      if (!reference.has(m)) reference.set(m, y);
      const ref = reference.get(m)!;
      let maxAbsDiff = 0;
      let maxAbsRef = 0;
      for (let i = 0; i < y.length; i++) {
        maxAbsDiff = Math.max(maxAbsDiff, Math.abs(y[i] - ref[i]));
        maxAbsRef = Math.max(maxAbsRef, Math.abs(ref[i]));
      }
      rows.push({ path: p.path, m, ms, gflops: (2 * m * N * K) / (ms / 1000) / 1e9, maxAbsDiff, maxAbsRef });
      if (!json)
        console.log(
          `${p.path.padEnd(36)} m=${String(m).padStart(3)}  ${ms.toFixed(2).padStart(8)} ms  ` +
            `${((2 * m * N * K) / (ms / 1000) / 1e9).toFixed(1).padStart(6)} GFLOPS  ` +
            `max |Δ| vs f32 ${maxAbsDiff.toExponential(2)} (of ${maxAbsRef.toFixed(3)})`,
        );
    }
  await kernels.dispose();
  if (json) console.log(JSON.stringify({ n: N, k: K, block: BLOCK, rows }, null, 1));
}

main().catch((e) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
