// How many threads the engine uses unless told otherwise: one per physical core this process
// may run on. Hyper-threads share a core's vector units, so a second thread per core adds
// little to matrix products and makes onnxruntime's thread pool wait on its slowest thread
// (onnxruntime's own default is one per physical core for the same reason).
//
// Linux: the CPUs this process may use (Cpus_allowed_list in /proc/self/status), grouped into
// cores by sysfs topology (core_cpus_list, older kernels thread_siblings_list) or, without
// sysfs, /proc/cpuinfo (physical id, core id); capped by a cgroup CPU quota (a container
// limited to 4 CPUs on a 64-core host gets 4). Elsewhere: os.availableParallelism().
import * as fs from 'node:fs';
import * as os from 'node:os';

/** "0-3,8,10-11" → [0, 1, 2, 3, 8, 10, 11] (the kernel's cpu-list format). */
export function parseCpuList(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return [];
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    for (let c = a; c <= b; c++) out.push(c);
  }
  return out;
}

/** processor → "physical id:core id" from /proc/cpuinfo (entries without both ids are left out). */
export function coresFromCpuinfo(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const block of text.split(/\n\s*\n/)) {
    const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(\\d+)`, 'm').exec(block)?.[1];
    const cpu = field('processor');
    const pkg = field('physical id');
    const core = field('core id');
    if (cpu !== undefined && pkg !== undefined && core !== undefined) out.set(Number(cpu), `${pkg}:${core}`);
  }
  return out;
}

/**
 * CPUs a cgroup quota allows (rounded up), or null without a quota. cgroup v2 `cpu.max` is
 * "max 100000" or "400000 100000"; v1 gives quota and period in two files (quota −1: none).
 */
export function cgroupCpuLimit(quota: number, period: number): number | null {
  if (!(quota > 0) || !(period > 0)) return null;
  return Math.max(1, Math.ceil(quota / period));
}

/** The inputs of the count, read from the system (or given by tests). */
export interface CpuFacts {
  /** CPUs this process may run on, or null when unknown. */
  allowed: number[] | null;
  /** The core each CPU belongs to (any string that is equal for SMT siblings), or null when unknown. */
  coreOf: (cpu: number) => string | null;
  /** CPUs a cgroup quota allows, or null. */
  quota: number | null;
  /** os.availableParallelism(). */
  parallelism: number;
}

/** Physical cores among the allowed CPUs, capped by the quota and the logical count. */
export function countCores(f: CpuFacts): number {
  let cores = f.parallelism;
  if (f.allowed && f.allowed.length > 0) {
    const seen = new Set<string>();
    let known = true;
    for (const cpu of f.allowed) {
      const core = f.coreOf(cpu);
      if (core === null) {
        known = false;
        break;
      }
      seen.add(core);
    }
    if (known) cores = Math.min(cores, seen.size);
  }
  if (f.quota !== null) cores = Math.min(cores, f.quota);
  return Math.max(1, cores);
}

function read(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function linuxQuota(): number | null {
  // the process's own cgroup: "0::/path" (v2) or "N:cpu,cpuacct:/path" (v1)
  const lines = (read('/proc/self/cgroup') ?? '').split('\n');
  const v2 = lines.find((l) => l.startsWith('0::'))?.slice(3);
  if (v2 !== undefined) {
    const max = read(`/sys/fs/cgroup${v2 === '/' ? '' : v2}/cpu.max`)
      ?.trim()
      .split(/\s+/);
    if (max && max[0] !== 'max') return cgroupCpuLimit(Number(max[0]), Number(max[1]));
  }
  const v1 = lines.find((l) => /^\d+:[^:]*\bcpu\b[^:]*:/.test(l))?.replace(/^\d+:[^:]*:/, '');
  for (const base of ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpu,cpuacct']) {
    const dir = `${base}${v1 && v1 !== '/' ? v1 : ''}`;
    const quota = read(`${dir}/cpu.cfs_quota_us`);
    if (quota !== null) return cgroupCpuLimit(Number(quota), Number(read(`${dir}/cpu.cfs_period_us`)));
  }
  return null;
}

function linuxFacts(): CpuFacts {
  const allowedList = /^Cpus_allowed_list:\s*(.+)$/m.exec(read('/proc/self/status') ?? '')?.[1];
  let cpuinfo: Map<number, string> | null = null;
  const coreOf = (cpu: number): string | null => {
    const topo = `/sys/devices/system/cpu/cpu${cpu}/topology`;
    const siblings = read(`${topo}/core_cpus_list`) ?? read(`${topo}/thread_siblings_list`);
    if (siblings !== null) return `${read(`${topo}/physical_package_id`)?.trim() ?? '0'}:${siblings.trim()}`;
    cpuinfo ??= coresFromCpuinfo(read('/proc/cpuinfo') ?? '');
    return cpuinfo.get(cpu) ?? null;
  };
  return {
    allowed: allowedList ? parseCpuList(allowedList) : null,
    coreOf,
    quota: linuxQuota(),
    parallelism: os.availableParallelism(),
  };
}

let cached: number | null = null;

/** One thread per physical core this process may use (the default of the `threads` setting and `--threads`). */
export function physicalCores(): number {
  if (cached !== null) return cached;
  cached =
    process.platform === 'linux'
      ? countCores(linuxFacts())
      : countCores({ allowed: null, coreOf: () => null, quota: null, parallelism: os.availableParallelism() });
  return cached;
}

/** The threads setting: a positive number as given, 0 (or nothing) for one per physical core. */
export function resolveThreads(setting: number | undefined): number {
  return setting !== undefined && setting > 0 ? Math.floor(setting) : physicalCores();
}
