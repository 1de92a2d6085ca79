// A model folder in Hugging Face layout: config.json, model.safetensors (or shards with
// model.safetensors.index.json), tokenizer.json (+ tokenizer_config.json,
// generation_config.json). Pickle checkpoints are refused: unpickling runs code.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';
import { SafetensorsFile, TensorEntry } from './safetensors';

export interface Checkpoint {
  dir: string;
  config: Record<string, unknown>;
  weights: WeightStore;
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
}

/** Tensors by name across all safetensors files of a checkpoint. */
export class WeightStore {
  private readonly byName = new Map<string, { file: SafetensorsFile; entry: TensorEntry }>();
  private scratch = new Uint8Array(0);

  constructor(readonly files: SafetensorsFile[]) {
    for (const file of files) {
      for (const entry of file.entries.values()) {
        if (this.byName.has(entry.name)) {
          throw new EngineError('BAD_WEIGHTS', `Tensor "${entry.name}" appears in more than one weight file.`);
        }
        this.byName.set(entry.name, { file, entry });
      }
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  shape(name: string): number[] {
    return this.lookup(name).entry.shape;
  }

  entry(name: string): { file: SafetensorsFile; entry: TensorEntry } {
    return this.lookup(name);
  }

  /** Reads a tensor as float32 after checking its shape. */
  float32(name: string, expectShape: number[]): Float32Array {
    const { file, entry } = this.shaped(name, expectShape);
    return file.readFloat32(entry);
  }

  /**
   * Reads a 2-D tensor stored [rows, cols] (checked against `expectShape`) as its float32
   * transpose [cols, rows], converting half precision in the same pass. The stored bytes go
   * through one scratch buffer reused across calls, so a multi-GB checkpoint is read without
   * a fresh allocation (and its page faults) per tensor.
   */
  float32Transposed(name: string, expectShape: [number, number]): Float32Array {
    const { file, entry } = this.shaped(name, expectShape);
    const size = entry.end - entry.begin;
    if (this.scratch.byteLength < size) this.scratch = new Uint8Array(size);
    return file.readFloat32Transposed(entry, this.scratch);
  }

  /** Frees the scratch buffer of transposed reads (call when the graphs are built). */
  releaseScratch(): void {
    this.scratch = new Uint8Array(0);
  }

  private shaped(name: string, expectShape: number[]): { file: SafetensorsFile; entry: TensorEntry } {
    const found = this.lookup(name);
    const { entry } = found;
    const same = entry.shape.length === expectShape.length && entry.shape.every((d, i) => d === expectShape[i]);
    if (!same) {
      throw new EngineError(
        'BAD_WEIGHTS',
        `Tensor "${name}" has shape [${entry.shape.join(', ')}] but config.json implies [${expectShape.join(', ')}]. ` +
          'The weights do not match the config.',
      );
    }
    return found;
  }

  /** Whether most of the weight bytes are float16/bfloat16 (a half-precision checkpoint). */
  storedHalf(): boolean {
    let half = 0;
    let all = 0;
    for (const { entry } of this.byName.values()) {
      const n = entry.end - entry.begin;
      all += n;
      if (entry.dtype === 'F16' || entry.dtype === 'BF16') half += n;
    }
    return all > 0 && half * 2 > all;
  }

  totalBytes(): number {
    let n = 0;
    for (const { entry } of this.byName.values()) n += entry.end - entry.begin;
    return n;
  }

  private lookup(name: string): { file: SafetensorsFile; entry: TensorEntry } {
    const hit = this.byName.get(name);
    if (!hit) throw new EngineError('BAD_WEIGHTS', `The checkpoint has no tensor "${name}" (is config.json for a different model?).`);
    return hit;
  }
}

/** Parses untrusted JSON text that must be an object; errors name the file. */
export function parseJsonObject(text: string, fileName: string, code: 'BAD_CONFIG' | 'BAD_TOKENIZER'): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const why = e instanceof RangeError ? 'nested too deeply' : (e as Error).message;
    throw new EngineError(code, `${fileName} is not valid JSON: ${why}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new EngineError(code, `${fileName} must contain a JSON object.`);
  }
  return json as Record<string, unknown>;
}

function readJson(file: string, what: string, code: 'BAD_CONFIG' | 'BAD_TOKENIZER'): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new EngineError(code, `Cannot read ${what} (${path.basename(file)}): ${(e as Error).message}`);
  }
  return parseJsonObject(text, path.basename(file), code);
}

function optionalJson(file: string): Record<string, unknown> {
  if (!fs.existsSync(file)) return {};
  try {
    return readJson(file, path.basename(file), 'BAD_CONFIG');
  } catch {
    return {}; // optional metadata: a broken one must not block the model
  }
}

const PICKLE_FILES = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.pt', 'model.pth', 'tf_model.h5', 'flax_model.msgpack'];

export const PICKLE_MESSAGE =
  'This folder has only PyTorch pickle weights (pytorch_model.bin). Pickle files can run arbitrary code when loaded, ' +
  'so Transformer Dynamics does not open them. Convert the checkpoint to safetensors once, in a Python environment you trust: ' +
  "`python -c \"from transformers import AutoModelForCausalLM as M; M.from_pretrained('DIR').save_pretrained('DIR-safetensors', safe_serialization=True)\"` " +
  '(then copy tokenizer.json next to it).';

/** Lists the safetensors files of a checkpoint folder, validating the shard index. */
export function weightFiles(dir: string): string[] {
  const single = path.join(dir, 'model.safetensors');
  const index = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    const json = readJson(index, 'the shard index', 'BAD_CONFIG');
    const map = json.weight_map;
    if (typeof map !== 'object' || map === null) throw new EngineError('BAD_WEIGHTS', 'model.safetensors.index.json has no "weight_map".');
    const shards = new Set<string>();
    for (const v of Object.values(map as Record<string, unknown>)) {
      if (typeof v !== 'string' || v !== path.basename(v) || !v.endsWith('.safetensors') || v.startsWith('.')) {
        throw new EngineError(
          'BAD_WEIGHTS',
          `model.safetensors.index.json names an invalid shard file ${JSON.stringify(v)?.slice(0, 80)}.`,
        );
      }
      shards.add(v);
    }
    const files = [...shards].sort().map((s) => path.join(dir, s));
    for (const f of files) {
      if (!fs.existsSync(f))
        throw new EngineError('BAD_WEIGHTS', `Shard ${path.basename(f)} listed in model.safetensors.index.json is missing.`);
    }
    return files;
  }
  if (fs.existsSync(single)) return [single];
  const others = fs.readdirSync(dir).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f));
  if (others.length > 0) throw new EngineError('BAD_WEIGHTS', 'Sharded safetensors files were found without model.safetensors.index.json.');
  if (PICKLE_FILES.some((f) => fs.existsSync(path.join(dir, f)))) throw new EngineError('PICKLE_REFUSED', PICKLE_MESSAGE);
  throw new EngineError(
    'NOT_FOUND',
    `No model.safetensors in ${dir}. A model folder needs config.json, model.safetensors and tokenizer.json.`,
  );
}

export function openCheckpoint(dir: string): Checkpoint {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new EngineError('NOT_FOUND', `Model folder not found: ${dir}`);
  }
  if (!st.isDirectory()) throw new EngineError('NOT_FOUND', `Not a folder: ${dir}. Choose the folder that contains config.json.`);
  const configPath = path.join(dir, 'config.json');
  if (!fs.existsSync(configPath)) throw new EngineError('NOT_FOUND', `No config.json in ${dir}: is this a Hugging Face model folder?`);
  const config = readJson(configPath, 'config.json', 'BAD_CONFIG');
  const files = weightFiles(dir);
  const tokPath = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(tokPath)) {
    throw new EngineError(
      'MISSING_TOKENIZER',
      `No tokenizer.json in ${dir}. Transformer Dynamics needs the "fast" tokenizer file; ` +
        'save it with `AutoTokenizer.from_pretrained(...).save_pretrained(DIR)` or download tokenizer.json from the model repository.',
    );
  }
  const tokenizerJson = readJson(tokPath, 'tokenizer.json', 'BAD_TOKENIZER');
  return {
    dir,
    config,
    weights: new WeightStore(files.map((f) => SafetensorsFile.open(f))),
    tokenizerJson,
    tokenizerConfig: optionalJson(path.join(dir, 'tokenizer_config.json')),
    generationConfig: optionalJson(path.join(dir, 'generation_config.json')),
  };
}
