// The GPU diagnostics tools read onnxruntime's logs and profiles: lines as onnxruntime 1.30 writes them.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { parsePlacementLog, placementMarkdown } from '../../tools/gpu-placement';
import { summarise } from '../../tools/gpu-profile';

const V = '2026-12-04 17:36:16.453961427 [V:onnxruntime:, session_state.cc:1385 VerifyEachNodeIsAssignedToAnEp]';
const LOG = [
  '2026-12-04 17:36:16.452055689 [I:onnxruntime:, fallback_cpu_capability.cc:167 GetCpuPreferredNodes] ORT optimization- Force fallback to CPU execution for node: Where_11 because the CPU execution path is deemed faster',
  '2026-12-04 17:36:16.453311539 [I:onnxruntime:, transformer_memcpy.cc:393 AddCopyNode] Add MemcpyFromHost after input_ids for WebGpuExecutionProvider',
  '2026-12-04 17:36:16.453319922 [I:onnxruntime:, transformer_memcpy.cc:393 AddCopyNode] Add MemcpyToHost before top_ids for WebGpuExecutionProvider',
  `${V} Node placements`,
  `${V}  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 3`,
  `${V}   Shape (Shape_0)`,
  `${V}   Gather (Gather_1)`,
  `${V}   Gather (Gather_2)`,
  `${V}  Node(s) placed on [WebGpuExecutionProvider]. Number of nodes: 2`,
  `${V}   MatMul (MatMul_3)`,
  `${V}   Softmax (Softmax_4)`,
  '2026-12-04 17:36:16.5 [I:onnxruntime:, inference_session.cc:2610 Initialize] Initializing session.',
  `${V} Node placements`,
  `${V}  All nodes placed on [CPUExecutionProvider]. Number of nodes: 10`,
].join('\n');

describe('GPU diagnostics tools', () => {
  test('node placement per session: ops per provider, copies, and why nodes went to the CPU', () => {
    const sessions = parsePlacementLog(LOG);
    assert.equal(sessions.length, 2);
    assert.deepEqual(sessions[0]!.providers, {
      CPUExecutionProvider: { Shape: 1, Gather: 2 },
      WebGpuExecutionProvider: { MatMul: 1, Softmax: 1 },
    });
    assert.deepEqual(sessions[0]!.copies, ['MemcpyFromHost after input_ids', 'MemcpyToHost before top_ids']);
    assert.match(sessions[0]!.fallbacks[0]!, /^Where_11 because the CPU execution path is deemed faster/);
    assert.deepEqual(sessions[1]!.providers, { CPUExecutionProvider: { all: 10 } });
    const md = placementMarkdown(['forward', 'linalg'], sessions);
    assert.match(md, /#### forward\n- CPU: 3 nodes \(Gather ×2, Shape ×1\)\n- WebGpu: 2 nodes/);
    assert.match(md, /#### linalg\n- CPU: 10 nodes\n/);
  });

  test('profile: host time per op and provider, GPU time per kernel, runs', () => {
    const s = summarise([
      { cat: 'Session', name: 'model_run', dur: 5000 },
      { cat: 'Node', name: 'MatMul_0_kernel_time', dur: 3000, args: { op_name: 'MatMul', provider: 'WebGpuExecutionProvider' } },
      { cat: 'Node', name: 'MatMul_1_kernel_time', dur: 1000, args: { op_name: 'MatMul', provider: 'WebGpuExecutionProvider' } },
      { cat: 'Node', name: 'Shape_2_kernel_time', dur: 10, args: { op_name: 'Shape', provider: 'CPUExecutionProvider' } },
      { cat: 'Api', name: 'TopK_8&TopK&TopKSortStep', dur: 700 },
      { cat: 'Api', name: 'MatMul_0&MatMul&MatMul', dur: 70 },
    ]);
    assert.equal(s.runs, 1);
    assert.equal(s.runMs, 5);
    assert.deepEqual(s.nodes[0], { key: 'MatMul @ WebGpu', count: 2, ms: 4 });
    assert.deepEqual(s.gpu[0], { key: 'TopK (TopKSortStep)', count: 1, ms: 0.7 });
  });
});
