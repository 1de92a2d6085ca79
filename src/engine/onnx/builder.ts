// A small typed builder for ONNX graphs, on top of the generated protobuf code in
// `onnx-proto`. Architecture files (gpt2.ts, llama.ts, neox.ts) read like the forward
// pass they implement: `const h = g.op('MatMul', [x, w])`.
import { onnx } from 'onnx-proto';

export const OPSET = 17;
const IR_VERSION = 8;

export type ElemType = 'float32' | 'int64' | 'int32' | 'bool' | 'float16' | 'uint8';

const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  bool: onnx.TensorProto.DataType.BOOL,
  float16: onnx.TensorProto.DataType.FLOAT16,
  uint8: onnx.TensorProto.DataType.UINT8,
};

export type Dim = number | string;
export type AttrValue = number | number[] | string | { float: number } | { floats: number[] } | { graph: onnx.IGraphProto };

/** Where an initializer's bytes live: inline in the proto or in an external file. */
export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

interface Initializer {
  name: string;
  type: ElemType;
  dims: number[];
  data: Uint8Array | null;
  external: ExternalRef | null;
}

export function valueInfo(name: string, type: ElemType, dims: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[type],
        shape: {
          dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
        },
      },
    },
  };
}

function attribute(name: string, value: AttrValue): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: use {float} for non-integers`);
    return { name, type: T.INT, i: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  if ('graph' in value) return { name, type: T.GRAPH, g: value.graph };
  return { name, type: T.FLOATS, floats: value.floats };
}

function bytesOf(data: Float32Array | BigInt64Array | Int32Array | Uint8Array | Uint16Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Receives large initializers and stores them outside the graph proto (external data). */
export interface WeightSink {
  place(name: string, bytes: Uint8Array, owner: object): ExternalRef;
}

/** Initializers at least this large go to the sink when there is one. */
export const EXTERNAL_MIN_BYTES = 1024;

export class GraphBuilder {
  protected readonly nodes: onnx.INodeProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private readonly initializers: Initializer[] = [];
  private readonly constCache = new Map<string, string>();
  /**
   * Array → the initializer names made from it (one graph may ask for the same weight twice).
   * Weak: an array written to the sink must be free to go, or the builder would hold every
   * weight of a multi-GB model until the graph is encoded. (Not WeakRefs: their targets stay
   * alive until the synchronous build ends.)
   */
  private readonly initOwners = new WeakMap<object, Set<string>>();
  private readonly initNames = new Set<string>();
  /** Values renamed to output names: later references to the old name follow the rename. */
  private readonly aliases = new Map<string, string>();
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(
    readonly graphName: string,
    private readonly sink: WeightSink | null = null,
    /** Weight matrices are stored as float16 (activations stay float32); see graph/forward.ts. */
    readonly halfWeights = false,
  ) {}

  /** The graph that holds inputs and initializers (a branch's outer graph; see branch.ts). */
  get root(): GraphBuilder {
    return this;
  }

  /** A fresh tensor name with a readable prefix. */
  fresh(prefix: string): string {
    let name: string;
    do name = `${prefix}_${this.counter++}`;
    while (this.names.has(name));
    this.names.add(name);
    return name;
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.names.add(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Declares `value` as a graph output called `name` (Identity when names differ). */
  output(name: string, value: string, type: ElemType, dims: Dim[]): void {
    value = this.aliases.get(value) ?? value;
    if (name !== value && !this.renameValue(value, name)) this.op('Identity', [value], {}, name);
    this.outputs.push(valueInfo(name, type, dims));
  }

  /**
   * Renames a node's output everywhere (instead of an Identity copy, which onnxruntime would
   * execute on every run even when the output is not fetched). False when `value` is not a
   * node output, is already a graph output, or `name` is taken.
   */
  private renameValue(value: string, name: string): boolean {
    if (this.names.has(name) || this.outputs.some((o) => o.name === value)) return false;
    const producer = this.nodes.find((n) => n.output?.includes(value));
    if (!producer) return false;
    for (const n of this.nodes) {
      if (n.output) n.output = n.output.map((o) => (o === value ? name : o));
      if (n.input) n.input = n.input.map((i) => (i === value ? name : i));
    }
    this.names.add(name);
    this.aliases.set(value, name);
    return true;
  }

  /** An initializer holding `data` inline (small tensors, constants). */
  initializer(name: string, data: Float32Array | BigInt64Array | Int32Array | Uint16Array | Uint8Array, dims: number[]): string {
    const type: ElemType =
      data instanceof Float32Array
        ? 'float32'
        : data instanceof BigInt64Array
          ? 'int64'
          : data instanceof Int32Array
            ? 'int32'
            : data instanceof Uint8Array
              ? 'uint8'
              : 'float16';
    const owned = this.initOwners.get(data);
    if (owned?.has(name)) return name; // the same weight shared by two parts of the graph
    if (this.initNames.has(name)) throw new Error(`initializer ${name} defined twice with different data`);
    this.initNames.add(name);
    if (owned) owned.add(name);
    else this.initOwners.set(data, new Set([name]));
    const expected = dims.reduce((a, b) => a * b, 1);
    if (expected !== data.length) throw new Error(`initializer ${name}: ${data.length} values for shape [${dims.join(', ')}]`);
    this.names.add(name);
    const bytes = bytesOf(data);
    if (this.sink && bytes.byteLength >= EXTERNAL_MIN_BYTES) {
      this.initializers.push({ name, type, dims, data: null, external: this.sink.place(name, bytes, data) });
    } else this.initializers.push({ name, type, dims, data: bytes, external: null });
    return name;
  }

  /** An initializer whose bytes live in an external file next to the model. */
  externalInitializer(name: string, type: ElemType, dims: number[], ref: ExternalRef): string {
    this.names.add(name);
    this.initializers.push({ name, type, dims, data: null, external: ref });
    return name;
  }

  /** Scalar or 1-D int64 constant, deduplicated. */
  ints(values: number[], scalar = false): string {
    const key = `i:${scalar ? 's' : 'v'}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.fresh('const_i64');
    this.names.delete(name);
    this.initializer(name, BigInt64Array.from(values.map((v) => BigInt(v))), scalar ? [] : [values.length]);
    this.constCache.set(key, name);
    return name;
  }

  /** Scalar float32 constant, deduplicated. */
  float(value: number): string {
    const key = `f:${value}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = this.fresh('const_f32');
    this.names.delete(name);
    this.initializer(name, Float32Array.of(value), []);
    this.constCache.set(key, name);
    return name;
  }

  /** `value` converted to another element type. */
  cast(value: string, to: ElemType): string {
    return this.op('Cast', [value], { to: ELEM[to] });
  }

  /** Adds a node with one output; returns the output name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outName?: string): string {
    const out = outName ?? this.fresh(opType.toLowerCase());
    this.names.add(out);
    this.pushNode(opType, inputs, [out], attrs);
    return out;
  }

  /**
   * Adds a node named `name` (its output too): a name a session option can refer to, e.g. to
   * keep the node on the CPU (RuntimeOptions.cpuNodes).
   */
  namedOp(name: string, opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    if (this.names.has(name)) throw new Error(`graph value ${name} exists already`);
    this.names.add(name);
    this.pushNode(opType, inputs, [name], attrs, name);
    return name;
  }

  /** The current name of a value: a value declared as a graph output was renamed to the output's name. */
  resolve(value: string): string {
    return this.aliases.get(value) ?? value;
  }

  /** Adds a node with several outputs. */
  opN(opType: string, inputs: string[], nOutputs: number, attrs: Record<string, AttrValue> = {}): string[] {
    const outs = Array.from({ length: nOutputs }, () => this.fresh(opType.toLowerCase()));
    this.pushNode(opType, inputs, outs, attrs);
    return outs;
  }

  private pushNode(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue>, name?: string): void {
    this.nodes.push({
      opType,
      input: inputs.map((i) => this.resolve(i)),
      output: outputs,
      name: name ?? `${opType}_${this.nodes.length}`,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
  }

  /** Total bytes of inline initializers (what must fit in the 2 GB proto limit). */
  inlineBytes(): number {
    return this.initializers.reduce((s, t) => s + (t.data?.byteLength ?? 0), 0);
  }

  toModelProto(): onnx.IModelProto {
    const initializer: onnx.ITensorProto[] = this.initializers.map((t) => {
      const base: onnx.ITensorProto = { name: t.name, dataType: ELEM[t.type], dims: t.dims };
      if (t.external) {
        return {
          ...base,
          dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [
            { key: 'location', value: t.external.location },
            { key: 'offset', value: String(t.external.offset) },
            { key: 'length', value: String(t.external.length) },
          ],
        };
      }
      return { ...base, rawData: t.data ?? new Uint8Array(0) };
    });
    return {
      irVersion: IR_VERSION,
      producerName: 'transformer-dynamics',
      producerVersion: '0.1',
      opsetImport: [{ domain: '', version: OPSET }],
      graph: { name: this.graphName, node: this.nodes, input: this.inputs, output: this.outputs, initializer },
    };
  }

  encode(): Uint8Array {
    return onnx.ModelProto.encode(onnx.ModelProto.create(this.toModelProto())).finish();
  }
}
