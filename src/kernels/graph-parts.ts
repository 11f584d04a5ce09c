/**
 * Pieces every block graph shares (kernels/ort-blocks.ts forward, kernels/ort-backward-decoder.ts backward):
 * the activations the graphs spell out, with their derivatives, and the tensors that feed weights in.
 */
import * as ort from "onnxruntime-node";
import type { GraphBuilder } from "./onnx-graph.js";
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
