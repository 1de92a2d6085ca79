// Seeded mutators for fuzzing parsers of untrusted files: byte-level (flips, truncation,
// insertion, splicing, invalid UTF-8) and JSON-aware (numbers → huge/negative/fractional,
// wrong types, deleted or duplicated keys, deep nesting).

export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

const INTERESTING_NUMBERS = [0, -1, 1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64, -(2 ** 63), 1e308, -1e308, 0.5, NaN, 65535, 4096, 7];

export function mutateBytes(input: Uint8Array, r: Prng): Uint8Array {
  const b = Array.from(input);
  const ops = 1 + r.int(4);
  for (let k = 0; k < ops; k++) {
    switch (r.int(8)) {
      case 0: // bit flip
        if (b.length) {
          const at = r.int(b.length);
          b[at] = b[at]! ^ (1 << r.int(8));
        }
        break;
      case 1: // truncate
        b.length = r.int(b.length + 1);
        break;
      case 2: // insert random bytes
        b.splice(r.int(b.length + 1), 0, ...Array.from({ length: 1 + r.int(16) }, () => r.int(256)));
        break;
      case 3: // delete a range
        b.splice(r.int(b.length + 1), 1 + r.int(32));
        break;
      case 4: // invalid UTF-8 sequences
        b.splice(
          r.int(b.length + 1),
          0,
          ...r.pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x28, 0xa1], [0xf8, 0x88, 0x80, 0x80, 0x80]]),
        );
        break;
      case 5: // overwrite with an interesting 64-bit little-endian value
        if (b.length >= 8) {
          const at = r.int(b.length - 7);
          const v = BigInt.asUintN(64, BigInt(r.pick([0, 1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 40]) - r.int(3)));
          for (let i = 0; i < 8; i++) b[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
        }
        break;
      case 6: // duplicate a chunk
        if (b.length) {
          const s = r.int(b.length);
          b.splice(r.int(b.length + 1), 0, ...b.slice(s, s + 1 + r.int(64)));
        }
        break;
      default: // random byte
        if (b.length) b[r.int(b.length)] = r.int(256);
    }
  }
  return Uint8Array.from(b);
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function mutateValue(v: Json, r: Prng, depth: number): Json {
  if (depth > 0 && r.next() < 0.7) {
    if (Array.isArray(v) && v.length) {
      const i = r.int(v.length);
      const copy = [...v];
      copy[i] = mutateValue(copy[i]!, r, depth - 1);
      return copy;
    }
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length) {
        const k = r.pick(keys);
        const copy: { [k: string]: Json } = { ...v };
        switch (r.int(4)) {
          case 0:
            delete copy[k];
            return copy;
          case 1:
            copy[`${k}_${r.int(9)}`] = copy[k]!;
            return copy;
          default:
            copy[k] = mutateValue(copy[k]!, r, depth - 1);
            return copy;
        }
      }
    }
  }
  switch (r.int(9)) {
    case 0:
      return r.pick(INTERESTING_NUMBERS);
    case 1:
      return typeof v === 'number' ? -v : -1;
    case 2:
      return 'x'.repeat(r.int(3) * 1000);
    case 3:
      return null;
    case 4:
      return [v, v];
    case 5:
      return { nested: v };
    case 6:
      return typeof v === 'string' ? v.slice(0, r.int(v.length + 1)) + '\uD800' : true;
    case 7:
      return typeof v === 'number' ? v * (2 ** 20 + r.int(7)) : String(v);
    default:
      return typeof v === 'number' ? v + 0.5 : [];
  }
}

/** A JSON document mutated structurally; sometimes wrapped in deep nesting or cut short. */
export function mutateJson(text: string, r: Prng): string {
  let v: Json;
  try {
    v = JSON.parse(text) as Json;
  } catch {
    return new TextDecoder().decode(mutateBytes(new TextEncoder().encode(text), r));
  }
  const roll = r.int(10);
  if (roll === 0) return '['.repeat(5000 + r.int(100000)) + ']'.repeat(r.int(2) ? 5000 : 0);
  if (roll === 1) return text.slice(0, r.int(text.length));
  if (roll === 2) return new TextDecoder().decode(mutateBytes(new TextEncoder().encode(text), r));
  for (let i = 0; i < 1 + r.int(3); i++) v = mutateValue(v, r, 6);
  return JSON.stringify(v);
}
