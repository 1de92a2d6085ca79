// A cheap fingerprint of a model folder, so a model whose files change on disk is reloaded.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Sizes and modification times of a model folder's files (config, weights, tokenizer). */
export function folderFingerprint(dir: string): string {
  try {
    return fs
      .readdirSync(dir)
      .filter((f) => /\.(json|safetensors|onnx|onnx_data)$/.test(f))
      .sort()
      .map((f) => {
        const st = fs.statSync(path.join(dir, f));
        return `${f}:${st.size}:${st.mtimeMs}`;
      })
      .join('|');
  } catch {
    return '';
  }
}
