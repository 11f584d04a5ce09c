/**
 * Pieces every block graph shares (kernels/ort-blocks.ts forward, kernels/ort-backward-*.ts backward): the
 * activations the graphs spell out, with their derivatives, and how weights are fed in (whole, or 16-bit ones
 * in row blocks).
 */
import * as ort from "onnxruntime-node";
import { DT, type GraphBuilder } from "./onnx-graph.js";
import { checkHostCodes, Q8_BLOCK, q8Blocks } from "./quantize.js";
import type { WeightMatrix } from "./types.js";

/** Activations the block graphs spell out (the others take the per-op path). */
export const BLOCK_ACTIVATIONS = new Set([
  "quick_gelu",
  "gelu",
  "gelu_pytorch_tanh",
  "gelu_new",
  "gelu_fast",
  "silu",
  "swish",
]);

/** act(x) in-graph, written as ops/tensor/ops.ts defines it. */
export function activation(g: GraphBuilder, x: string, act: string): string {
  switch (act) {
    case "silu":
    case "swish":
      return g.op("Mul", [x, g.op("Sigmoid", [x])]);
    case "quick_gelu":
      return g.op("Mul", [x, g.op("Sigmoid", [g.op("Mul", [x, g.scalar(1.702)])])]);
    case "gelu": {
      const erf = g.op("Erf", [g.op("Mul", [x, g.scalar(Math.SQRT1_2)])]);
      return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [erf, g.scalar(1)])]);
    }
    default: {
      // gelu_pytorch_tanh / gelu_new / gelu_fast: ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
      const x3 = g.op("Mul", [g.op("Mul", [x, x]), x]);
      const inner = g.op("Add", [x, g.op("Mul", [x3, g.scalar(0.044715)])]);
      const th = g.op("Tanh", [g.op("Mul", [inner, g.scalar(Math.sqrt(2 / Math.PI))])]);
      return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [th, g.scalar(1)])]);
    }
  }
}

/** act′(x) in-graph, the derivatives of tensor/ops.ts's `activationGradFn`. */
export function activationGrad(g: GraphBuilder, x: string, act: string): string {
  const one = g.scalar(1);
  // σ(a·x) + a·x·σ(a·x)·(1 − σ(a·x)) for silu (a = 1) and quick_gelu (a = 1.702)
  const sigmoidGrad = (a: number) => {
    const ax = a === 1 ? x : g.op("Mul", [x, g.scalar(a)]);
    const s = g.op("Sigmoid", [ax]);
    return g.op("Add", [s, g.op("Mul", [g.op("Mul", [ax, s]), g.op("Sub", [one, s])])]);
  };
  switch (act) {
    case "silu":
    case "swish":
      return sigmoidGrad(1);
    case "quick_gelu":
      return sigmoidGrad(1.702);
    case "gelu": {
      // Φ(x) + x·φ(x)
      const cdf = g.op("Mul", [
        g.op("Add", [g.op("Erf", [g.op("Mul", [x, g.scalar(Math.SQRT1_2)])]), one]),
        g.scalar(0.5),
      ]);
      const pdf = g.op("Mul", [
        g.op("Exp", [g.op("Mul", [g.op("Mul", [x, x]), g.scalar(-0.5)])]),
        g.scalar(1 / Math.sqrt(2 * Math.PI)),
      ]);
      return g.op("Add", [cdf, g.op("Mul", [x, pdf])]);
    }
    default: {
      // ½(1 + th) + ½x(1 − th²)·√(2/π)·(1 + 3·0.044715x²), th = tanh(√(2/π)(x + 0.044715x³))
      const c = Math.sqrt(2 / Math.PI);
      const x2 = g.op("Mul", [x, x]);
      const inner = g.op("Add", [x, g.op("Mul", [g.op("Mul", [x2, x]), g.scalar(0.044715)])]);
      const th = g.op("Tanh", [g.op("Mul", [inner, g.scalar(c)])]);
      const first = g.op("Mul", [g.op("Add", [th, one]), g.scalar(0.5)]);
      const sech2 = g.op("Sub", [one, g.op("Mul", [th, th])]);
      const slope = g.op("Add", [g.op("Mul", [x2, g.scalar(3 * 0.044715)]), one]);
      const second = g.op("Mul", [g.op("Mul", [g.op("Mul", [x, g.scalar(0.5 * c)]), sech2]), slope]);
      return g.op("Add", [first, second]);
    }
  }
}

/** A weight as a graph feed: f32 as is, f16 as float16, bf16 as its raw uint16 bits (BitCast in-graph). */
export function weightTensor(w: WeightMatrix): ort.Tensor {
  const dims = [w.rows, w.cols];
  if (w.dtype === "F32") return new ort.Tensor("float32", w.data as Float32Array, dims);
  if (w.dtype === "F16") return new ort.Tensor("float16", w.data as Uint16Array, dims);
  return new ort.Tensor("uint16", w.data as Uint16Array, dims);
}

/**
 * 16-bit weights are fed (and widened in-graph) in blocks of rows of at most 2²² elements (16 MiB as f32):
 * a whole 7B matrix widened at once is a fresh ~180 MB buffer per call (the block sessions run without an
 * arena), whose allocation and page faults cost more than a single-row product, and a layer's seven widened
 * matrices (~0.8 GB at 7B) would sit on top of the resident weights. Blocks this small are reused from the
 * heap. Row blocks of W [out, in] are contiguous, so they are fed without a copy.
 */
let widenBlockElements = 1 << 22;

/** The current block size (elements) of 16-bit weights; part of every graph's shape key. */
export function widenBlock(): number {
  return widenBlockElements;
}

/**
 * Sets the block size (elements) of 16-bit weights and returns the previous one; tests set it small to run
 * several blocks on tiny fixtures.
 */
export function setWidenBlock(elements: number): number {
  const previous = widenBlockElements;
  widenBlockElements = Math.max(1, Math.floor(elements));
  return previous;
}

/** Row ranges [r0, r1) a weight is fed in: one for f32, blocks of ≤ `block` elements for 16-bit. */
export function rowBlocks(
  rows: number,
  cols: number,
  dtype: WeightMatrix["dtype"],
  block: number,
): [number, number][] {
  const per = dtype === "F32" ? rows : Math.max(1, Math.floor(block / cols));
  const out: [number, number][] = [];
  for (let r0 = 0; r0 < rows; r0 += per) out.push([r0, Math.min(rows, r0 + per)]);
  return out;
}

/** The graph input name of a weight's row block. */
export const blockName = (m: string, b: number, count: number) => (count === 1 ? m : `${m}.${b}`);

/** A weight's row blocks in a graph: each block's float32 value and its rows. */
export type WeightBlocks = { name: string; r0: number; r1: number }[];

/**
 * Declares a weight [rows, cols] as graph inputs, one per row block (widened in-graph if 16-bit; an int8 one
 * as its codes and scales, dequantised in-graph: for products with the weight itself, which MatMulNBits does
 * not compute, as the backward's dy·W).
 */
export function weightBlocks(
  g: GraphBuilder,
  name: string,
  dtype: WeightMatrix["dtype"],
  rows: number,
  cols: number,
  block: number,
): WeightBlocks {
  const blocks = rowBlocks(rows, cols, dtype, block);
  return blocks.map(([r0, r1], b) => {
    const input = blockName(name, b, blocks.length);
    return {
      name:
        dtype === "Q8" ? int8Dequantized(g, input, r1 - r0, cols) : g.weight(input, dtype, [r1 - r0, cols]),
      r0,
      r1,
    };
  });
}

/**
 * An int8 weight block [rows, cols] fed as `name`.codes (uint8 [rows, blocks·Q8_BLOCK]) and `name`.scales
 * ([rows, blocks]), as float32: (code − 128) · scale, quantize.ts's `dequantizeRowsInto` (exact in f32: the
 * code difference is an integer of at most 8 bits, so the product is rounded once, as there).
 */
function int8Dequantized(g: GraphBuilder, name: string, rows: number, cols: number): string {
  const nb = q8Blocks(cols);
  const codes = g.input(`${name}.codes`, DT.UINT8, [rows, nb * Q8_BLOCK]);
  const scales = g.input(`${name}.scales`, DT.FLOAT, [rows, nb]);
  const centred = g.op("Sub", [g.op("Cast", [codes], { to: DT.FLOAT }), g.scalar(128)]);
  const blocks = g.op("Reshape", [centred, g.ints([rows, nb, Q8_BLOCK])]);
  const scaled = g.op("Mul", [blocks, g.op("Unsqueeze", [scales, g.ints([2])])]);
  const flat = g.op("Reshape", [scaled, g.ints([rows, nb * Q8_BLOCK])]);
  // A ragged last block is padded (code 128, the value 0): drop its padding columns.
  return cols === nb * Q8_BLOCK ? flat : g.op("Slice", [flat, g.ints([0]), g.ints([cols]), g.ints([1])]);
}

/** y = x·Wᵀ (+ bias) over a weight's row blocks: each block gives a slice of y's columns. */
export function linearBlocks(g: GraphBuilder, x: string, w: WeightBlocks, bias: string | null): string {
  if (w.length === 1) return g.op("Gemm", bias ? [x, w[0].name, bias] : [x, w[0].name], { transB: 1 });
  const y = g.op(
    "Concat",
    w.map((b) => g.op("Gemm", [x, b.name], { transB: 1 })),
    { axis: 1 },
  );
  return bias ? g.op("Add", [y, bias]) : y;
}

/** Feeds a weight's row blocks under the names `weightBlocks` gave them. */
export function feedWeightBlocks(
  feeds: Record<string, ort.Tensor>,
  name: string,
  w: WeightMatrix,
  block: number,
): void {
  const blocks = rowBlocks(w.rows, w.cols, w.dtype, block);
  blocks.forEach(([r0, r1], b) => {
    const input = blockName(name, b, blocks.length);
    if (w.dtype === "Q8") {
      checkHostCodes(w);
      const nb = q8Blocks(w.cols);
      const width = nb * Q8_BLOCK;
      const codes = (w.data as Uint8Array).subarray(r0 * width, r1 * width);
      const scales = (w.scales as Float32Array).subarray(r0 * nb, r1 * nb);
      feeds[`${input}.codes`] = new ort.Tensor("uint8", codes, [r1 - r0, width]);
      feeds[`${input}.scales`] = new ort.Tensor("float32", scales, [r1 - r0, nb]);
      return;
    }
    const data = w.data.subarray(r0 * w.cols, r1 * w.cols);
    feeds[input] = weightTensor({ ...w, rows: r1 - r0, data });
  });
}

/**
 * MatMulNBits' compute type: 4 = int8 activations (quantised per block of the weight's block size) times
 * int8 weights, the fast path of bench:quantized (2.0 ms vs 247 ms at level 0 for one row of a 7B MLP matrix).
 */
const Q8_ACCURACY_LEVEL = 4;

/**
 * y = x·dequant(W)ᵀ for an int8 weight (kernels/quantize.ts) as one MatMulNBits node, its codes and scales
 * baked into the graph as initializers named `name`.codes / `name`.scales, so that onnxruntime pre-packs
 * them for its int8 kernels when the session is created. No bias: callers add it after the product.
 */
export function int8Linear(g: GraphBuilder, x: string, w: WeightMatrix, name: string): string {
  checkHostCodes(w);
  const nb = q8Blocks(w.cols);
  const codes = w.data as Uint8Array;
  const scales = w.scales as Float32Array;
  const b = g.constant(`${name}.codes`, DT.UINT8, [w.rows, nb, Q8_BLOCK], codes);
  const sc = g.constant(
    `${name}.scales`,
    DT.FLOAT,
    [w.rows * nb],
    new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength),
  );
  // No zero points: MatMulNBits then takes 2^(bits−1) = 128, the Q8_ZERO the codes are stored around.
  return g.contribOp("MatMulNBits", [x, b, sc], {
    K: w.cols,
    N: w.rows,
    bits: 8,
    block_size: Q8_BLOCK,
    accuracy_level: Q8_ACCURACY_LEVEL,
  });
}
