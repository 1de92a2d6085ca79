// The fuzzing regression corpus (test/fixtures/fuzz/<target>/*.bin: past crashes, hangs and
// one example per kind of rejection) plus a short seeded campaign per target. Every input
// must be accepted or rejected with an EngineError, quickly. The long run: `npm run fuzz`.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TARGETS } from '../../tools/fuzz/targets';
import { fuzz } from '../../tools/fuzz/run';
import { FIXTURES } from '../helpers';

for (const target of TARGETS) {
  describe(`fuzz: ${target.name}`, () => {
    test('regression corpus: accepted or rejected with a clear error', () => {
      const dir = path.join(FIXTURES, 'fuzz', target.name);
      const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.bin')) : [];
      assert.ok(files.length > 0, `corpus for ${target.name} is empty`);
      for (const f of files) {
        const t0 = performance.now();
        try {
          target.run(new Uint8Array(fs.readFileSync(path.join(dir, f))));
        } catch (e) {
          const err = e as { name?: string; message?: string };
          assert.equal(err.name, 'EngineError', `${f}: crashed with ${err.name}: ${err.message}`);
          assert.ok((err.message ?? '').length > 10, `${f}: rejection without a message`);
        }
        assert.ok(performance.now() - t0 < 5000, `${f}: took too long`);
      }
    });

    test('a short seeded campaign finds no crash or hang', async () => {
      const s = await fuzz(target.name, 300, 20261128, null);
      assert.deepEqual(s.crashes, []);
      assert.deepEqual(s.hangs, []);
      assert.equal(s.ok + s.rejected, 300);
    });
  });
}
