/**
 * Minimal safetensors writer (https://github.com/huggingface/safetensors, format v0):
 * 8-byte little-endian u64 header length N, N bytes of JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`
 * padded with spaces to a multiple of 8, then the raw little-endian tensor bytes.
 */

import * as fs from 'node:fs';

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

export type SafetensorsEntry = Pick<SafetensorsTensor, 'name' | 'dtype' | 'shape'>;

/** The length prefix and JSON header for tensors stored in the given order, and their data size. */
function header(entries: SafetensorsEntry[], metadata?: Record<string, string>): { bytes: Uint8Array; dataBytes: number } {
  const json: Record<string, unknown> = {};
  if (metadata) json['__metadata__'] = metadata;
  const seen = new Set<string>();
  let offset = 0;
  for (const t of entries) {
    if (seen.has(t.name)) throw new Error(`duplicate tensor name ${t.name}`);
    seen.add(t.name);
    const size = t.shape.reduce((a, b) => a * b, 1) * ITEM_SIZE[t.dtype];
    json[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let text = JSON.stringify(json);
  text += ' '.repeat((8 - (new TextEncoder().encode(text).length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(text);
  const bytes = new Uint8Array(8 + headerBytes.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  bytes.set(headerBytes, 8);
  return { bytes, dataBytes: offset };
}

function checkedBytes(t: SafetensorsTensor): Uint8Array {
  const expected = t.shape.reduce((a, b) => a * b, 1) * ITEM_SIZE[t.dtype];
  if (t.data.byteLength !== expected) {
    throw new Error(`${t.name}: ${t.data.byteLength} bytes for shape [${t.shape.join(',')}] ${t.dtype} (want ${expected})`);
  }
  return toLeBytes(t);
}

/** Serialise tensors (written in the given order) into one safetensors buffer. */
export function encodeSafetensors(tensors: SafetensorsTensor[], metadata?: Record<string, string>): Uint8Array {
  const blobs = tensors.map(checkedBytes);
  const head = header(tensors, metadata);
  const out = new Uint8Array(head.bytes.length + head.dataBytes);
  out.set(head.bytes, 0);
  let pos = head.bytes.length;
  for (const b of blobs) {
    out.set(b, pos);
    pos += b.length;
  }
  return out;
}

/**
 * Writes a safetensors file one tensor at a time: `data` is asked for each entry in order, so
 * a checkpoint of several GB never exists as one buffer.
 */
export function writeSafetensorsFile(
  file: string,
  entries: SafetensorsEntry[],
  data: (entry: SafetensorsEntry) => SafetensorsTensor['data'],
  metadata?: Record<string, string>,
): void {
  const fd = fs.openSync(file, 'w');
  try {
    const write = (b: Uint8Array) => {
      for (let done = 0; done < b.length;) done += fs.writeSync(fd, b, done, b.length - done);
    };
    write(header(entries, metadata).bytes);
    for (const e of entries) write(checkedBytes({ ...e, data: data(e) }));
  } finally {
    fs.closeSync(fd);
  }
}
