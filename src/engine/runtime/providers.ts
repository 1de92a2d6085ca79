// Execution-provider choice, kept free of onnxruntime imports so the extension host (which
// never loads onnxruntime) can use the names and the rules.

export type ProviderRequest = 'auto' | 'cpu' | 'cuda' | 'dml' | 'coreml';
export const PROVIDERS: readonly ProviderRequest[] = ['auto', 'cpu', 'cuda', 'dml', 'coreml'];

export interface ProviderEnvironment {
  /** onnxruntime-node's listSupportedBackends() */
  backends: { name: string; bundled: boolean }[];
  /** CUDA provider library present next to the binding (installed by onnxruntime-node's installer). */
  cudaLibrary: boolean;
  /** An NVIDIA GPU is visible (/dev/nvidia0 or /proc/driver/nvidia). */
  nvidiaGpu: boolean;
  platform: NodeJS.Platform;
}

/**
 * Which provider to try for a request. `auto` picks CUDA when its binaries and a GPU are
 * present, else CPU. An explicit GPU provider is tried and falls back to CPU (with a note)
 * if it cannot start.
 */
export function chooseProvider(
  req: ProviderRequest,
  env: ProviderEnvironment,
): { provider: Exclude<ProviderRequest, 'auto'>; note: string | null } {
  const has = (n: string) => env.backends.some((b) => b.name === n);
  if (req === 'auto') {
    if (has('cuda') && env.cudaLibrary && env.nvidiaGpu) return { provider: 'cuda', note: null };
    return { provider: 'cpu', note: null };
  }
  if (req === 'cpu') return { provider: 'cpu', note: null };
  if (req === 'dml' && env.platform !== 'win32') return { provider: 'cpu', note: 'DirectML runs on Windows only; running on CPU.' };
  if (req === 'coreml' && env.platform !== 'darwin') return { provider: 'cpu', note: 'Core ML runs on macOS only; running on CPU.' };
  if (req === 'cuda' && !(has('cuda') && env.cudaLibrary)) {
    return {
      provider: 'cpu',
      note: "onnxruntime-node's CUDA binaries are not installed (they are downloaded by its installer: run `npx onnxruntime-node-install cuda12` or reinstall without ONNXRUNTIME_NODE_INSTALL=skip); running on CPU.",
    };
  }
  if (req === 'cuda' && !env.nvidiaGpu) return { provider: 'cpu', note: 'No NVIDIA GPU is visible to this machine; running on CPU.' };
  return { provider: req, note: null };
}

export const WEIGHT_PRECISIONS = ['auto', 'float32', 'float16'] as const;
export type WeightPrecisionRequest = (typeof WEIGHT_PRECISIONS)[number];

/**
 * float16 weights where they pay: on a GPU provider (native half GEMMs, half the device
 * memory) for a checkpoint that is half precision already (no precision is lost: float16
 * is kept bit for bit, and bfloat16 values are exactly representable in float16 except below
 * 6e-5 in magnitude, where float16 is subnormal). On CPU, onnxruntime computes float16
 * products through float32 casts, so float32 is faster there; `float16` forces it anywhere.
 */
export function resolveWeightPrecision(
  request: WeightPrecisionRequest | undefined,
  provider: string,
  storedHalf: boolean,
): 'float32' | 'float16' {
  if (request === 'float32' || request === 'float16') return request;
  return storedHalf && provider !== 'cpu' ? 'float16' : 'float32';
}
