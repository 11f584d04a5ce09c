/**
 * The backward of the pre-LN ViT encoder layer (models/vision.ts, `VisionTower.layerBackward` without weight
 * gradients) as one onnxruntime graph: fc2 → activation' → fc1 → LayerNorm2 backward + residual → o_proj →
 * attention backward (dProbs = dctx·Vᵀ, dV = Pᵀ·dctx, softmax backward, scale, dQ = dS·K, dK = dSᵀ·Q) →
 * q/k/v → LayerNorm1 backward + residual. Relevancy runs it once per layer per answer token, so it replaces
 * ~20 kernel calls and the JS loops between them (layer-norm and softmax backward, head reshuffles).
 *
 * The math is the per-op path's, op for op (models/attention.ts `attentionBackward`, tensor/ops.ts's
 * `layerNormBackward` and activation derivatives); only float rounding differs (the per-op layer-norm
 * backward keeps its row statistics in float64). Weights are graph inputs as in kernels/ort-blocks.ts, 16-bit
 * ones widened in-graph; dx = dy·W reads W [out, in] as stored, so no transposed copy is needed.
 */
import { activationGrad } from "./graph-parts.js";
import { DT, GraphBuilder } from "./onnx-graph.js";
import type { WeightMatrix } from "./types.js";

export interface VisionBackwardGraphShape {
  dim: number;
  heads: number;
  inter: number;
  eps: number;
  act: string;
  dtype: WeightMatrix["dtype"];
}

/** Weight matrices the backward reads (biases and LayerNorm biases do not enter input gradients). */
export const VISION_MATRICES = ["q", "k", "v", "o", "fc1", "fc2"] as const;

/** The backward graph: inputs d_out, the tape, ln1w/ln2w and the weights; outputs d_in and d_probs. */
export function buildVisionLayerBackwardModel(s: VisionBackwardGraphShape): Uint8Array {
  const { dim: D, heads: H, inter: I, eps } = s;
  const hd = D / H;
  const g = new GraphBuilder("vision_layer_backward", s.dtype === "BF16");
  const rowsD = (name: string) => g.input(name, DT.FLOAT, ["n", D]);
  const dOut = rowsD("d_out");
  const hIn = rowsD("h_in");
  const q = rowsD("q_rows");
  const kH = g.input("k_heads", DT.FLOAT, [H, "n", hd]);
  const vH = g.input("v_heads", DT.FLOAT, [H, "n", hd]);
  const probs = g.input("probs", DT.FLOAT, [H, "n", "n"]);
  const h1 = rowsD("h1");
  const u = g.input("u", DT.FLOAT, ["n", I]);
  const ln1w = g.input("ln1w", DT.FLOAT, [D]);
  const ln2w = g.input("ln2w", DT.FLOAT, [D]);
  const rows: Record<string, number> = { q: D, k: D, v: D, o: D, fc1: I, fc2: D };
  const cols: Record<string, number> = { q: D, k: D, v: D, o: D, fc1: D, fc2: I };
  const W: Record<string, string> = {};
  for (const m of VISION_MATRICES) W[m] = g.weight(m, s.dtype, [rows[m], cols[m]]);

  // y = x·Wᵀ + b ⇒ dx = dy·W
  const linearBack = (dy: string, m: string) => g.op("MatMul", [dy, W[m]]);
  const headsFirst = (x: string) =>
    g.op("Transpose", [g.op("Reshape", [x, g.ints([0, H, hd])])], { perm: [1, 0, 2] });
  const rowsFirst = (x: string) =>
    g.op("Reshape", [g.op("Transpose", [x], { perm: [1, 0, 2] }), g.ints([0, D])]);
  const transposeLast = (x: string) => g.op("Transpose", [x], { perm: [0, 2, 1] });
  // dx = inv·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w, x̂ = (x − mean)·inv, inv = 1/√(var + eps)
  const layerNormBack = (x: string, dy: string, w: string) => {
    const centered = g.op("Sub", [x, g.meanLastAxis(x)]);
    const variance = g.meanLastAxis(g.op("Mul", [centered, centered]));
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [variance, g.scalar(eps)])])]);
    const xhat = g.op("Mul", [centered, inv]);
    const gw = g.op("Mul", [dy, w]);
    const sg = g.meanLastAxis(gw);
    const sgx = g.meanLastAxis(g.op("Mul", [gw, xhat]));
    return g.op("Mul", [g.op("Sub", [g.op("Sub", [gw, sg]), g.op("Mul", [xhat, sgx])]), inv]);
  };

  // MLP and LayerNorm2, then the residual around them.
  const du = g.op("Mul", [linearBack(dOut, "fc2"), activationGrad(g, u, s.act)]);
  const dh1 = g.op("Add", [layerNormBack(h1, linearBack(du, "fc1"), ln2w), dOut]);
  // Attention, heads first.
  const dctx = headsFirst(linearBack(dh1, "o"));
  const dProbs = g.op("MatMul", [dctx, transposeLast(vH)]);
  const dv = g.op("MatMul", [transposeLast(probs), dctx]);
  const dot = g.op("ReduceSum", [g.op("Mul", [probs, dProbs]), g.ints([-1])], { keepdims: 1 });
  // dS = scale·P ⊙ (dP − rowsum(P ⊙ dP)); the scale goes onto K and Q instead ([H, n, hd], not [H, n, n]).
  const scale = g.scalar(hd ** -0.5);
  const ds = g.op("Mul", [probs, g.op("Sub", [dProbs, dot])]);
  const dq = g.op("MatMul", [ds, g.op("Mul", [kH, scale])]);
  const dk = g.op("MatMul", [transposeLast(ds), headsFirst(g.op("Mul", [q, scale]))]);
  // q/k/v, LayerNorm1, and the residual around the attention block.
  const dx = g.op("Add", [
    g.op("Add", [linearBack(rowsFirst(dq), "q"), linearBack(rowsFirst(dk), "k")]),
    linearBack(rowsFirst(dv), "v"),
  ]);
  const dIn = g.op("Add", [layerNormBack(hIn, dx, ln1w), dh1]);

  g.output(dIn, "d_in", ["n", D]);
  g.output(dProbs, "d_probs", [H, "n", "n"]);
  return g.build();
}
