// Fuzz targets: each takes one generated input and either accepts it or rejects it with an
// EngineError (a clear message). Anything else thrown is a crash.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseHeaderLength, parseSafetensorsHeader, SafetensorsFile } from '../../src/engine/checkpoint/safetensors';
import { parseJsonObject } from '../../src/engine/checkpoint/hf';
import { specFromConfig } from '../../src/engine/arch/spec';
import { TextTokenizer } from '../../src/engine/tokenizer';
import { mutateBytes, mutateJson, Prng } from './mutate';

export interface FuzzTarget {
  name: string;
  /** Deterministic input number i of a campaign with the given seed. */
  generate(seed: number, i: number): Uint8Array;
  run(input: Uint8Array): void;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function fixture(...p: string[]): string {
  let dir = __dirname;
  // the repository root (out/ has a test/fixtures folder of compiled helpers too)
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return path.join(dir, 'test', 'fixtures', ...p);
}

function seeds(files: string[]): Uint8Array[] {
  return files.map((f) => new Uint8Array(fs.readFileSync(fixture(f))));
}

/** Header JSON + data of a real safetensors file, so mutations hit the header. */
function splitSafetensors(b: Uint8Array): { header: string; data: Uint8Array } {
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  return { header: dec.decode(b.subarray(8, 8 + n)), data: b.subarray(8 + n) };
}

function joinSafetensors(header: string, data: Uint8Array, lenDelta = 0): Uint8Array {
  const h = enc.encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(h.length + lenDelta)), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

let tmpFile: string | null = null;

export const safetensorsTarget: FuzzTarget = {
  name: 'safetensors',
  generate(seed, i) {
    const r = new Prng(seed * 1_000_003 + i);
    const base = r.pick(
      seeds(['models/tiny-gpt2/model.safetensors', 'models/tiny-llama/model.safetensors', 'models/tiny-qwen2/model.safetensors']),
    );
    const { header, data } = splitSafetensors(base);
    // usually the whole data section, so that what fails is the mutated header
    const small = r.int(4) === 0 ? data.subarray(0, r.int(data.length + 1)) : data;
    switch (r.int(3)) {
      case 0:
        return joinSafetensors(mutateJson(header, r), small);
      case 1:
        return joinSafetensors(header, small, r.pick([0, 0, 1, -1, 8, 1 << 20, -8]));
      default:
        return mutateBytes(joinSafetensors(header, small).subarray(0, 8 + header.length + 64), r);
    }
  },
  run(input) {
    const len = parseHeaderLength(input.subarray(0, 8), input.length, 'fuzz.safetensors');
    const h = parseSafetensorsHeader(input.subarray(8, 8 + len), input.length, 'fuzz.safetensors');
    // Every few inputs also go through the file reader and the dtype conversions.
    if (h.entries.size > 0 && input[input.length - 1]! % 8 === 0) {
      tmpFile ??= path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'td-fuzz-')), 'm.safetensors');
      fs.writeFileSync(tmpFile, input);
      const f = SafetensorsFile.open(tmpFile);
      for (const e of f.entries.values()) if (['F32', 'F16', 'BF16'].includes(e.dtype)) f.readFloat32(e);
    }
  },
};

export const configTarget: FuzzTarget = {
  name: 'config',
  generate(seed, i) {
    const r = new Prng(seed * 1_000_003 + i);
    const base = r.pick([
      'models/tiny-gpt2/config.json',
      'models/tiny-llama/config.json',
      'models/tiny-qwen2/config.json',
      'models/tiny-neox/config.json',
    ]);
    return enc.encode(mutateJson(fs.readFileSync(fixture(base), 'utf8'), r));
  },
  run(input) {
    specFromConfig(parseJsonObject(dec.decode(input), 'config.json', 'BAD_CONFIG'));
  },
};

export const tokenizerTarget: FuzzTarget = {
  name: 'tokenizer',
  generate(seed, i) {
    const r = new Prng(seed * 1_000_003 + i);
    const base = r.pick(['models/tiny-gpt2/tokenizer.json', 'models/tiny-llama/tokenizer.json']);
    return enc.encode(mutateJson(fs.readFileSync(fixture(base), 'utf8'), r));
  },
  run(input) {
    const json = parseJsonObject(dec.decode(input), 'tokenizer.json', 'BAD_TOKENIZER');
    const tk = new TextTokenizer(json, {});
    const spans = tk.encode('Hello wörld <|endoftext|> def f(x):\n\treturn x  # 你好');
    tk.decode(spans.map((s) => s.id));
  },
};

export const TARGETS: FuzzTarget[] = [safetensorsTarget, configTarget, tokenizerTarget];
