// Reading ONNX protobuf values as plain numbers: int64 fields (protobufjs decodes them as
// Long), TensorProto payloads (raw_data, typed fields or external data; float32, float16,
// bfloat16, float64, int32, int64) and Constant nodes. Used by the graph surgery on
// existing exports, whose protobuf is untrusted: sizes are checked against the dims.
import { onnx } from 'onnx-proto';
import { EngineError } from '../errors';

export const DT = onnx.TensorProto.DataType;

type LongLike = { toNumber(): number };

/** An int64 protobuf field (number or Long) as a JS number. */
export function toNum(v: number | LongLike | null | undefined, fallback = 0): number {
  if (v === null || v === undefined) return fallback;
  return typeof v === 'number' ? v : v.toNumber();
}

export function dimsOf(t: onnx.ITensorProto): number[] {
  return (t.dims ?? []).map((d) => toNum(d));
}

/** Reads the bytes of an external-data tensor: location is relative to the model file. */
export type ExternalReader = (location: string, offset: number, length: number) => Uint8Array;

export function externalRef(t: onnx.ITensorProto): { location: string; offset: number; length: number } | null {
  if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return null;
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  if (!location)
    throw new EngineError('BAD_ONNX', `The ONNX model is damaged or unsupported: tensor "${t.name}" has external data without a location`);
  return { location, offset: Number(kv.get('offset') ?? 0), length: kv.has('length') ? Number(kv.get('length')) : -1 };
}

const ELEM_BYTES: Record<number, number> = {
  [DT.FLOAT]: 4,
  [DT.FLOAT16]: 2,
  [DT.BFLOAT16]: 2,
  [DT.DOUBLE]: 8,
  [DT.INT32]: 4,
  [DT.INT64]: 8,
};

function count(t: onnx.ITensorProto): number {
  return dimsOf(t).reduce((a, b) => a * b, 1);
}

function rawBytes(t: onnx.ITensorProto, readExternal: ExternalReader | null): Uint8Array | null {
  const ext = externalRef(t);
  const n = count(t);
  const size = ELEM_BYTES[t.dataType ?? 0];
  if (ext) {
    if (!readExternal)
      throw new EngineError(
        'BAD_ONNX',
        `The ONNX model is damaged or unsupported: tensor "${t.name}" lives in external data "${ext.location}" but no reader was given`,
      );
    if (size === undefined)
      throw new EngineError(
        'BAD_ONNX',
        `The ONNX model is damaged or unsupported: tensor "${t.name}": unsupported data type ${t.dataType}`,
      );
    const length = ext.length >= 0 ? ext.length : n * size;
    if (length !== n * size)
      throw new EngineError(
        'BAD_ONNX',
        `The ONNX model is damaged or unsupported: tensor "${t.name}": external length ${length} ≠ ${n} × ${size} bytes`,
      );
    return readExternal(ext.location, ext.offset, length);
  }
  if (t.rawData && t.rawData.length > 0) {
    if (size !== undefined && t.rawData.length !== n * size)
      throw new EngineError(
        'BAD_ONNX',
        `The ONNX model is damaged or unsupported: tensor "${t.name}": ${t.rawData.length} bytes of raw data for ${n} values`,
      );
    return t.rawData;
  }
  return null;
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** A float tensor (float32/16, bfloat16, float64) widened/narrowed to float32. */
export function readFloats(t: onnx.ITensorProto, readExternal: ExternalReader | null): Float32Array {
  const n = count(t);
  const raw = rawBytes(t, readExternal);
  const type = t.dataType ?? 0;
  if (raw) {
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const out = new Float32Array(n);
    if (type === DT.FLOAT) for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
    else if (type === DT.FLOAT16) for (let i = 0; i < n; i++) out[i] = f16ToF32(dv.getUint16(i * 2, true));
    else if (type === DT.BFLOAT16)
      for (let i = 0; i < n; i++) out[i] = new Float32Array(new Uint32Array([dv.getUint16(i * 2, true) << 16]).buffer)[0]!;
    else if (type === DT.DOUBLE) for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
    else
      throw new EngineError(
        'BAD_ONNX',
        `The ONNX model is damaged or unsupported: tensor "${t.name}" is not a float tensor (data type ${type})`,
      );
    return out;
  }
  let vals: number[];
  if (type === DT.FLOAT) vals = t.floatData ?? [];
  else if (type === DT.DOUBLE) vals = t.doubleData ?? [];
  else if (type === DT.FLOAT16) vals = (t.int32Data ?? []).map(f16ToF32);
  else if (type === DT.BFLOAT16) vals = (t.int32Data ?? []).map((v) => new Float32Array(new Uint32Array([v << 16]).buffer)[0]!);
  else
    throw new EngineError(
      'BAD_ONNX',
      `The ONNX model is damaged or unsupported: tensor "${t.name}" is not a float tensor (data type ${type})`,
    );
  if (vals.length !== n)
    throw new EngineError(
      'BAD_ONNX',
      `The ONNX model is damaged or unsupported: tensor "${t.name}": ${vals.length} values for shape [${dimsOf(t).join(', ')}]`,
    );
  return Float32Array.from(vals);
}

/** An int32/int64 tensor as numbers. */
export function readInts(t: onnx.ITensorProto, readExternal: ExternalReader | null): number[] {
  const n = count(t);
  const raw = rawBytes(t, readExternal);
  const type = t.dataType ?? 0;
  if (raw) {
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    if (type === DT.INT64) return Array.from({ length: n }, (_, i) => Number(dv.getBigInt64(i * 8, true)));
    if (type === DT.INT32) return Array.from({ length: n }, (_, i) => dv.getInt32(i * 4, true));
    throw new EngineError(
      'BAD_ONNX',
      `The ONNX model is damaged or unsupported: tensor "${t.name}" is not an integer tensor (data type ${type})`,
    );
  }
  if (type === DT.INT64) return (t.int64Data ?? []).map((v) => toNum(v));
  if (type === DT.INT32) return [...(t.int32Data ?? [])];
  throw new EngineError(
    'BAD_ONNX',
    `The ONNX model is damaged or unsupported: tensor "${t.name}" is not an integer tensor (data type ${type})`,
  );
}

export function isFloatType(type: number | null | undefined): boolean {
  return type === DT.FLOAT || type === DT.FLOAT16 || type === DT.BFLOAT16 || type === DT.DOUBLE;
}

/** A small inline initializer. */
export function int64Tensor(name: string, values: number[], scalar: boolean): onnx.ITensorProto {
  const data = BigInt64Array.from(values.map((v) => BigInt(v)));
  return { name, dataType: DT.INT64, dims: scalar ? [] : [values.length], rawData: new Uint8Array(data.buffer) };
}

export function attr(node: onnx.INodeProto, name: string): onnx.IAttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

export function attrInt(node: onnx.INodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a ? toNum(a.i, fallback) : fallback;
}

export function attrInts(node: onnx.INodeProto, name: string): number[] | null {
  const a = attr(node, name);
  return a ? (a.ints ?? []).map((v) => toNum(v)) : null;
}

export function attrFloat(node: onnx.INodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a && a.f !== null && a.f !== undefined ? a.f : fallback;
}

/** The tensor a Constant node holds (value / value_float(s) / value_int(s)), or null. */
export function constantNodeTensor(node: onnx.INodeProto): onnx.ITensorProto | null {
  const out = node.output?.[0] ?? '';
  for (const a of node.attribute ?? []) {
    if (a.name === 'value' && a.t) return { ...a.t, name: out };
    if (a.name === 'value_float' && a.f !== null && a.f !== undefined) return { name: out, dataType: DT.FLOAT, dims: [], floatData: [a.f] };
    if (a.name === 'value_floats')
      return { name: out, dataType: DT.FLOAT, dims: [(a.floats ?? []).length], floatData: [...(a.floats ?? [])] };
    if (a.name === 'value_int') return { name: out, dataType: DT.INT64, dims: [], int64Data: [toNum(a.i)] };
    if (a.name === 'value_ints')
      return { name: out, dataType: DT.INT64, dims: [(a.ints ?? []).length], int64Data: (a.ints ?? []).map((v) => toNum(v)) };
  }
  return null;
}
