// Safetensors reader. The file is untrusted input (it may come from the Hub): every
// length, offset, dtype and shape in the header is checked against the file before a
// single tensor byte is read, and tensors may not overlap.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {str: str} },
// then the data buffer; offsets are relative to the start of the data buffer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';

export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  U16: 2,
  U32: 4,
  U64: 8,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
} as const;

export type SafeDType = keyof typeof DTYPE_SIZES;

/** The float dtypes whose weights the engine accepts. */
export const FLOAT_DTYPES: readonly SafeDType[] = ['F32', 'F16', 'BF16'];

export interface TensorEntry {
  name: string;
  dtype: SafeDType;
  shape: number[];
  /** Absolute byte offsets in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  entries: Map<string, TensorEntry>;
  metadata: Record<string, string>;
  dataStart: number;
}

/** Cap on the JSON header: real headers are kilobytes; this stops a 2^60 "length". */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const MAX_RANK = 8;

function bad(file: string, why: string): EngineError {
  return new EngineError('BAD_SAFETENSORS', `${file} is not a valid safetensors file: ${why}.`);
}

function isSafeNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads the header length from the first 8 bytes; checks it against the file size. */
export function parseHeaderLength(first8: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || first8.length < 8) throw bad(file, `the file has ${fileSize} bytes, fewer than the 8-byte header length`);
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n < 2n) throw bad(file, `header length ${n} is too small for a JSON object`);
  if (n > BigInt(MAX_HEADER_BYTES)) throw bad(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const len = Number(n);
  if (8 + len > fileSize) throw bad(file, `header length ${len} points past the end of the file (${fileSize} bytes; truncated download?)`);
  return len;
}

/**
 * Parses and validates a header (pure: no I/O). `fileSize` is the size of the whole file.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw bad(file, 'the header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(file, `the header is not valid JSON (${e instanceof RangeError ? 'nested too deeply' : (e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad(file, 'the header is not a JSON object');
  const dataStart = 8 + headerBytes.length;
  const dataSize = fileSize - dataStart;
  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw, file);
      continue;
    }
    entries.set(name, parseEntry(name, raw, dataStart, dataSize, file));
  }
  checkNoOverlap([...entries.values()], file);
  return { entries, metadata, dataStart };
}

function parseMetadata(raw: unknown, file: string): Record<string, string> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(file, '__metadata__ is not an object');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== 'string') throw bad(file, `__metadata__.${k} is not a string`);
    out[k] = v;
  }
  return out;
}

function parseEntry(name: string, raw: unknown, dataStart: number, dataSize: number, file: string): TensorEntry {
  const where = `tensor "${name.slice(0, 200)}"`;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(file, `${where} is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(DTYPE_SIZES, dtype)) {
    throw bad(file, `${where} has unknown dtype ${JSON.stringify(dtype)?.slice(0, 40)}`);
  }
  if (!Array.isArray(shape) || shape.length > MAX_RANK || !shape.every(isSafeNonNegInt)) {
    throw bad(file, `${where} has an invalid shape (expected up to ${MAX_RANK} non-negative integers)`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSafeNonNegInt)) {
    throw bad(file, `${where} has invalid data_offsets (expected [begin, end])`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) throw bad(file, `${where} has data_offsets [${begin}, ${end}] with begin after end`);
  if (end > dataSize) {
    throw bad(file, `${where} ends at byte ${end} but the data section has only ${dataSize} bytes (truncated file?)`);
  }
  let numel = 1;
  for (const d of shape as number[]) {
    numel *= d;
    if (!Number.isSafeInteger(numel)) throw bad(file, `${where} has a shape too large to address`);
  }
  const bytes = numel * DTYPE_SIZES[dtype as SafeDType];
  if (!Number.isSafeInteger(bytes) || bytes !== end - begin) {
    throw bad(
      file,
      `${where}: shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${bytes} bytes but data_offsets span ${end - begin}`,
    );
  }
  return { name, dtype: dtype as SafeDType, shape: shape as number[], begin: dataStart + begin, end: dataStart + end };
}

function checkNoOverlap(entries: TensorEntry[], file: string): void {
  const sorted = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.begin < prev.end) throw bad(file, `tensors "${prev.name.slice(0, 100)}" and "${cur.name.slice(0, 100)}" overlap`);
  }
}

// --- dtype conversion -------------------------------------------------------------

let f16Table: Float32Array | null = null;

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Every IEEE half bit pattern's float32 value (built once). */
function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = halfToFloat(i);
  }
  return f16Table;
}

/** IEEE half → float32, exactly, through a 65536-entry table. */
export function f16ToF32(src: Uint16Array): Float32Array {
  const t = halfTable();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
  return out;
}

/** bfloat16 → float32: the bf16 bits are the high half of the float32 bits. */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}

/**
 * Row-major [rows, cols] → [cols, rows] as float32, converting F16/BF16 in the same pass (one
 * read of the stored values, one fresh array). Cache-blocked: within a 64×64 tile the writes
 * run along output rows.
 */
export function transposeToF32(src: Float32Array | Uint16Array, dtype: 'F32' | 'F16' | 'BF16', rows: number, cols: number): Float32Array {
  if (src.length !== rows * cols) throw new Error(`transpose: ${src.length} values for [${rows}, ${cols}]`);
  const out = new Float32Array(rows * cols);
  const bits = new Uint32Array(out.buffer);
  const h = dtype === 'F32' ? null : (src as Uint16Array);
  const f = dtype === 'F32' ? (src as Float32Array) : null;
  const table = dtype === 'F16' ? halfTable() : null;
  // one output column segment [r0, r1) of column c per call: a specialised loop per dtype
  const copy =
    f !== null
      ? (c: number, r0: number, r1: number) => {
          for (let r = r0, o = c * rows; r < r1; r++) out[o + r] = f[r * cols + c]!;
        }
      : table !== null
        ? (c: number, r0: number, r1: number) => {
            for (let r = r0, o = c * rows; r < r1; r++) out[o + r] = table[h![r * cols + c]!]!;
          }
        : (c: number, r0: number, r1: number) => {
            for (let r = r0, o = c * rows; r < r1; r++) bits[o + r] = h![r * cols + c]! << 16; // bfloat16: the high half
          };
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let c = c0; c < c1; c++) copy(c, r0, r1);
    }
  }
  return out;
}

/** float32 → IEEE half bits (round to nearest even); used by writers and tests. */
export function f32ToF16(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i]!;
    const x = u[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && h & 1)) h++;
      out[i] = sign | h;
      continue;
    }
    // A carry out of the mantissa correctly rounds up into the exponent (or to inf).
    let h = (e << 10) | (mant >> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    out[i] = sign | h;
  }
  return out;
}

// --- file access -----------------------------------------------------------------

/** One opened safetensors file: validated header, tensors read on demand. */
export class SafetensorsFile {
  private constructor(
    readonly filePath: string,
    readonly header: SafetensorsHeader,
    readonly fileSize: number,
    readonly mtimeMs: number,
  ) {}

  static open(filePath: string): SafetensorsFile {
    const name = path.basename(filePath);
    let fd: number;
    try {
      fd = fs.openSync(filePath, 'r');
    } catch (e) {
      throw new EngineError('NOT_FOUND', `Cannot open ${filePath}: ${(e as Error).message}`);
    }
    try {
      const st = fs.fstatSync(fd);
      const first8 = Buffer.alloc(8);
      const got = st.size >= 8 ? fs.readSync(fd, first8, 0, 8, 0) : 0;
      const len = parseHeaderLength(first8.subarray(0, got), st.size, name);
      const headerBytes = Buffer.alloc(len);
      readFully(fd, headerBytes, 8, name);
      return new SafetensorsFile(filePath, parseSafetensorsHeader(headerBytes, st.size, name), st.size, st.mtimeMs);
    } finally {
      fs.closeSync(fd);
    }
  }

  get entries(): Map<string, TensorEntry> {
    return this.header.entries;
  }

  /** Raw bytes of one tensor, as stored (into `scratch` when it is given and large enough). */
  readBytes(entry: TensorEntry, scratch?: Uint8Array): Uint8Array {
    const size = entry.end - entry.begin;
    const bytes = scratch && scratch.byteLength >= size ? scratch.subarray(0, size) : new Uint8Array(size);
    const fd = fs.openSync(this.filePath, 'r');
    try {
      const st = fs.fstatSync(fd);
      if (st.size !== this.fileSize || st.mtimeMs !== this.mtimeMs) {
        throw new EngineError(
          'BAD_SAFETENSORS',
          `${path.basename(this.filePath)} changed on disk while the model was loaded; reload the model.`,
        );
      }
      readFully(fd, bytes, entry.begin, path.basename(this.filePath));
    } finally {
      fs.closeSync(fd);
    }
    return bytes;
  }

  /** One tensor as float32 (F32/F16/BF16 accepted). */
  readFloat32(entry: TensorEntry): Float32Array {
    this.checkFloat(entry);
    const bytes = this.readBytes(entry);
    if (entry.dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    return entry.dtype === 'F16' ? f16ToF32(halves) : bf16ToF32(halves);
  }

  /**
   * A 2-D tensor [rows, cols] as its float32 transpose [cols, rows], converted in the same
   * pass; the stored bytes are read into `scratch` when it is large enough (reused by the caller).
   */
  readFloat32Transposed(entry: TensorEntry, scratch?: Uint8Array): Float32Array {
    this.checkFloat(entry);
    if (entry.shape.length !== 2) throw new Error(`${entry.name}: transposed read of a ${entry.shape.length}-D tensor`);
    const [rows, cols] = entry.shape as [number, number];
    const bytes = this.readBytes(entry, scratch); // at offset 0 of its buffer: aligned for any view
    const src =
      entry.dtype === 'F32'
        ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
        : new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    return transposeToF32(src, entry.dtype as 'F32' | 'F16' | 'BF16', rows, cols);
  }

  private checkFloat(entry: TensorEntry): void {
    if (!FLOAT_DTYPES.includes(entry.dtype)) {
      throw new EngineError(
        'BAD_WEIGHTS',
        `Tensor "${entry.name}" in ${path.basename(this.filePath)} has dtype ${entry.dtype}; only F32, F16 and BF16 weights are supported (quantized checkpoints are not).`,
      );
    }
  }
}

function readFully(fd: number, into: Uint8Array, position: number, name: string): void {
  let done = 0;
  while (done < into.length) {
    const n = fs.readSync(fd, into, done, Math.min(into.length - done, 1 << 30), position + done);
    if (n === 0) throw bad(name, 'unexpected end of file');
    done += n;
  }
}
