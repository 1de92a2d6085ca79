// Which adapter onnxruntime's WebGPU provider (Dawn) runs on. onnxruntime-node has no API for
// it and its session logs do not name it, so a short child process creates a one-MatMul WebGPU
// session and checks its result, with two loggers on that say what was picked:
//  - the Vulkan loader (VK_LOADER_DEBUG=driver) names the device Dawn created, and its driver:
//      Using "NVIDIA H200" with driver: "/usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0"
//  - onnxruntime's device discovery (env log level info) lists the machine's GPUs by vendor:
//      Discovered OrtHardwareDevice {vendor_id:0x10de, device_id:0x2335, vendor:NVIDIA, type:1, …}
// A child process because both write to the native stderr, which a Node process cannot read
// of itself. Measured here: 0.2 s with SwiftShader, 0.1 s when no adapter exists; once per
// process (memoised).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { GraphBuilder } from '../onnx/builder';
import type { WebGpuAdapter } from './providers';

export type WebGpuProbe = { adapter: WebGpuAdapter; error: null } | { adapter: null; error: string };

/** Vulkan drivers that rasterise on the CPU: Dawn would run, slower than the CPU provider. */
const SOFTWARE_VULKAN = /swiftshader|llvmpipe|lavapipe|lvp|softpipe/i;

/** What the probe's stderr says about the adapter (exported for tests; f16 comes from the run). */
export function parseProbeLog(stderr: string, platform: NodeJS.Platform): WebGpuAdapter | null {
  const used = [...stderr.matchAll(/Using "([^"]+)" with driver: "([^"]+)"/g)].pop();
  const gpus = [
    ...stderr.matchAll(/Discovered OrtHardwareDevice \{vendor_id:0x([0-9a-f]+), device_id:0x([0-9a-f]+), vendor:([^,]*), type:1\b/gi),
  ];
  const vendor = gpus[0]?.[3]?.trim() || null;
  if (used) {
    const [, name, driver] = used as unknown as [string, string, string];
    return { name, vendor, kind: SOFTWARE_VULKAN.test(name) || SOFTWARE_VULKAN.test(driver) ? 'software' : 'hardware', f16: false };
  }
  // No Vulkan loader log: Metal (macOS) has only hardware devices; D3D12 (Windows) falls back to
  // WARP only when no GPU exists, and onnxruntime's discovery lists the GPUs it could use.
  if (gpus.length > 0 && (platform === 'darwin' || platform === 'win32')) {
    return { name: `GPU 0x${gpus[0]![2]}`, vendor, kind: 'hardware', f16: false };
  }
  return null;
}

function probeGraph(): Uint8Array {
  const g = new GraphBuilder('webgpu-probe');
  const a = g.input('a', 'float32', [2, 3]);
  const w = g.initializer('w', Float32Array.of(1, 0, 0, 1, 1, 1), [3, 2]);
  g.output('y', g.op('MatMul', [a, w]), 'float32', [2, 2]);
  return g.encode();
}

/** A float16 round trip: runs only where the adapter has shader-f16 (SwiftShader has not). */
function halfGraph(): Uint8Array {
  const g = new GraphBuilder('webgpu-probe-f16');
  const a = g.input('a', 'float32', [2, 3]);
  g.output('y', g.cast(g.op('Neg', [g.cast(a, 'float16')]), 'float32'), 'float32', [2, 3]);
  return g.encode();
}
/** [[1,2,3],[4,5,6]] · [[1,0],[0,1],[1,1]] */
const PROBE_EXPECTED = [4, 5, 10, 11];

// Runs in the child: prints one JSON line with the product (and whether float16 runs) or the error.
const CHILD = `
const ort = require(process.env.TD_ORT_PATH);
ort.env.logLevel = 'info';
const a = new ort.Tensor('float32', Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]);
const run = async (graph) => {
  const s = await ort.InferenceSession.create(Buffer.from(graph, 'base64'), { executionProviders: ['webgpu'], logSeverityLevel: 4 });
  try { return Array.from((await s.run({ a })).y.data); } finally { await s.release(); }
};
(async () => {
  const y = await run(process.env.TD_PROBE_GRAPH);
  const h = await run(process.env.TD_PROBE_F16).catch(() => null);
  process.stdout.write(JSON.stringify({ y, f16: h !== null && h.every((v, i) => v === -(i + 1)) }) + '\\n');
})().catch((e) => process.stdout.write(JSON.stringify({ error: String(e && e.message).split('\\n')[0] }) + '\\n'));
`;

const PROBE_TIMEOUT_MS = 30_000;

/** Runs the probe in a child process (same environment as this one). */
export function probeWebGpu(): Promise<WebGpuProbe> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', CHILD], {
      env: {
        ...process.env,
        ELECTRON_RUN_AS_NODE: '1',
        VK_LOADER_DEBUG: 'driver',
        TD_ORT_PATH: require.resolve('onnxruntime-node'),
        TD_PROBE_GRAPH: Buffer.from(probeGraph()).toString('base64'),
        TD_PROBE_F16: Buffer.from(halfGraph()).toString('base64'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ adapter: null, error: `the WebGPU probe could not start (${e.message})` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve(probeResult(out, err, code, signal));
    });
  });
}

function probeResult(out: string, err: string, code: number | null, signal: NodeJS.Signals | null): WebGpuProbe {
  let reply: { y?: number[]; f16?: boolean; error?: string } = {};
  try {
    reply = JSON.parse(out.trim().split('\n').pop() ?? '') as typeof reply;
  } catch {
    const how = signal ? `was killed (${signal})` : `exited with code ${code}`;
    return { adapter: null, error: `the WebGPU probe ${how} before answering` };
  }
  if (reply.error !== undefined) return { adapter: null, error: reply.error.replace(/^.*Failed to get a WebGPU adapter: /, '') };
  if (!reply.y || reply.y.some((v, i) => v !== PROBE_EXPECTED[i])) {
    return { adapter: null, error: `the WebGPU adapter computed a wrong product (${JSON.stringify(reply.y)})` };
  }
  const found = parseProbeLog(err, process.platform) ?? { name: 'unnamed adapter', vendor: null, kind: 'unknown' as const };
  return { adapter: { ...found, f16: reply.f16 === true }, error: null };
}

let memo: Promise<WebGpuProbe> | null = null;
/** The probe, once per process. */
export function webGpuProbe(): Promise<WebGpuProbe> {
  memo ??= probeWebGpu();
  return memo;
}

/**
 * Could a hardware adapter exist at all? On Linux a GPU reaches Vulkan through a device node
 * (/dev/dri/renderD* for Mesa's drivers, /dev/nvidia* for NVIDIA's); without one `auto` skips
 * the probe. Elsewhere the probe decides.
 */
export function gpuDeviceVisible(platform: NodeJS.Platform = process.platform): boolean {
  if (platform !== 'linux') return true;
  const listed = (dir: string, re: RegExp) => {
    try {
      return fs.readdirSync(dir).some((f) => re.test(f));
    } catch {
      return false;
    }
  };
  return listed('/dev/dri', /^renderD\d+$/) || listed('/dev', /^nvidia\d+$/);
}
