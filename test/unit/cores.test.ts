// The default thread count: physical cores among the CPUs this process may use, capped by a
// cgroup quota; hyper-threads of one core count once.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as os from 'node:os';
import { cgroupCpuLimit, coresFromCpuinfo, countCores, parseCpuList, physicalCores, resolveThreads } from '../../src/engine/cores';

/** A machine with `cores` cores × `smt` threads, Linux numbering (siblings are cpu and cpu + cores). */
function smtMachine(cores: number, smt: number) {
  return (cpu: number) => (cpu < cores * smt ? `0:${cpu % cores}` : null);
}

describe('physical cores', () => {
  test('cpu lists in the kernel format', () => {
    assert.deepEqual(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
    assert.deepEqual(parseCpuList('5'), [5]);
    assert.deepEqual(parseCpuList('0-1,x'), [], 'unreadable: unknown, not a guess');
  });

  test('SMT siblings count once; the allowed CPUs and the quota limit the count', () => {
    const all = Array.from({ length: 32 }, (_, i) => i);
    assert.equal(countCores({ allowed: all, coreOf: smtMachine(16, 2), quota: null, parallelism: 32 }), 16, '16 cores × 2 threads');
    assert.equal(countCores({ allowed: all.slice(0, 16), coreOf: smtMachine(16, 1), quota: null, parallelism: 16 }), 16, 'no SMT');
    assert.equal(
      countCores({ allowed: [0, 1, 16, 17], coreOf: smtMachine(16, 2), quota: null, parallelism: 4 }),
      2,
      'pinned to two cores with both their threads',
    );
    assert.equal(countCores({ allowed: all, coreOf: smtMachine(16, 2), quota: 4, parallelism: 32 }), 4, 'container quota of 4 CPUs');
    assert.equal(countCores({ allowed: all, coreOf: () => null, quota: null, parallelism: 32 }), 32, 'topology unknown: every CPU');
    assert.equal(countCores({ allowed: null, coreOf: () => null, quota: null, parallelism: 0 }), 1, 'never below one');
  });

  test('/proc/cpuinfo without sysfs: (physical id, core id) pairs', () => {
    const block = (p: number, pkg: number, core: number) =>
      `processor\t: ${p}\nvendor_id\t: GenuineIntel\nphysical id\t: ${pkg}\ncore id\t\t: ${core}\n`;
    const text = [block(0, 0, 0), block(1, 0, 1), block(2, 0, 0), block(3, 0, 1), block(4, 1, 0)].join('\n');
    const map = coresFromCpuinfo(text);
    assert.equal(map.get(2), map.get(0), 'hyper-thread of core 0');
    assert.notEqual(map.get(4), map.get(0), 'core 0 of the second socket is another core');
    assert.equal(countCores({ allowed: [0, 1, 2, 3, 4], coreOf: (c) => map.get(c) ?? null, quota: null, parallelism: 5 }), 3);
  });

  test('cgroup quotas: v2 "max" and v1 −1 mean none; a fraction rounds up', () => {
    assert.equal(cgroupCpuLimit(NaN, 100000), null);
    assert.equal(cgroupCpuLimit(-1, 100000), null);
    assert.equal(cgroupCpuLimit(400000, 100000), 4);
    assert.equal(cgroupCpuLimit(150000, 100000), 2);
  });

  test('this machine: between 1 and the CPUs it may use; a setting of 0 means that, a number is kept', () => {
    const n = physicalCores();
    assert.ok(n >= 1 && n <= os.availableParallelism(), `${n} cores`);
    assert.equal(resolveThreads(0), n);
    assert.equal(resolveThreads(undefined), n);
    assert.equal(resolveThreads(48), 48, 'no cap below what is asked');
  });
});
