/**
 * A small builder for ONNX graphs written in code: named values, nodes, scalar/shape constants, and 16-bit
 * weights widened in-graph. The block graphs (kernels/ort-blocks.ts) are written with it.
 */
import onnxProto from "onnx-proto";
import type { WeightMatrix } from "./types.js";

const { onnx } = onnxProto;
type IValueInfo = onnxProto.onnx.IValueInfoProto;
type INode = onnxProto.onnx.INodeProto;
type ITensor = onnxProto.onnx.ITensorProto;
type IAttribute = onnxProto.onnx.IAttributeProto;

export const DT = onnx.TensorProto.DataType;
const ATTR = onnx.AttributeProto.AttributeType;

/** Opset 17 (ONNX 1.12: LayerNormalization) with IR 8; graphs that BitCast bf16 need opset 26 / IR 13. */
const OPSET = 17;
const IR_VERSION = 8;
const OPSET_BITCAST = 26;
const IR_VERSION_BITCAST = 13;

/** onnxruntime's own operators (MatMulNBits). */
const CONTRIB_DOMAIN = "com.microsoft";

export type AttrValue = number | number[] | { f: number };

function attribute(name: string, v: AttrValue): IAttribute {
  if (Array.isArray(v)) return { name, type: ATTR.INTS, ints: v };
  if (typeof v === "number") return { name, type: ATTR.INT, i: v };
  return { name, type: ATTR.FLOAT, f: v.f };
}

export class GraphBuilder {
  private readonly nodes: INode[] = [];
  private readonly inputs: IValueInfo[] = [];
  private readonly outputs: IValueInfo[] = [];
  private readonly initializers: ITensor[] = [];
  private counter = 0;
  private usesContrib = false;
  /** Values renamed into graph outputs: later nodes that read the old name read the output. */
  private readonly renamed = new Map<string, string>();
  /** Opset 26 when the graph has bf16 weights (BitCast), else 17. */
  readonly opset: number;

  constructor(
    readonly name: string,
    /** The graph reads bf16 weights, and so needs BitCast's opset. */
    private readonly bitcast = false,
  ) {
    this.opset = bitcast ? OPSET_BITCAST : OPSET;
  }

  /** Mean over the last axis, kept as a dim of 1 (axes moved from attribute to input in opset 18). */
  meanLastAxis(x: string): string {
    if (this.opset >= 18) return this.op("ReduceMean", [x, this.ints([-1])], { keepdims: 1 });
    return this.op("ReduceMean", [x], { axes: [-1], keepdims: 1 });
  }

  /** Declares a graph input with symbolic (string) or fixed (number) dims. */
  input(name: string, elemType: number, dims: (string | number)[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /**
   * Marks `value` as a float32 graph output named `name`. A node's result is renamed in place (an Identity
   * would copy it); graph inputs and values that already are outputs get the Identity.
   */
  output(value: string, name: string, dims: (string | number)[]): void {
    const producer = this.nodes.find((n) => n.output?.[0] === value);
    const taken = this.outputs.some((o) => o.name === value);
    if (value !== name && producer && !taken) {
      producer.output = [name];
      for (const n of this.nodes) n.input = (n.input ?? []).map((i) => (i === value ? name : i));
      this.renamed.set(value, name);
    } else if (value !== name) this.op("Identity", [value], {}, name);
    this.outputs.push(valueInfo(name, DT.FLOAT, dims));
  }

  /** Appends one node; returns its (single) output name. */
  op(opType: string, input: string[], attrs: Record<string, AttrValue> = {}, out?: string): string {
    const output = out ?? `${opType.toLowerCase()}_${this.counter++}`;
    this.nodes.push({
      opType,
      input: input.map((i) => this.renamed.get(i) ?? i),
      output: [output],
      name: output,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return output;
  }

  /** Appends one node of onnxruntime's contrib domain (com.microsoft); returns its output name. */
  contribOp(opType: string, input: string[], attrs: Record<string, AttrValue> = {}): string {
    const out = this.op(opType, input, attrs);
    this.nodes[this.nodes.length - 1].domain = CONTRIB_DOMAIN;
    this.usesContrib = true;
    return out;
  }

  /** A constant tensor from raw little-endian bytes (weights baked into the model, e.g. for pre-packing). */
  constant(name: string, dataType: number, dims: number[], raw: Uint8Array): string {
    this.initializers.push({ name, dataType, dims, rawData: raw });
    return name;
  }

  /** A float32 scalar constant. */
  scalar(v: number): string {
    const name = `c_${this.counter++}`;
    this.initializers.push({ name, dataType: DT.FLOAT, dims: [], floatData: [v] });
    return name;
  }

  /** An int64 vector constant (shapes, axes). */
  ints(v: number[]): string {
    const name = `i_${this.counter++}`;
    this.initializers.push({ name, dataType: DT.INT64, dims: [v.length], int64Data: v });
    return name;
  }

  /**
   * A weight matrix input [rows, cols] of the given storage dtype, as float32 inside the graph: f16 is Cast,
   * bf16 arrives as raw uint16 bits (onnxruntime-node has no bfloat16 tensors) and is BitCast first.
   */
  weight(name: string, dtype: WeightMatrix["dtype"], dims: (string | number)[]): string {
    if (dtype === "F32") return this.input(name, DT.FLOAT, dims);
    if (dtype === "F16") return this.op("Cast", [this.input(name, DT.FLOAT16, dims)], { to: DT.FLOAT });
    if (!this.bitcast)
      throw new Error(`graph ${this.name}: bf16 weight "${name}" in a graph built without BitCast`);
    const bits = this.input(name, DT.UINT16, dims);
    return this.op("Cast", [this.op("BitCast", [bits], { to: DT.BFLOAT16 })], { to: DT.FLOAT });
  }

  /** Serialised model. */
  build(): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: this.bitcast ? IR_VERSION_BITCAST : IR_VERSION,
      producerName: "lvlm-interpret",
      opsetImport: [
        { domain: "", version: this.opset },
        ...(this.usesContrib ? [{ domain: CONTRIB_DOMAIN, version: 1 }] : []),
      ],
      graph: {
        name: this.name,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, elemType: number, dims: (string | number)[]): IValueInfo {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}
