/**
 * Kernels backed by onnxruntime-node (CPU execution provider, MLAS sgemm; a GPU one on request, see
 * `OrtKernelsOptions.executionProvider`). Each graph kind is a tiny ONNX
 * model built in code with symbolic dimensions, so one session per kind is created lazily, cached and
 * reused for every shape.
 *
 * Graph kinds:
 *  - linear, F32 weight:   Y = Gemm(X[M,K], W[N,K], (B[N]), transB=1)
 *  - linear, F16 weight:   Y = Gemm(X, Cast<float>(W f16), (B), transB=1)  (ORT's Cast is vectorised F16C)
 *  - linear, BF16 weight:  Y = Gemm(X, Cast<float>(BitCast<bfloat16>(W uint16)), (B), transB=1). The
 *                          N-API layer of onnxruntime-node has no 'bfloat16' tensor type, so the raw bits go
 *                          in as uint16 and BitCast (opset 26, ORT >= 1.30) reinterprets them in-graph. If
 *                          that graph cannot be loaded, BF16 rows are widened to f32 in TS (a shift per
 *                          element) into a reusable scratch buffer and the F32 graph runs on it.
 *  - linear, Q8 weight:    Y = MatMulNBits(X, codes, scales) (+ B), one session per weight matrix with the
 *                          codes and scales baked in as initializers, so onnxruntime pre-packs them for its
 *                          int8 kernels (accuracy_level 4: activations quantised to int8 per block too).
 *  - bmm:                  Y = MatMul(A[P,M,K], B[P,K,N])
 *  - bmm, transB:          Y = MatMul(A, Transpose(B[P,N,K], perm=[0,2,1])) (ORT fuses this into FusedMatMul)
 *  - matmul, transA:       Y = Gemm(A[K,M], B[K,N], transA=1)
 */
import { constants as bufferConstants } from "node:buffer";
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { EXECUTION_PROVIDERS, type ExecutionProvider } from "../contracts/lists.js";
import { bf16ToF32Into } from "../tensor/half.js";
import { int8Linear } from "./graph-parts.js";
import { DT, GraphBuilder } from "./onnx-graph.js";
import { OrtBlocks } from "./ort-blocks.js";
import { checkBmm, checkLinear, checkMatmulTransA } from "./ts-kernels.js";
import type { Kernels, WeightMatrix } from "./types.js";

// onnxruntime 1.30's Linux telemetry, started with its environment (the first session), reads
// /proc/self/cmdline and matches it with a recursive std::regex: a command line over ~29 KB (a long
// `--prompt`) overflows the main thread's stack and the process dies with SIGSEGV, before any JS can react.
// It is read when the environment is created, so setting it here (before any session) is enough; it is set
// unconditionally because "0" or "" would bring the crash back. Child processes inherit it.
process.env.ORT_DISABLE_TELEMETRY = "1";

type GraphKind =
  | "linear"
  | "linear_bias"
  | "linear_f16"
  | "linear_f16_bias"
  | "linear_bf16"
  | "linear_bf16_bias"
  | "linear_f16_x4"
  | "linear_bf16_x4"
  | "bmm"
  | "bmm_t"
  | "mm_ta";

/** Serialised ONNX model for one graph kind. Exported for tests/debugging. */
export function buildModel(kind: GraphKind): Uint8Array {
  const g = new GraphBuilder(kind, kind.startsWith("linear_bf16"));
  if (kind === "mm_ta") {
    const a = g.input("A", DT.FLOAT, ["K", "M"]);
    const b = g.input("B", DT.FLOAT, ["K", "N"]);
    g.output(g.op("Gemm", [a, b], { transA: 1 }), "Y", ["M", "N"]);
  } else if (kind === "bmm" || kind === "bmm_t") {
    const a = g.input("A", DT.FLOAT, ["P", "M", "K"]);
    const b = g.input("B", DT.FLOAT, kind === "bmm" ? ["P", "K", "N"] : ["P", "N", "K"]);
    const bk = kind === "bmm" ? b : g.op("Transpose", [b], { perm: [0, 2, 1] });
    g.output(g.op("MatMul", [a, bk]), "Y", ["P", "M", "N"]);
  } else if (kind === "linear_f16_x4" || kind === "linear_bf16_x4") {
    // Four row blocks of a 16-bit weight, one after the other: each is widened and multiplied before the
    // next is widened, so the f32 temporary is reused while still in cache (see FEW_ROWS_BLOCK_ELEMENTS).
    const dtype = kind === "linear_bf16_x4" ? "BF16" : "F16";
    const x = g.input("X", DT.FLOAT, ["M", "K"]);
    const parts: string[] = [];
    for (let b = 0; b < LINEAR_BLOCKS_PER_RUN; b++)
      parts.push(g.op("Gemm", [x, g.weight(`W${b}`, dtype, [`N${b}`, "K"])], { transB: 1 }));
    g.output(g.op("Concat", parts, { axis: 1 }), "Y", ["M", "N"]);
  } else {
    const dtype = kind.startsWith("linear_bf16") ? "BF16" : kind.startsWith("linear_f16") ? "F16" : "F32";
    const x = g.input("X", DT.FLOAT, ["M", "K"]);
    const w = g.weight("W", dtype, ["N", "K"]);
    const bias = kind.endsWith("_bias") ? [g.input("Bias", DT.FLOAT, ["N"])] : [];
    g.output(g.op("Gemm", [x, w, ...bias], { transB: 1 }), "Y", ["M", "N"]);
  }
  return g.build();
}

export interface OrtKernelsOptions {
  /** Intra-op threads; default: os.availableParallelism(). */
  threads?: number;
  /**
   * Let ORT's worker threads spin after a call. Default false: each session owns its own intra-op pool, so
   * with several graph kinds in use the spinning pools fight each other and the JS thread for the cores;
   * measured on a 2-core VM, a decode-layer-like mix of linear/bmm calls ran 4× slower with spinning
   * (h=2048: 4.5 ms vs 18–20 ms per layer), though a single session called back-to-back gains ~10–40 µs.
   */
  spin?: boolean;
  /**
   * How BF16 weights reach ORT: "bitcast" (raw bits into the opset-26 BitCast graph), "widen" (widened to
   * f32 in TS, F32 graph). Default "auto": bitcast when this onnxruntime can load that graph, else widen.
   */
  bf16?: "auto" | "bitcast" | "widen";
  /** Where the sessions run; default: `LVLM_INTERPRET_EP`, else "cpu" (see `executionProviderFromEnv`). */
  executionProvider?: ExecutionProvider;
}

/** Fails in one line when `LVLM_INTERPRET_EP` is not a provider, or names one that cannot start here. */
export async function checkExecutionProvider(): Promise<void> {
  if (executionProviderFromEnv() === "cpu") return;
  await (await OrtKernels.create()).dispose();
}

/** The execution provider `LVLM_INTERPRET_EP` names ("cpu" when unset or empty). */
export function executionProviderFromEnv(env: NodeJS.ProcessEnv = process.env): ExecutionProvider {
  const raw = env.LVLM_INTERPRET_EP ?? "";
  const v = raw.trim().toLowerCase() || "cpu";
  if ((EXECUTION_PROVIDERS as readonly string[]).includes(v)) return v as ExecutionProvider;
  throw new Error(
    `LVLM_INTERPRET_EP="${raw}" is not an execution provider (expected one of: ${EXECUTION_PROVIDERS.join(", ")})`,
  );
}

/** One int8 weight matrix as a graph of its own (see the module comment): Y = X·dequant(W)ᵀ. */
export function buildInt8LinearModel(w: WeightMatrix): Uint8Array {
  const g = new GraphBuilder("linear_q8");
  const x = g.input("X", DT.FLOAT, ["M", w.cols]);
  g.output(int8Linear(g, x, w, "W"), "Y", ["M", w.rows]);
  return g.build();
}

/** Largest 16-bit weight (elements) widened in one ORT call; bigger ones run in row blocks (4 Mi = 16 MiB f32). */
const MAX_WIDENED_ELEMENTS = 1 << 22;

/**
 * With a few input rows (decoding) the product only streams the weight, and widening it is most of the time:
 * blocks of 1 Mi elements (4 MiB f32, inside the last-level cache) are read back from cache by the Gemm
 * instead of memory. Measured on a 45M-element bf16 matrix, one row: 28–30 ms in 4 Mi blocks, 17–20 ms in
 * 1 Mi blocks four to a run (smaller blocks or one block per run lose it again to per-call overhead).
 */
const FEW_ROWS = 8;
const FEW_ROWS_BLOCK_ELEMENTS = 1 << 20;
/** Row blocks per run of the "_x4" graphs. */
const LINEAR_BLOCKS_PER_RUN = 4;

/**
 * Most float32 elements one call may produce: the longest typed array this Node can hold. A bigger product
 * could not be returned to JS anyway, so it is refused before onnxruntime tries to allocate (and fill) it.
 */
export const MAX_ORT_OUTPUT_ELEMENTS = bufferConstants.MAX_LENGTH;

/** Throws (instead of handing onnxruntime a product it cannot return) when the output is too large. */
function checkOutputSize(op: string, dims: number[]): void {
  const elements = dims.reduce((a, b) => a * b, 1);
  if (elements > MAX_ORT_OUTPUT_ELEMENTS) {
    throw new RangeError(
      `${op}: output ${dims.join("×")} = ${elements} floats exceeds the largest array (${MAX_ORT_OUTPUT_ELEMENTS})`,
    );
  }
}

/** y[i, :] += bias for each of m rows: a bias added after the product, as Gemm adds it (one f32 addition each). */
function addBiasRows(y: Float32Array, m: number, n: number, bias: Float32Array): void {
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) y[i * n + j] += bias[j];
}

export class OrtKernels implements Kernels {
  readonly name = "ort" as const;
  readonly threads: number;
  readonly executionProvider: ExecutionProvider;
  private readonly sessionOptions: ort.InferenceSession.SessionOptions;
  /** Whole transformer layers as one graph each (see ort-blocks.ts). */
  readonly blocks: OrtBlocks;
  private readonly sessions = new Map<GraphKind, Promise<ort.InferenceSession>>();
  /** int8 weights' sessions by the weight's codes. */
  private readonly int8Sessions = new WeakMap<object, Promise<ort.InferenceSession>>();
  private int8Created: Promise<ort.InferenceSession>[] = [];
  /** Free BF16 widening buffers; one is taken per in-flight call so concurrent calls never share one. */
  private scratchPool: Float32Array[] = [];
  private disposed = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  /** null until the first BF16 call has settled how BF16 weights are fed (see OrtKernelsOptions.bf16). */
  private bf16Mode: "bitcast" | "widen" | null;

  constructor(opts: OrtKernelsOptions = {}) {
    this.threads = Math.max(1, opts.threads ?? availableParallelism());
    this.bf16Mode = opts.bf16 === "bitcast" || opts.bf16 === "widen" ? opts.bf16 : null;
    const spin = opts.spin ? "1" : "0";
    this.executionProvider = opts.executionProvider ?? executionProviderFromEnv();
    this.sessionOptions = {
      // A GPU provider takes the nodes it implements; the CPU keeps the rest (the same graphs either way).
      executionProviders: this.executionProvider === "cpu" ? ["cpu"] : [this.executionProvider, "cpu"],
      graphOptimizationLevel: "all",
      executionMode: "sequential",
      intraOpNumThreads: this.threads,
      interOpNumThreads: 1,
      logSeverityLevel: 3,
      extra: { session: { intra_op: { allow_spinning: spin }, inter_op: { allow_spinning: spin } } },
    };
    this.blocks = new OrtBlocks(this.sessionOptions);
  }

  /** Creates the kernels and the F32 linear session, so a broken onnxruntime install fails here. */
  static async create(opts: OrtKernelsOptions = {}): Promise<OrtKernels> {
    const k = new OrtKernels(opts);
    try {
      await k.session("linear");
    } catch (e) {
      const ep = k.executionProvider;
      if (ep === "cpu") throw e;
      let why = String((e as Error).message ?? e)
        .replace(/\s+/g, " ")
        .trim();
      // onnxruntime's failed checks read "<source location> <condition> was false. <what failed>".
      const check = why.lastIndexOf(" was false. ");
      if (check >= 0) why = why.slice(check + " was false. ".length);
      why = why.slice(0, 300);
      throw new Error(
        `onnxruntime's ${ep} execution provider did not start (${why}); LVLM_INTERPRET_EP=cpu runs on the CPU, and docs/performance.md ("On a GPU") says what ${ep} needs`,
      );
    }
    return k;
  }

  private session(kind: GraphKind): Promise<ort.InferenceSession> {
    if (this.disposed) throw new Error("OrtKernels used after dispose()");
    let s = this.sessions.get(kind);
    if (!s) {
      s = ort.InferenceSession.create(buildModel(kind), this.sessionOptions);
      this.sessions.set(kind, s);
      s.catch(() => this.sessions.delete(kind));
    }
    return s;
  }

  async linear(
    x: Float32Array,
    m: number,
    w: WeightMatrix,
    bias?: Float32Array | null,
  ): Promise<Float32Array> {
    checkLinear(x, m, w, bias);
    const n = w.rows;
    const k = w.cols;
    checkOutputSize("linear", [m, n]);
    // ORT rejects zero-sized symbolic dims in some kernels; an empty product is trivially handled here.
    if (m === 0 || n === 0 || k === 0) {
      const y = new Float32Array(m * n);
      if (bias && k === 0) for (let i = 0; i < m; i++) y.set(bias, i * n);
      return y;
    }
    if (w.dtype === "Q8") return this.linearInt8(x, m, w, bias);
    if (w.dtype !== "F32" && m <= FEW_ROWS && n * k > FEW_ROWS_BLOCK_ELEMENTS) {
      const y = await this.linearFewRows(x, m, w, bias);
      if (y) return y;
    }
    if (w.dtype !== "F32" && n * k > MAX_WIDENED_ELEMENTS) return this.linearInRowBlocks(x, m, w, bias);
    const hasBias = bias != null;
    let scratch: Float32Array | null = null;
    let wTensor: ort.Tensor;
    let kind: GraphKind;
    if (w.dtype === "F32") {
      wTensor = new ort.Tensor("float32", w.data as Float32Array, [n, k]);
      kind = hasBias ? "linear_bias" : "linear";
    } else if (w.dtype === "F16") {
      wTensor = new ort.Tensor("float16", w.data as Uint16Array, [n, k]);
      kind = hasBias ? "linear_f16_bias" : "linear_f16";
    } else if ((this.bf16Mode ?? (await this.probeBitcast())) === "bitcast") {
      wTensor = new ort.Tensor("uint16", w.data as Uint16Array, [n, k]);
      kind = hasBias ? "linear_bf16_bias" : "linear_bf16";
    } else {
      scratch = this.takeScratch(n * k);
      const wf = scratch.subarray(0, n * k);
      bf16ToF32Into(w.data as Uint16Array, wf, 0, n * k);
      wTensor = new ort.Tensor("float32", wf, [n, k]);
      kind = hasBias ? "linear_bias" : "linear";
    }
    try {
      const feeds: Record<string, ort.Tensor> = { X: new ort.Tensor("float32", x, [m, k]), W: wTensor };
      if (hasBias) feeds.Bias = new ort.Tensor("float32", bias, [n]);
      return await this.run(kind, feeds);
    } finally {
      if (scratch && !this.disposed) this.scratchPool.push(scratch);
    }
  }

  /** An int8 weight through its own MatMulNBits session; a bias is added after the product, as Gemm adds it. */
  private async linearInt8(
    x: Float32Array,
    m: number,
    w: WeightMatrix,
    bias?: Float32Array | null,
  ): Promise<Float32Array> {
    const sess = await this.int8Session(w);
    const y = await this.runSession(sess, { X: new ort.Tensor("float32", x, [m, w.cols]) });
    const n = w.rows;
    if (bias) addBiasRows(y, m, n, bias);
    return y;
  }

  /**
   * Builds an int8 weight's session now rather than at its first product (onnxruntime pre-packs the codes:
   * ~5 ns per parameter, half a minute for a 7B), so that a model's load, not its first prefill, pays it.
   */
  async prepare(w: WeightMatrix): Promise<void> {
    if (w.dtype === "Q8") await this.int8Session(w);
  }

  /** The session of an int8 weight (created on first use or by `prepare`, kept for the process's life). */
  private int8Session(w: WeightMatrix): Promise<ort.InferenceSession> {
    // Keyed by the scales, which stay when the codes' TypeScript copy is released after the session is built.
    const key = w.scales as Float32Array;
    let sess = this.int8Sessions.get(key);
    if (!sess) {
      if (this.disposed) throw new Error("OrtKernels used after dispose()");
      // No arena: a 7B has ~220 of these sessions, and each arena would keep its largest call's workspace
      // (~37 MB for a 594-row prefill through an MLP matrix) for the life of the process: ~8 GB in all.
      const created = ort.InferenceSession.create(buildInt8LinearModel(w), {
        ...this.sessionOptions,
        enableCpuMemArena: false,
      });
      sess = created;
      this.int8Sessions.set(key, created);
      this.int8Created.push(created);
      created.catch(() => this.int8Sessions.delete(key));
    }
    return sess;
  }

  /**
   * A 16-bit weight times a few rows, in cache-sized row blocks four to a run (see FEW_ROWS_BLOCK_ELEMENTS);
   * the rows a run of four cannot take go through `linear` one block each. null when BF16 weights are widened
   * in TS (no BitCast in this onnxruntime), which this does not cover.
   */
  private async linearFewRows(
    x: Float32Array,
    m: number,
    w: WeightMatrix,
    bias?: Float32Array | null,
  ): Promise<Float32Array | null> {
    const bf16 = w.dtype === "BF16";
    if (bf16 && (this.bf16Mode ?? (await this.probeBitcast())) !== "bitcast") return null;
    const n = w.rows;
    const k = w.cols;
    const data = w.data as Uint16Array;
    const rowsPerBlock = Math.max(1, Math.floor(FEW_ROWS_BLOCK_ELEMENTS / k));
    const rowsPerRun = rowsPerBlock * LINEAR_BLOCKS_PER_RUN;
    const y = new Float32Array(m * n);
    const place = (part: Float32Array, r0: number, rows: number) => {
      for (let i = 0; i < m; i++) y.set(part.subarray(i * rows, (i + 1) * rows), i * n + r0);
    };
    const X = new ort.Tensor("float32", x, [m, k]);
    let r0 = 0;
    for (; r0 + rowsPerRun <= n; r0 += rowsPerRun) {
      const feeds: Record<string, ort.Tensor> = { X };
      for (let b = 0; b < LINEAR_BLOCKS_PER_RUN; b++) {
        const from = r0 + b * rowsPerBlock;
        const block = data.subarray(from * k, (from + rowsPerBlock) * k);
        feeds[`W${b}`] = new ort.Tensor(bf16 ? "uint16" : "float16", block, [rowsPerBlock, k]);
      }
      place(await this.run(bf16 ? "linear_bf16_x4" : "linear_f16_x4", feeds), r0, rowsPerRun);
    }
    for (; r0 < n; r0 += rowsPerBlock) {
      const r1 = Math.min(n, r0 + rowsPerBlock);
      const block: WeightMatrix = {
        rows: r1 - r0,
        cols: k,
        dtype: w.dtype,
        data: data.subarray(r0 * k, r1 * k),
      };
      place(await this.linear(x, m, block, null), r0, r1 - r0);
    }
    // The bias after the product, as Gemm adds it (one f32 addition per element).
    if (bias) addBiasRows(y, m, n, bias);
    return y;
  }

  /**
   * A 16-bit weight is widened to f32 inside ORT on every call; for a big matrix (an LM head) that temporary
   * costs more in allocation and page faults than the product itself. Blocks of rows keep it small and
   * reused.
   */
  private async linearInRowBlocks(
    x: Float32Array,
    m: number,
    w: WeightMatrix,
    bias?: Float32Array | null,
  ): Promise<Float32Array> {
    const n = w.rows;
    const k = w.cols;
    const rowsPerBlock = Math.max(1, Math.floor(MAX_WIDENED_ELEMENTS / k));
    const y = new Float32Array(m * n);
    for (let r0 = 0; r0 < n; r0 += rowsPerBlock) {
      const r1 = Math.min(n, r0 + rowsPerBlock);
      const block: WeightMatrix = {
        rows: r1 - r0,
        cols: k,
        dtype: w.dtype,
        data: (w.data as Uint16Array).subarray(r0 * k, r1 * k),
      };
      const part = await this.linear(x, m, block, bias ? bias.subarray(r0, r1) : null);
      for (let i = 0; i < m; i++) y.set(part.subarray(i * (r1 - r0), (i + 1) * (r1 - r0)), i * n + r0);
    }
    return y;
  }

  async bmm(
    a: Float32Array,
    b: Float32Array,
    batch: number,
    m: number,
    k: number,
    n: number,
    transB: boolean,
  ): Promise<Float32Array> {
    checkBmm(a, b, batch, m, k, n);
    checkOutputSize("bmm", [batch, m, n]);
    if (batch === 0 || m === 0 || n === 0 || k === 0) return new Float32Array(batch * m * n);
    return this.run(transB ? "bmm_t" : "bmm", {
      A: new ort.Tensor("float32", a, [batch, m, k]),
      B: new ort.Tensor("float32", b, transB ? [batch, n, k] : [batch, k, n]),
    });
  }

  async matmulTransA(
    a: Float32Array,
    b: Float32Array,
    k: number,
    m: number,
    n: number,
  ): Promise<Float32Array> {
    checkMatmulTransA(a, b, k, m, n);
    checkOutputSize("matmulTransA", [m, n]);
    if (m === 0 || n === 0 || k === 0) return new Float32Array(m * n);
    return this.run("mm_ta", {
      A: new ort.Tensor("float32", a, [k, m]),
      B: new ort.Tensor("float32", b, [k, n]),
    });
  }

  /** Runs one graph; in-flight runs are tracked so dispose() never releases a session under a run. */
  private async run(kind: GraphKind, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
    return this.runSession(await this.session(kind), feeds);
  }

  private async runSession(
    sess: ort.InferenceSession,
    feeds: Record<string, ort.Tensor>,
  ): Promise<Float32Array> {
    if (this.disposed) throw new Error("OrtKernels used after dispose()");
    const p = sess.run(feeds);
    this.inFlight.add(p);
    try {
      return (await p).Y.data as Float32Array;
    } finally {
      this.inFlight.delete(p);
    }
  }

  /** Settles the BF16 mode for "auto": bitcast if the opset-26 graph loads, else widen in TS. */
  private async probeBitcast(): Promise<"bitcast" | "widen"> {
    try {
      await this.session("linear_bf16");
      this.bf16Mode = "bitcast";
    } catch {
      if (this.disposed) throw new Error("OrtKernels used after dispose()");
      this.bf16Mode = "widen";
    }
    return this.bf16Mode;
  }

  /** How BF16 weights are fed to ORT (null until the first BF16 call under the "auto" option). */
  get bf16Path(): "bitcast" | "widen" | null {
    return this.bf16Mode;
  }

  private takeScratch(size: number): Float32Array {
    // Reuse the largest free buffer; grow it when too small (weights of one model come in a few sizes).
    let best = -1;
    for (let i = 0; i < this.scratchPool.length; i++) {
      if (best < 0 || this.scratchPool[i].length > this.scratchPool[best].length) best = i;
    }
    if (best >= 0) {
      const buf = this.scratchPool.splice(best, 1)[0];
      if (buf.length >= size) return buf;
    }
    return new Float32Array(size);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const pending = [...this.sessions.values(), ...this.int8Created];
    this.sessions.clear();
    this.int8Created = [];
    this.scratchPool = [];
    await this.blocks.dispose();
    await Promise.allSettled([...this.inFlight]);
    for (const p of pending) {
      const s = await p.catch(() => null);
      if (s) await s.release();
    }
  }
}
