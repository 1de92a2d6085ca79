// Execution-provider choice, kept free of onnxruntime imports so the extension host (which
// never loads onnxruntime) can use the names and the rules.
import { EngineError } from '../errors';

export type ProviderRequest = 'auto' | 'cpu' | 'webgpu' | 'cuda' | 'dml' | 'coreml';
export const PROVIDERS: readonly ProviderRequest[] = ['auto', 'cpu', 'webgpu', 'cuda', 'dml', 'coreml'];

/**
 * The adapter Dawn hands onnxruntime's WebGPU provider. `software`: a CPU rasteriser
 * (SwiftShader, lavapipe/llvmpipe, WARP) — correct but slower than the CPU provider, so `auto`
 * never picks it; `unknown`: Dawn found an adapter but its kind could not be told.
 */
export interface WebGpuAdapter {
  /** Device name, e.g. "NVIDIA H200" or "SwiftShader Device (Subzero)". */
  name: string;
  /** GPU vendor from onnxruntime's device discovery ("NVIDIA", "AMD", …), when it found one. */
  vendor: string | null;
  kind: 'hardware' | 'software' | 'unknown';
  /** float16 arithmetic in shaders (WebGPU's shader-f16): float16 weights can run there. */
  f16: boolean;
}

export interface ProviderEnvironment {
  /** onnxruntime-node's listSupportedBackends() */
  backends: { name: string; bundled: boolean }[];
  /** CUDA provider library present next to the binding (installed by onnxruntime-node's installer). */
  cudaLibrary: boolean;
  /** An NVIDIA GPU is visible (/dev/nvidia0 or /proc/driver/nvidia). */
  nvidiaGpu: boolean;
  platform: NodeJS.Platform;
  /**
   * What a WebGPU probe found: the adapter, or null with the reason when there is none.
   * Absent when not probed (no WebGPU backend, or `auto` on a machine without a GPU device).
   */
  webgpu?: { adapter: WebGpuAdapter; error: null } | { adapter: null; error: string };
}

/** One line naming the adapter for status bars and notes: "NVIDIA H200", "SwiftShader Device (Subzero), software". */
export function adapterLabel(a: WebGpuAdapter): string {
  const vendor = a.vendor && !a.name.toLowerCase().includes(a.vendor.toLowerCase()) ? `${a.vendor} ` : '';
  return `${vendor}${a.name}${a.kind === 'hardware' ? '' : `, ${a.kind}`}`;
}

/**
 * Which provider to try for a request. `auto` picks WebGPU when Dawn reports a hardware adapter
 * (never a software one), then CUDA when its binaries and a GPU are present, else CPU. An
 * explicit GPU provider is tried and falls back to CPU (with a note) if it cannot start;
 * `webgpu` by name also runs on a software adapter (that is how CI tests it).
 */
export function chooseProvider(
  req: ProviderRequest,
  env: ProviderEnvironment,
): { provider: Exclude<ProviderRequest, 'auto'>; note: string | null } {
  const has = (n: string) => env.backends.some((b) => b.name === n);
  if (req === 'auto') {
    if (has('webgpu') && env.webgpu?.adapter?.kind === 'hardware') return { provider: 'webgpu', note: null };
    if (has('cuda') && env.cudaLibrary && env.nvidiaGpu) return { provider: 'cuda', note: null };
    return { provider: 'cpu', note: null };
  }
  if (req === 'cpu') return { provider: 'cpu', note: null };
  if (req === 'webgpu') {
    if (!has('webgpu')) return { provider: 'cpu', note: 'This onnxruntime-node build has no WebGPU provider; running on CPU.' };
    if (env.webgpu?.adapter === null) return { provider: 'cpu', note: `No WebGPU adapter (${env.webgpu.error}); running on CPU.` };
    return { provider: 'webgpu', note: null };
  }
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
 * products through float32 casts, so float32 is faster there; `float16` forces it anywhere
 * but on a WebGPU adapter without shader-f16 (`halfCapable` false), which cannot run it.
 */
export function resolveWeightPrecision(
  request: WeightPrecisionRequest | undefined,
  provider: string,
  storedHalf: boolean,
  halfCapable = true,
): 'float32' | 'float16' {
  if (request === 'float16' && !halfCapable) {
    throw new EngineError(
      'BAD_REQUEST',
      'This WebGPU adapter has no float16 arithmetic (shader-f16), so float16 weights cannot run on it. ' +
        'Set transformerDynamics.weightPrecision (CLI: --weights) to auto or float32, or choose another execution provider.',
    );
  }
  if (request === 'float32' || request === 'float16') return request;
  return storedHalf && provider !== 'cpu' && halfCapable ? 'float16' : 'float32';
}
