/**
 * Whole transformer blocks as single onnxruntime graphs built in code: one session run per layer instead of
 * ~50 kernel calls and the JS element-wise loops between them (norms, activations, softmax, head reshuffles).
 * Weights are graph *inputs* fed from the model's own buffers (no copy, no second resident set of weights);
 * 16-bit weights are widened in-graph as the per-op kernels do. The attention probabilities, and with the
 * tape the activations the hand-written backward reads, are graph outputs.
 *
 * The math is the per-op path's, op for op (kernels/ts-kernels.ts with models/vision.ts is the readable
 * reference); only float rounding inside onnxruntime's element-wise ops differs, far inside the fixtures'
 * tolerances. One session per graph shape (heads, width, activation, eps, weight dtype, tape) is built lazily
 * and cached; the sequence length is symbolic.
 */
import * as ort from "onnxruntime-node";
import {
  activation,
  BLOCK_ACTIVATIONS,
  feedWeightBlocks,
  int8Linear,
  linearBlocks,
  type WeightBlocks,
  weightBlocks,
  weightTensor,
  widenBlock,
} from "./graph-parts.js";
import { DT, GraphBuilder } from "./onnx-graph.js";
import {
  buildDecoderLayerBackwardModel,
  DECODER_MATRICES,
  type DecoderBackwardGraphShape,
  decoderBackwardCall,
  decoderMatrixDims,
  decoderWeightBlocks,
} from "./ort-backward-decoder.js";
import {
  buildVisionLayerBackwardModel,
  VISION_MATRICES,
  type VisionBackwardGraphShape,
} from "./ort-backward-vision.js";
import type {
  BlockKernels,
  DecoderBackwardBlockInput,
  DecoderBackwardBlockOutput,
  DecoderBlockInput,
  DecoderBlockOutput,
  DecoderBlockWeights,
  DecoderLayerSpec,
  VisionBlockBackwardInput,
  VisionBlockBackwardOutput,
  VisionBlockInput,
  VisionBlockOutput,
  VisionBlockWeights,
} from "./types.js";

interface VisionGraphShape extends VisionBackwardGraphShape {
  tape: boolean;
  /** Elements per widened row block of a 16-bit weight (graph-parts.ts). */
  widenBlock: number;
}

const VISION_VECTORS = ["ln1w", "ln1b", "qb", "kb", "vb", "ob", "ln2w", "ln2b", "fc1b", "fc2b"] as const;

/** The pre-LN ViT encoder layer of models/vision.ts (`VisionTower.layer`) as one graph. */
export function buildVisionLayerModel(s: VisionGraphShape): Uint8Array {
  const { dim: D, heads: H, inter: I, eps } = s;
  const hd = D / H;
  const g = new GraphBuilder("vision_layer", s.dtype === "BF16");
  const h = g.input("h", DT.FLOAT, ["n", D]);
  const vec = (name: string, len: number) => g.input(name, DT.FLOAT, [len]);
  const ln1w = vec("ln1w", D);
  const ln1b = vec("ln1b", D);
  const wq = weightBlocks(g, "q", s.dtype, D, D, s.widenBlock);
  const qb = vec("qb", D);
  const wk = weightBlocks(g, "k", s.dtype, D, D, s.widenBlock);
  const kb = vec("kb", D);
  const wv = weightBlocks(g, "v", s.dtype, D, D, s.widenBlock);
  const vb = vec("vb", D);
  const wo = weightBlocks(g, "o", s.dtype, D, D, s.widenBlock);
  const ob = vec("ob", D);
  const ln2w = vec("ln2w", D);
  const ln2b = vec("ln2b", D);
  const w1 = weightBlocks(g, "fc1", s.dtype, I, D, s.widenBlock);
  const b1 = vec("fc1b", I);
  const w2 = weightBlocks(g, "fc2", s.dtype, D, I, s.widenBlock);
  const b2 = vec("fc2b", D);
  const layerNorm = (x: string, w: string, b: string) =>
    g.op("LayerNormalization", [x, w, b], { axis: -1, epsilon: { f: eps } });
  const linear = (x: string, w: WeightBlocks, b: string) => linearBlocks(g, x, w, b);
  const headsFirst = (x: string) =>
    g.op("Transpose", [g.op("Reshape", [x, g.ints([0, H, hd])])], { perm: [1, 0, 2] });

  const x = layerNorm(h, ln1w, ln1b);
  const q = linear(x, wq, qb);
  const kH = headsFirst(linear(x, wk, kb));
  const vH = headsFirst(linear(x, wv, vb));
  const kT = g.op("Transpose", [kH], { perm: [0, 2, 1] });
  const scores = g.op("Mul", [g.op("MatMul", [headsFirst(q), kT]), g.scalar(hd ** -0.5)]);
  const probs = g.op("Softmax", [scores], { axis: -1 });
  const ctxH = g.op("MatMul", [probs, vH]);
  const ctx = g.op("Reshape", [g.op("Transpose", [ctxH], { perm: [1, 0, 2] }), g.ints([0, D])]);
  const h1 = g.op("Add", [linear(ctx, wo, ob), h]);
  const x2 = layerNorm(h1, ln2w, ln2b);
  const u = linear(x2, w1, b1);
  const h2 = g.op("Add", [linear(activation(g, u, s.act), w2, b2), h1]);

  g.output(h2, "h_out", ["n", D]);
  g.output(probs, "probs", [H, "n", "n"]);
  if (s.tape) {
    g.output(x, "x", ["n", D]);
    g.output(q, "q_out", ["n", D]);
    g.output(kH, "k_heads", [H, "n", hd]);
    g.output(vH, "v_heads", [H, "n", hd]);
    g.output(ctx, "ctx", ["n", D]);
    g.output(h1, "h1", ["n", D]);
    g.output(x2, "x2", ["n", D]);
    g.output(u, "u", ["n", I]);
  }
  return g.build();
}

interface DecoderGraphShape extends DecoderBackwardGraphShape {
  /** Which of the optional biases the layer has (qb, kb, vb, ob, gateB, upB, downB). */
  biases: string[];
  tape: boolean;
  /**
   * Rows follow `past` cached positions (k_cache, v_cache [KV, capacity, hd] and past as inputs, the mask
   * [n, past + n]); the int8 graphs' form, which one session per layer serves for prefill and decode alike.
   */
  cached: boolean;
}

const DECODER_BIASES = ["qb", "kb", "vb", "ob", "gateB", "upB", "downB"] as const;

/**
 * The llama-family layer of models/decoder.ts (`TextDecoder.layer`) as one graph: RMSNorm, q/k/v,
 * rotate-half RoPE from given cos/sin, GQA attention with an additive mask, o_proj + residual, RMSNorm, gated
 * MLP + residual. Over a prefill from an empty cache, weights as inputs; or, with `int8` weights (baked in as
 * MatMulNBits initializers, `s.cached`), over rows after the cached ones.
 */
export function buildDecoderLayerModel(s: DecoderGraphShape, int8?: DecoderBlockWeights): Uint8Array {
  const { dim: D, heads: H, kvHeads: KV, headDim: hd, inter: I, eps } = s;
  const rep = H / KV;
  const half = hd / 2;
  const keys = s.cached ? "keys" : "n";
  const g = new GraphBuilder("decoder_layer", s.dtype === "BF16");
  const h = g.input("h", DT.FLOAT, ["n", D]);
  const cos = g.input("cos", DT.FLOAT, ["n", 1, half]);
  const sin = g.input("sin", DT.FLOAT, ["n", 1, half]);
  const mask = g.input("mask", DT.FLOAT, ["n", keys]);
  const inputNorm = g.input("inputNorm", DT.FLOAT, [D]);
  const postNorm = g.input("postNorm", DT.FLOAT, [D]);
  const dims = decoderMatrixDims(s);
  const B: Record<string, string | null> = {};
  DECODER_BIASES.forEach((b, i) => {
    B[b] = s.biases.includes(b) ? g.input(b, DT.FLOAT, [dims[DECODER_MATRICES[i]][0]]) : null;
  });
  let linear: (x: string, m: (typeof DECODER_MATRICES)[number], b: string | null) => string;
  if (int8) {
    linear = (x, m, b) => {
      const y = int8Linear(g, x, int8[m], m);
      return b ? g.op("Add", [y, b]) : y;
    };
  } else {
    const W = decoderWeightBlocks(g, s);
    linear = (x, m, b) => linearBlocks(g, x, W[m], b);
  }
  // x · 1/sqrt(mean(x²) + eps) · w, the order of ops/tensor/ops.ts's rmsNorm.
  const rmsNorm = (x: string, w: string) => {
    const ms = g.meanLastAxis(g.op("Mul", [x, x]));
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, g.scalar(eps)])])]);
    return g.op("Mul", [g.op("Mul", [x, inv]), w]);
  };
  // [n, heads·hd] → rotate-half RoPE per head → [n, heads, hd]
  const rope = (x: string, heads: number) => {
    const xh = g.op("Reshape", [x, g.ints([0, heads, hd])]);
    const a = g.op("Slice", [xh, g.ints([0]), g.ints([half]), g.ints([2])]);
    const b = g.op("Slice", [xh, g.ints([half]), g.ints([hd]), g.ints([2])]);
    const first = g.op("Sub", [g.op("Mul", [a, cos]), g.op("Mul", [b, sin])]);
    const second = g.op("Add", [g.op("Mul", [b, cos]), g.op("Mul", [a, sin])]);
    return g.op("Concat", [first, second], { axis: 2 });
  };

  const x = rmsNorm(h, inputNorm);
  const qRot = rope(linear(x, "q", B.qb), H); // [n, H, hd]
  const kRot = rope(linear(x, "k", B.kb), KV); // [n, KV, hd]
  const v = linear(x, "v", B.vb); // [n, KV·hd]
  // Query heads of one KV group stacked: [KV, rep, n, hd]; keys [KV, 1, hd, keys], values [KV, 1, keys, hd].
  const qG = g.op("Transpose", [g.op("Reshape", [qRot, g.ints([0, KV, rep, hd])])], { perm: [1, 2, 0, 3] });
  let kT: string;
  let vG: string;
  if (s.cached) {
    // Positions 0 … past−1 from the cache, then the n new rows: [KV, past + n, hd].
    const kCache = g.input("k_cache", DT.FLOAT, [KV, "capacity", hd]);
    const vCache = g.input("v_cache", DT.FLOAT, [KV, "capacity", hd]);
    const past = g.input("past", DT.INT64, [1]);
    const cached = (c: string) => g.op("Slice", [c, g.ints([0]), past, g.ints([1])]);
    const kAll = g.op("Concat", [cached(kCache), g.op("Transpose", [kRot], { perm: [1, 0, 2] })], {
      axis: 1,
    });
    const vHeads = g.op("Transpose", [g.op("Reshape", [v, g.ints([0, KV, hd])])], { perm: [1, 0, 2] });
    const vAll = g.op("Concat", [cached(vCache), vHeads], { axis: 1 });
    kT = g.op("Unsqueeze", [g.op("Transpose", [kAll], { perm: [0, 2, 1] }), g.ints([1])]);
    vG = g.op("Unsqueeze", [vAll, g.ints([1])]);
  } else {
    kT = g.op("Unsqueeze", [g.op("Transpose", [kRot], { perm: [1, 2, 0] }), g.ints([1])]);
    vG = g.op("Unsqueeze", [
      g.op("Transpose", [g.op("Reshape", [v, g.ints([0, KV, hd])])], { perm: [1, 0, 2] }),
      g.ints([1]),
    ]);
  }
  const scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [qG, kT]), g.scalar(hd ** -0.5)]), mask]);
  const probs = g.op("Softmax", [scores], { axis: -1 }); // [KV, rep, n, keys] = [H, n, keys]
  const ctxG = g.op("MatMul", [probs, vG]); // [KV, rep, n, hd]
  const ctx = g.op("Reshape", [g.op("Transpose", [ctxG], { perm: [2, 0, 1, 3] }), g.ints([0, H * hd])]);
  const h1 = g.op("Add", [linear(ctx, "o", B.ob), h]);
  const x2 = rmsNorm(h1, postNorm);
  const gate = linear(x2, "gate", B.gateB);
  const up = linear(x2, "up", B.upB);
  const h2 = g.op("Add", [linear(g.op("Mul", [activation(g, gate, s.act), up]), "down", B.downB), h1]);

  g.output(h2, "h_out", ["n", D]);
  g.output(probs, "probs", [KV, rep, "n", keys]);
  g.output(g.op("Reshape", [kRot, g.ints([0, KV * hd])]), "k_rows", ["n", KV * hd]);
  g.output(v, "v_rows", ["n", KV * hd]);
  if (s.tape) {
    g.output(x, "x", ["n", D]);
    g.output(g.op("Reshape", [qRot, g.ints([0, H * hd])]), "q_rows", ["n", H * hd]);
    g.output(ctx, "ctx", ["n", H * hd]);
    g.output(h1, "h1", ["n", D]);
    g.output(x2, "x2", ["n", D]);
    g.output(gate, "gate_out", ["n", I]);
    g.output(up, "up_out", ["n", I]);
  }
  return g.build();
}

/** Graph outputs of a decoder layer, those the tape adds, and of those what input gradients read. */
const DECODER_OUTPUTS = ["h_out", "probs", "k_rows", "v_rows"];
const DECODER_TAPE_OUTPUTS = ["x", "q_rows", "ctx", "h1", "x2", "gate_out", "up_out"];
const INPUT_GRADIENT_TAPE_OUTPUTS = ["q_rows", "h1", "gate_out", "up_out"];

/**
 * Block graphs on the sessions' options of the owning OrtKernels (threads, spinning). A decoder layer with
 * int8 weights is a graph of its own, its matrices baked in as MatMulNBits initializers (onnxruntime pre-packs
 * initializers, not weights fed as inputs), serving prefill and decode steps alike.
 */
export class OrtBlocks implements BlockKernels {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession | null>>();
  /** int8 decoder layers' sessions (`int8DecoderSession`), and every one created, for `dispose`. */
  private readonly int8Layers = new WeakMap<object, Promise<ort.InferenceSession | null>>();
  private int8Created: Promise<ort.InferenceSession | null>[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private disposed = false;

  private readonly sessionOptions: ort.InferenceSession.SessionOptions;

  constructor(sessionOptions: ort.InferenceSession.SessionOptions) {
    // No CPU arena: a block's intermediates (scores [H, n, n], MLP activations) are large and used once per
    // layer; an arena would keep its high-water mark resident on top of the model for the process's life.
    this.sessionOptions = { ...sessionOptions, enableCpuMemArena: false };
  }

  /** The cached session for a graph, or null when this onnxruntime cannot load it (e.g. no BitCast). */
  private session(key: string, build: () => Uint8Array): Promise<ort.InferenceSession | null> {
    if (this.disposed) throw new Error("OrtBlocks used after dispose()");
    let s = this.sessions.get(key);
    if (!s) {
      s = ort.InferenceSession.create(build(), this.sessionOptions).catch(() => null);
      this.sessions.set(key, s);
    }
    return s;
  }

  private async run(
    sess: ort.InferenceSession,
    feeds: Record<string, ort.Tensor>,
    fetches?: readonly string[],
  ): Promise<ort.InferenceSession.OnnxValueMapType> {
    if (this.disposed) throw new Error("OrtBlocks used after dispose()");
    const p = fetches ? sess.run(feeds, fetches) : sess.run(feeds);
    this.inFlight.add(p);
    try {
      return await p;
    } finally {
      this.inFlight.delete(p);
    }
  }

  async visionLayer(a: VisionBlockInput): Promise<VisionBlockOutput | null> {
    const W: VisionBlockWeights = a.weights;
    const dtype = W.q.dtype;
    if (dtype === "Q8" || !BLOCK_ACTIVATIONS.has(a.act) || VISION_MATRICES.some((m) => W[m].dtype !== dtype))
      return null;
    const D = W.q.cols;
    if (a.n === 0 || D % a.heads !== 0 || a.h.length !== a.n * D) return null;
    const shape: VisionGraphShape = {
      dim: D,
      heads: a.heads,
      inter: W.fc1.rows,
      eps: a.eps,
      act: a.act,
      dtype,
      tape: a.tape,
      widenBlock: widenBlock(),
    };
    const key = `vision:${JSON.stringify(shape)}`;
    const sess = await this.session(key, () => buildVisionLayerModel(shape));
    if (!sess) return null;
    const feeds: Record<string, ort.Tensor> = { h: new ort.Tensor("float32", a.h, [a.n, D]) };
    for (const m of VISION_MATRICES) feedWeightBlocks(feeds, m, W[m], shape.widenBlock);
    for (const v of VISION_VECTORS) feeds[v] = new ort.Tensor("float32", W[v], [W[v].length]);
    const r = await this.run(sess, feeds);
    const out = (name: string) => r[name].data as Float32Array;
    return {
      h: out("h_out"),
      probs: out("probs"),
      tape: a.tape
        ? {
            x: out("x"),
            q: out("q_out"),
            k: out("k_heads"),
            v: out("v_heads"),
            ctx: out("ctx"),
            h1: out("h1"),
            x2: out("x2"),
            u: out("u"),
          }
        : undefined,
    };
  }

  /** The layer's backward without weight gradients (kernels/ort-backward-vision.ts). */
  async visionLayerBackward(a: VisionBlockBackwardInput): Promise<VisionBlockBackwardOutput | null> {
    const W: VisionBlockWeights = a.weights;
    const dtype = W.q.dtype;
    if (dtype === "Q8" || !BLOCK_ACTIVATIONS.has(a.act) || VISION_MATRICES.some((m) => W[m].dtype !== dtype))
      return null;
    const { n, heads: H } = a;
    const D = W.q.cols;
    const I = W.fc1.rows;
    const t = a.tape;
    const sizes = [a.dOut, t.hIn, t.q, t.k, t.v, t.h1].every((x) => x.length === n * D);
    if (n === 0 || D % H !== 0 || !sizes || t.probs.length !== H * n * n || t.u.length !== n * I) return null;
    const shape: VisionBackwardGraphShape = { dim: D, heads: H, inter: I, eps: a.eps, act: a.act, dtype };
    const key = `vision_backward:${JSON.stringify(shape)}`;
    const sess = await this.session(key, () => buildVisionLayerBackwardModel(shape));
    if (!sess) return null;
    const hd = D / H;
    const f32 = (x: Float32Array, dims: number[]) => new ort.Tensor("float32", x, dims);
    const feeds: Record<string, ort.Tensor> = {
      d_out: f32(a.dOut, [n, D]),
      h_in: f32(t.hIn, [n, D]),
      q_rows: f32(t.q, [n, D]),
      k_heads: f32(t.k, [H, n, hd]),
      v_heads: f32(t.v, [H, n, hd]),
      probs: f32(t.probs, [H, n, n]),
      h1: f32(t.h1, [n, D]),
      u: f32(t.u, [n, I]),
      ln1w: f32(W.ln1w, [D]),
      ln2w: f32(W.ln2w, [D]),
    };
    for (const m of VISION_MATRICES) feeds[m] = weightTensor(W[m]);
    const r = await this.run(sess, feeds);
    return { dIn: r.d_in.data as Float32Array, dProbs: r.d_probs.data as Float32Array };
  }

  async decoderLayer(a: DecoderBlockInput): Promise<DecoderBlockOutput | null> {
    const W: DecoderBlockWeights = a.weights;
    const int8 = W.q.dtype === "Q8";
    const shape = decoderShape(a, a.tape);
    if (!shape) return null;
    const { n, kvHeads: KV, headDim: hd } = a;
    const D = shape.dim;
    const past = a.cache?.past ?? 0;
    if (n === 0 || a.h.length !== n * D || a.mask.length !== n * (past + n)) return null;
    const c = a.cache;
    if (c && (past + n > c.capacity || c.k.length !== KV * c.capacity * hd || c.v.length !== c.k.length))
      return null;
    // Weights as stored run from an empty cache only (decode steps keep the per-op path's row blocks).
    if (!int8 && past > 0) return null;
    const sess = int8
      ? await this.int8DecoderSession(a)
      : await this.session(`decoder:${JSON.stringify(shape)}`, () => buildDecoderLayerModel(shape));
    if (!sess) return null;
    const norm = (w: Float32Array) =>
      new ort.Tensor("float32", a.unitOffset ? w.map((x) => 1 + x) : w, [w.length]);
    const feeds: Record<string, ort.Tensor> = {
      h: new ort.Tensor("float32", a.h, [n, D]),
      cos: new ort.Tensor("float32", a.cos, [n, 1, hd / 2]),
      sin: new ort.Tensor("float32", a.sin, [n, 1, hd / 2]),
      mask: new ort.Tensor("float32", a.mask, [n, past + n]),
      inputNorm: norm(W.inputNorm),
      postNorm: norm(W.postNorm),
    };
    if (int8) {
      const capacity = c?.capacity ?? 0;
      feeds.k_cache = new ort.Tensor("float32", c?.k ?? new Float32Array(0), [KV, capacity, hd]);
      feeds.v_cache = new ort.Tensor("float32", c?.v ?? new Float32Array(0), [KV, capacity, hd]);
      feeds.past = new ort.Tensor("int64", BigInt64Array.of(BigInt(past)), [1]);
    } else for (const m of DECODER_MATRICES) feedWeightBlocks(feeds, m, W[m], shape.widenBlock);
    for (const b of DECODER_BIASES) {
      const v = W[b];
      if (v) feeds[b] = new ort.Tensor("float32", v, [v.length]);
    }
    // The int8 graph always has the tape's outputs (one session per layer); every graph's are fetched only
    // as far as asked for (what is not fetched is freed inside the run).
    const fetches = a.tape
      ? [...DECODER_OUTPUTS, ...(a.inputGradientsOnly ? INPUT_GRADIENT_TAPE_OUTPUTS : DECODER_TAPE_OUTPUTS)]
      : DECODER_OUTPUTS;
    const r = await this.run(sess, feeds, fetches);
    const out = (name: string) => r[name].data as Float32Array;
    return {
      h: out("h_out"),
      probs: out("probs"),
      k: out("k_rows"),
      v: out("v_rows"),
      tape: a.tape
        ? {
            q: out("q_rows"),
            h1: out("h1"),
            gate: out("gate_out"),
            up: out("up_out"),
            ...(a.inputGradientsOnly ? {} : { x: out("x"), ctx: out("ctx"), x2: out("x2") }),
          }
        : undefined,
    };
  }

  /**
   * Builds an int8 layer's session now (onnxruntime pre-packs its weights, ~4 ns per parameter) rather than in
   * the first prefill; false when the layer does not run as one graph.
   */
  async prepareDecoderLayer(spec: Omit<DecoderLayerSpec, "cos" | "sin">): Promise<boolean> {
    if (spec.weights.q.dtype !== "Q8" || !decoderShape(spec, true)) return false;
    return (await this.int8DecoderSession(spec)) !== null;
  }

  /**
   * The session of an int8 decoder layer, with its seven matrices baked in: one per layer for the process's
   * life, serving prefill and decode, with and without the tape (fetched on demand). Keyed by the q matrix's
   * scales, which stay when the codes' TypeScript copy is released after the session is built.
   */
  private int8DecoderSession(
    spec: Omit<DecoderLayerSpec, "cos" | "sin">,
  ): Promise<ort.InferenceSession | null> {
    if (this.disposed) throw new Error("OrtBlocks used after dispose()");
    const key = spec.weights.q.scales as Float32Array;
    let s = this.int8Layers.get(key);
    if (!s) {
      const shape = decoderShape(spec, true) as DecoderGraphShape;
      // Building reads the codes (a clear error if they were released without a session); creating can fail
      // only in this onnxruntime (then null: the per-op path).
      const model = buildDecoderLayerModel({ ...shape, cached: true }, spec.weights);
      s = ort.InferenceSession.create(model, this.sessionOptions).catch(() => null);
      this.int8Layers.set(key, s);
      this.int8Created.push(s);
    }
    return s;
  }

  async decoderLayerBackward(a: DecoderBackwardBlockInput): Promise<DecoderBackwardBlockOutput | null> {
    const call = decoderBackwardCall(a);
    if (!call) return null;
    const { shape, feeds } = call;
    const sess = await this.session(`decoder-backward:${JSON.stringify(shape)}`, () =>
      buildDecoderLayerBackwardModel(shape),
    );
    if (!sess) return null;
    const r = await this.run(sess, feeds);
    return { dIn: r.d_in.data as Float32Array, dProbs: r.d_probs.data as Float32Array };
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const pending = [...this.sessions.values(), ...this.int8Created];
    this.sessions.clear();
    this.int8Created = [];
    await Promise.allSettled([...this.inFlight]);
    for (const p of pending) {
      const s = await p.catch(() => null);
      if (s) await s.release();
    }
  }
}

/**
 * The graph shape of a decoder layer, or null when it cannot run as one graph (an activation the graphs do
 * not spell out, matrices of mixed dtypes, heads that do not group, an odd head dim).
 */
function decoderShape(a: Omit<DecoderLayerSpec, "cos" | "sin">, tape: boolean): DecoderGraphShape | null {
  const W = a.weights;
  const dtype = W.q.dtype;
  const { heads: H, kvHeads: KV, headDim: hd } = a;
  if (!BLOCK_ACTIVATIONS.has(a.act) || DECODER_MATRICES.some((m) => W[m].dtype !== dtype)) return null;
  if (H % KV !== 0 || hd % 2 !== 0) return null;
  return {
    dim: W.q.cols,
    heads: H,
    kvHeads: KV,
    headDim: hd,
    inter: W.gate.rows,
    eps: a.eps,
    act: a.act,
    dtype,
    biases: DECODER_BIASES.filter((b) => W[b] !== null),
    tape,
    cached: dtype === "Q8",
    widenBlock: widenBlock(),
  };
}
