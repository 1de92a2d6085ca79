// The onnxruntime session options the engine relies on for speed and memory (runtime/ort.ts:
// each was measured there). Plumbing that silently drops one still gives the right numbers, so
// only these tests would notice.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { sessionOptions } from '../../src/engine/runtime/ort';
import { withEnv } from '../helpers';

type Extra = { session: { intra_op: { allow_spinning: string }; disable_prepacking?: string } };
const extra = (o: ReturnType<typeof sessionOptions>) => o.extra as Extra;

test('CPU sessions: no memory arena, no memory patterns, no pre-packing unless asked', () => {
  withEnv('TD_ORT_ARENA', undefined, () =>
    withEnv('TD_ORT_PREPACK', undefined, () => {
      const o = sessionOptions('cpu', 2, {});
      assert.equal(o.enableCpuMemArena, false);
      assert.equal(o.enableMemPattern, false);
      assert.equal(o.intraOpNumThreads, 2);
      assert.equal(extra(o).session.disable_prepacking, '1');
      assert.equal(extra(sessionOptions('cpu', 2, { prepack: true })).session.disable_prepacking, undefined);
      assert.equal(sessionOptions('cpu', 2, { arena: true }).enableCpuMemArena, true); // bench/rates.ts's GEMM rate
    }),
  );
  withEnv('TD_ORT_ARENA', '1', () => assert.equal(sessionOptions('cpu', 2, {}).enableCpuMemArena, true));
});

test('worker threads spin, except in sessions created with spin: false (the linear algebra) or under TD_ORT_SPIN=0', () => {
  withEnv('TD_ORT_SPIN', undefined, () => {
    assert.equal(extra(sessionOptions('cpu', 2, {})).session.intra_op.allow_spinning, '1');
    assert.equal(extra(sessionOptions('cpu', 2, { spin: false })).session.intra_op.allow_spinning, '0');
  });
  withEnv('TD_ORT_SPIN', '0', () => assert.equal(extra(sessionOptions('cpu', 2, {})).session.intra_op.allow_spinning, '0'));
});
