/**
 * The backward of one llama-family decoder layer as one onnxruntime graph (input gradient and the gradient at
 * the attention probabilities, no weight gradients): what relevancy runs per layer and per token. The math is
 * `TextDecoder.layerBackward`'s per-op path (models/decoder.ts with models/attention.ts, the readable
 * reference), op for op:
 *  - MLP: dm = dOut·W_down, dGate = dm ⊙ up ⊙ act′(gate), dUp = dm ⊙ act(gate), dx2 = dGate·W_gate + dUp·W_up;
 *  - post RMSNorm backward, plus the residual dOut → dh1; dctx = dh1·W_o;
 *  - attention per KV group (query heads stacked): dP = dctx·Vᵀ, dS = scale · P ⊙ (dP − rowsum(P ⊙ dP)),
 *    dq = dS·K, and dk/dv of the last m key columns only (keys before `from` are constants);
 *  - RoPE backward (rotation by −angle, from the rows' cos/sin), dx = dq·W_q + dk·W_k + dv·W_v;
 *  - input RMSNorm backward, plus the residual dh1.
 * The MLP, o_proj and q work on the query rows (those with a gradient at the layer output), the k/v and input
 * norm backward on all m variable rows: the same rows except at the top layer, where only the target rows
 * have a gradient and the others' MLP/o/q backward would multiply zeros (5 of its 7 products, exactly).
 * Weights are graph inputs fed from the model's buffers (16-bit ones widened, int8 ones dequantised in-graph);
 * m (variable rows), the query rows, to (keys seen) and the cache capacity are symbolic, so one session per
 * layer shape serves every token.
 */
import * as ort from "onnxruntime-node";
import {
  activation,
  activationGrad,
  BLOCK_ACTIVATIONS,
  feedWeightBlocks,
  type WeightBlocks,
  weightBlocks,
  widenBlock,
} from "./graph-parts.js";
import { DT, GraphBuilder } from "./onnx-graph.js";
import type { DecoderBackwardBlockInput, WeightMatrix } from "./types.js";

export interface DecoderBackwardGraphShape {
  dim: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  inter: number;
  eps: number;
  act: string;
  dtype: WeightMatrix["dtype"];
  /** Elements per widened block of a 16-bit weight. */
  widenBlock: number;
}

export const DECODER_MATRICES = ["q", "k", "v", "o", "gate", "up", "down"] as const;
type DecoderMatrix = (typeof DECODER_MATRICES)[number];

/** [rows, cols] of each decoder weight, Hugging Face's [out, in] layout. */
export function decoderMatrixDims(s: DecoderBackwardGraphShape): Record<DecoderMatrix, [number, number]> {
  const { dim: D, heads: H, kvHeads: KV, headDim: hd, inter: I } = s;
  return {
    q: [H * hd, D],
    k: [KV * hd, D],
    v: [KV * hd, D],
    o: [D, H * hd],
    gate: [I, D],
    up: [I, D],
    down: [D, I],
  };
}

/** The decoder weights as graph inputs in row blocks (graph-parts.ts), the forward and backward graphs' own. */
export function decoderWeightBlocks(
  g: GraphBuilder,
  s: DecoderBackwardGraphShape,
): Record<DecoderMatrix, WeightBlocks> {
  const dims = decoderMatrixDims(s);
  const W = {} as Record<DecoderMatrix, WeightBlocks>;
  for (const m of DECODER_MATRICES) W[m] = weightBlocks(g, m, s.dtype, dims[m][0], dims[m][1], s.widenBlock);
  return W;
}

export function buildDecoderLayerBackwardModel(s: DecoderBackwardGraphShape): Uint8Array {
  const { dim: D, heads: H, kvHeads: KV, headDim: hd, inter: I, eps } = s;
  const rep = H / KV;
  const half = hd / 2;
  const g = new GraphBuilder("decoder_layer_backward", s.dtype === "BF16");
  // "mq" query rows (a gradient at the output), the last of the "m" variable rows.
  const dOut = g.input("d_out", DT.FLOAT, ["mq", D]);
  const hIn = g.input("h_in", DT.FLOAT, ["m", D]);
  const h1 = g.input("h1", DT.FLOAT, ["mq", D]);
  const gate = g.input("gate_out", DT.FLOAT, ["mq", I]);
  const up = g.input("up_out", DT.FLOAT, ["mq", I]);
  const q = g.input("q_rows", DT.FLOAT, ["mq", H * hd]);
  const kCache = g.input("k_cache", DT.FLOAT, [KV, "capacity", hd]);
  const vCache = g.input("v_cache", DT.FLOAT, [KV, "capacity", hd]);
  const probs = g.input("probs", DT.FLOAT, [KV, rep, "mq", "to"]); // [H, mq, to], heads grouped
  const cos = g.input("cos", DT.FLOAT, ["mq", 1, half]);
  const sin = g.input("sin", DT.FLOAT, ["mq", 1, half]);
  const keyCos = g.input("key_cos", DT.FLOAT, ["m", 1, half]);
  const keySin = g.input("key_sin", DT.FLOAT, ["m", 1, half]);
  const inputNorm = g.input("inputNorm", DT.FLOAT, [D]);
  const postNorm = g.input("postNorm", DT.FLOAT, [D]);
  const W = decoderWeightBlocks(g, s);
  // y = x·Wᵀ + b ⇒ dx = dy·W (HF layout [out, in]), = Σ over row blocks dy[:, r0…r1−1]·W[r0…r1−1, :].
  const linearBack = (dy: string, m: DecoderMatrix) => {
    if (W[m].length === 1) return g.op("MatMul", [dy, W[m][0].name]);
    const parts = W[m].map(({ name, r0, r1 }) =>
      g.op("MatMul", [g.op("Slice", [dy, g.ints([r0]), g.ints([r1]), g.ints([1])]), name]),
    );
    return parts.reduce((acc, p) => g.op("Add", [acc, p]));
  };
  const sumLastAxis = (x: string) => g.op("ReduceSum", [x, g.ints([-1])], { keepdims: 1 });
  // RMSNorm backward (ops/tensor/ops.ts's rmsNormBackward): with inv = 1/√(mean(x²) + eps) and gw = dy ⊙ w,
  // dx = inv·gw − inv³·mean(gw ⊙ x)·x.
  const rmsNormBack = (x: string, dy: string, w: string) => {
    const ms = g.meanLastAxis(g.op("Mul", [x, x]));
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(eps)])])]);
    const gw = g.op("Mul", [dy, w]);
    const inv3 = g.op("Mul", [g.op("Mul", [inv, inv]), inv]);
    const c = g.op("Mul", [inv3, g.meanLastAxis(g.op("Mul", [gw, x]))]);
    return g.op("Sub", [g.op("Mul", [gw, inv]), g.op("Mul", [x, c])]);
  };
  // Transpose of rotate-half RoPE: rotation by −angle, [rows, heads·hd] → [rows, heads·hd].
  const ropeBack = (dx: string, heads: number, c: string, sn: string) => {
    const xh = g.op("Reshape", [dx, g.ints([0, heads, hd])]);
    const a = g.op("Slice", [xh, g.ints([0]), g.ints([half]), g.ints([2])]);
    const b = g.op("Slice", [xh, g.ints([half]), g.ints([hd]), g.ints([2])]);
    const first = g.op("Add", [g.op("Mul", [a, c]), g.op("Mul", [b, sn])]);
    const second = g.op("Sub", [g.op("Mul", [b, c]), g.op("Mul", [a, sn])]);
    return g.op("Reshape", [g.op("Concat", [first, second], { axis: 2 }), g.ints([0, heads * hd])]);
  };
  // [m, H·hd] → [KV, rep, m, hd]: the query heads of one KV group stacked, as the forward.
  const grouped = (x: string) =>
    g.op("Transpose", [g.op("Reshape", [x, g.ints([0, KV, rep, hd])])], { perm: [1, 2, 0, 3] });

  // MLP: h2 = h1 + down(act(gate) ⊙ up), gate/up from x2 = norm(h1).
  const dm = linearBack(dOut, "down");
  const dGate = g.op("Mul", [g.op("Mul", [dm, up]), activationGrad(g, gate, s.act)]);
  const dUp = g.op("Mul", [dm, activation(g, gate, s.act)]);
  const dx2 = g.op("Add", [linearBack(dGate, "gate"), linearBack(dUp, "up")]);
  const dh1 = g.op("Add", [rmsNormBack(h1, dx2, postNorm), dOut]);

  // Attention: h1 = h + o(attn(q, k, v)).
  const dctxG = grouped(linearBack(dh1, "o")); // [KV, rep, m, hd]
  const qG = grouped(q);
  // Keys/values of positions 0 … to−1 from the cache ([KV, capacity, hd]); `to` read off probs' shape, m and
  // mq off h_in's and d_out's.
  const to = g.op("Shape", [probs], { start: 3, end: 4 });
  const m = g.op("Shape", [hIn], { start: 0, end: 1 });
  const mq = g.op("Shape", [dOut], { start: 0, end: 1 });
  const firstVariable = g.op("Sub", [to, m]);
  const keys = g.op("Slice", [kCache, g.ints([0]), to, g.ints([1])]);
  const values = g.op("Slice", [vCache, g.ints([0]), to, g.ints([1])]);
  const kG = g.op("Unsqueeze", [keys, g.ints([1])]); // [KV, 1, to, hd]
  const vT = g.op("Unsqueeze", [g.op("Transpose", [values], { perm: [0, 2, 1] }), g.ints([1])]); // [KV, 1, hd, to]
  const dProbs = g.op("MatMul", [dctxG, vT]); // [KV, rep, m, to]
  const dot = sumLastAxis(g.op("Mul", [probs, dProbs]));
  const dS = g.op("Mul", [g.op("Mul", [probs, g.op("Sub", [dProbs, dot])]), g.scalar(hd ** -0.5)]);
  const dqG = g.op("MatMul", [dS, kG]); // [KV, rep, mq, hd]
  const dq = g.op("Reshape", [g.op("Transpose", [dqG], { perm: [2, 0, 1, 3] }), g.ints([0, H * hd])]);
  // dk/dv of the variable key columns to−m … to−1 only: Σ over the group's (head, query row) pairs. Formed
  // for every key column as one product with the transposed [KV, rep·mq, to] operand (a reshape, no copy;
  // onnxruntime folds the transpose into the product), then the last m rows of the small [KV, to, hd] result
  // kept. Slicing and transposing the [KV, rep, mq, to] operands themselves (46 MB each at 7B) was ~12% of a
  // layer's kernel time; the extra rows computed when m < to are single-query products.
  const queryStack = g.op("Concat", [g.ints([KV, -1]), to], { axis: 0 });
  const keysByQueries = (x: string) =>
    g.op("Transpose", [g.op("Reshape", [x, queryStack])], { perm: [0, 2, 1] }); // [KV, to, rep·mq]
  const stacked = (x: string) => g.op("Reshape", [x, g.ints([KV, -1, hd])]); // [KV, rep·mq, hd]
  const variableKeys = (x: string) => g.op("Slice", [x, firstVariable, to, g.ints([1])]); // [KV, m, hd]
  const kvRows = (x: string) =>
    g.op("Reshape", [g.op("Transpose", [x], { perm: [1, 0, 2] }), g.ints([0, KV * hd])]); // [m, KV·hd]
  const dk = kvRows(variableKeys(g.op("MatMul", [keysByQueries(dS), stacked(qG)])));
  const dv = kvRows(variableKeys(g.op("MatMul", [keysByQueries(probs), stacked(dctxG)])));

  // q/k/v from x = norm(h): RoPE backward, then the three projections back. Query-row terms are padded with
  // zero rows above them to the m variable rows (no rows when mq = m).
  const zero = g.ints([0]);
  const belowQueries = g.op("Concat", [g.op("Sub", [m, mq]), zero, zero, zero], { axis: 0 });
  const toVariableRows = (x: string) => g.op("Pad", [x, belowQueries]);
  const dx = g.op("Add", [
    g.op("Add", [
      toVariableRows(linearBack(ropeBack(dq, H, cos, sin), "q")),
      linearBack(ropeBack(dk, KV, keyCos, keySin), "k"),
    ]),
    linearBack(dv, "v"),
  ]);
  const dIn = g.op("Add", [rmsNormBack(hIn, dx, inputNorm), toVariableRows(dh1)]);

  g.output(dIn, "d_in", ["m", D]);
  g.output(dProbs, "d_probs", [KV, rep, "mq", "to"]);
  return g.build();
}

/**
 * The graph's shape key and feeds for one call, or null where it does not apply (an activation the graphs
 * do not spell out, mixed weight dtypes, inconsistent sizes).
 */
export function decoderBackwardCall(
  a: DecoderBackwardBlockInput,
): { shape: DecoderBackwardGraphShape; feeds: Record<string, ort.Tensor> } | null {
  const W = a.weights;
  const dtype = W.q.dtype;
  if (!BLOCK_ACTIVATIONS.has(a.act) || DECODER_MATRICES.some((m) => W[m].dtype !== dtype)) return null;
  // int8 weights whose codes live in onnxruntime alone (forward-only loading): the per-op path says so.
  if (dtype === "Q8" && DECODER_MATRICES.some((m) => W[m].data.length === 0)) return null;
  const { m, queries: mq, to, heads: H, kvHeads: KV, headDim: hd, capacity } = a;
  const D = W.q.cols;
  const I = W.gate.rows;
  const ok =
    m > 0 &&
    mq > 0 &&
    mq <= m &&
    to >= m &&
    to <= capacity &&
    H % KV === 0 &&
    hd % 2 === 0 &&
    a.dOut.length === mq * D &&
    a.hIn.length === m * D &&
    a.h1.length === mq * D &&
    a.gate.length === mq * I &&
    a.up.length === mq * I &&
    a.q.length === mq * H * hd &&
    a.k.length === KV * capacity * hd &&
    a.v.length === KV * capacity * hd &&
    a.probs.length === H * mq * to &&
    a.cos.length === (mq * hd) / 2 &&
    a.sin.length === (mq * hd) / 2 &&
    a.keyCos.length === (m * hd) / 2 &&
    a.keySin.length === (m * hd) / 2;
  if (!ok) return null;
  const shape: DecoderBackwardGraphShape = {
    dim: D,
    heads: H,
    kvHeads: KV,
    headDim: hd,
    inter: I,
    eps: a.eps,
    act: a.act,
    dtype,
    widenBlock: widenBlock(),
  };
  const f32 = (x: Float32Array, dims: number[]) => new ort.Tensor("float32", x, dims);
  const norm = (w: Float32Array) => f32(a.unitOffset ? w.map((x) => 1 + x) : w, [w.length]);
  const feeds: Record<string, ort.Tensor> = {
    d_out: f32(a.dOut, [mq, D]),
    h_in: f32(a.hIn, [m, D]),
    h1: f32(a.h1, [mq, D]),
    gate_out: f32(a.gate, [mq, I]),
    up_out: f32(a.up, [mq, I]),
    q_rows: f32(a.q, [mq, H * hd]),
    k_cache: f32(a.k, [KV, capacity, hd]),
    v_cache: f32(a.v, [KV, capacity, hd]),
    probs: f32(a.probs, [KV, H / KV, mq, to]),
    cos: f32(a.cos, [mq, 1, hd / 2]),
    sin: f32(a.sin, [mq, 1, hd / 2]),
    key_cos: f32(a.keyCos, [m, 1, hd / 2]),
    key_sin: f32(a.keySin, [m, 1, hd / 2]),
    inputNorm: norm(W.inputNorm),
    postNorm: norm(W.postNorm),
  };
  for (const mat of DECODER_MATRICES) feedWeightBlocks(feeds, mat, W[mat], shape.widenBlock);
  return { shape, feeds };
}
