/**
 * Minimal safetensors writer (https://github.com/huggingface/safetensors, format v0):
 * 8-byte little-endian u64 header length N, N bytes of JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`
 * padded with spaces to a multiple of 8, then the raw little-endian tensor bytes.
 */

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8';

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Element data in host order (Float32Array for F32, Uint16Array bit patterns for F16/BF16, ...). */
  data: Float64Array | Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;
}

const ITEM_SIZE: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 };

function hostIsLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

function toLeBytes(t: SafetensorsTensor): Uint8Array {
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const size = ITEM_SIZE[t.dtype];
  if (hostIsLittleEndian() || size === 1) return bytes;
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) {
    for (let j = 0; j < size; j++) out[i + j] = bytes[i + size - 1 - j] ?? 0;
  }
  return out;
}

/** Serialise tensors (written in the given order) into one safetensors buffer. */
export function encodeSafetensors(tensors: SafetensorsTensor[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header['__metadata__'] = metadata;
  const blobs: Uint8Array[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (seen.has(t.name)) throw new Error(`duplicate tensor name ${t.name}`);
    seen.add(t.name);
    const n = t.shape.reduce((a, b) => a * b, 1);
    const expected = n * ITEM_SIZE[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new Error(`${t.name}: ${t.data.byteLength} bytes for shape [${t.shape.join(',')}] ${t.dtype} (want ${expected})`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    blobs.push(toLeBytes(t));
    offset += expected;
  }
  let json = JSON.stringify(header);
  const jsonBytesLen = new TextEncoder().encode(json).length;
  json += ' '.repeat((8 - (jsonBytesLen % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const b of blobs) {
    out.set(b, pos);
    pos += b.length;
  }
  return out;
}
