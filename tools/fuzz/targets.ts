// Fuzz targets: each takes one generated input and either accepts it or rejects it with an
// EngineError (a clear message). Anything else thrown is a crash.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseHeaderLength, parseSafetensorsHeader, SafetensorsFile } from '../../src/engine/checkpoint/safetensors';
import { parseJsonObject } from '../../src/engine/checkpoint/hf';
import { specFromConfig } from '../../src/engine/arch/spec';
import { TextTokenizer } from '../../src/engine/tokenizer';
import { onnx } from 'onnx-proto';
import { EngineError } from '../../src/engine/errors';
import { instrumentExport } from '../../src/engine/onnx/surgery';
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

const ONNX_SEEDS = ['tiny-gpt2-torch', 'tiny-llama-torch', 'tiny-neox-torch'].map((m) => path.join('onnx', m, 'onnx', 'model.onnx'));
const ONNX_OPS = ['MatMul', 'Softmax', 'Add', 'Mul', 'Gather', 'Reshape', 'Transpose', 'LayerNormalization', 'Pow', 'Attention', 'Foo'];

/** A structural change to a decoded export: nodes, names, shapes and initialisers. */
function mutateGraph(m: onnx.ModelProto, r: Prng): void {
  const g = m.graph!;
  const nodes = (g.node ??= []);
  g.initializer ??= [];
  g.input ??= [];
  g.output ??= [];
  const n = nodes.length ? nodes[r.int(nodes.length)]! : null;
  if (n) {
    n.input ??= [];
    n.output ??= [];
  }
  switch (r.int(9)) {
    case 0:
      if (n) nodes.splice(nodes.indexOf(n), 1); // a node removed
      break;
    case 1:
      if (n) n.opType = r.pick(ONNX_OPS);
      break;
    case 2:
      if (n?.input?.length) n.input[r.int(n.input.length)] = r.pick(['', 'input_ids', 'nope', n.output?.[0] ?? 'x']); // cycles, dangling
      break;
    case 3:
      if (n?.output?.length) n.output[0] = r.pick(['logits', 'input_ids', nodes[r.int(nodes.length)]!.output?.[0] ?? 'y']);
      break;
    case 4: {
      const t = g.initializer[r.int(Math.max(1, g.initializer.length))];
      if (t) t.dims = (t.dims ?? [1]).map(() => r.pick([0, 1, -1, 3, 2 ** 31, Number.MAX_SAFE_INTEGER]));
      break;
    }
    case 5: {
      const t = g.initializer[r.int(Math.max(1, g.initializer.length))];
      if (t) {
        if (r.int(2)) t.rawData = (t.rawData ?? new Uint8Array(0)).subarray(0, r.int((t.rawData?.length ?? 0) + 1));
        else t.dataType = r.pick([0, 2, 7, 10, 11, 16, 99]);
      }
      break;
    }
    case 6:
      g.initializer.splice(r.int(Math.max(1, g.initializer.length)), 1);
      break;
    case 7: {
      const v = r.pick([...g.input, ...g.output]);
      const dims = v?.type?.tensorType?.shape?.dim;
      if (dims && dims.length) dims.splice(r.int(dims.length), 1);
      else if (v) v.type = null;
      break;
    }
    default: {
      const t = g.initializer[r.int(Math.max(1, g.initializer.length))];
      if (t) {
        t.rawData = new Uint8Array(0);
        t.externalData = [
          { key: 'location', value: r.pick(['../../etc/passwd', 'missing.bin', '/dev/zero', 'model.onnx_data']) },
          { key: 'offset', value: String(r.pick([0, -5, 2 ** 40])) },
          { key: 'length', value: String(r.pick([16, 2 ** 40, -1])) },
        ];
        t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      }
    }
  }
}

export const onnxTarget: FuzzTarget = {
  name: 'onnx',
  generate(seed, i) {
    const r = new Prng(seed * 1_000_003 + i);
    const base = r.pick(seeds(ONNX_SEEDS));
    if (r.int(3) === 0) return mutateBytes(base, r); // damaged bytes
    const m = onnx.ModelProto.decode(base);
    for (let k = 1 + r.int(3); k > 0; k--) mutateGraph(m, r);
    return onnx.ModelProto.encode(m).finish();
  },
  run(input) {
    // as loadOnnxExport does: decode, then the surgery (external data is refused: no reader)
    let m: onnx.ModelProto;
    try {
      m = onnx.ModelProto.decode(input);
    } catch (e) {
      throw new EngineError('BAD_ONNX', `model.onnx is not a valid ONNX model: ${(e as Error).message}`);
    }
    instrumentExport(m, { readExternal: null, patterns: true });
  },
};

export const TARGETS: FuzzTarget[] = [safetensorsTarget, configTarget, tokenizerTarget, onnxTarget];
