// Event-loop lag of the extension host while a run is in progress: how long the editor's
// own work (typing, hovers, other extensions) would have waited. The engine runs in a
// separate process, so this stays near zero unless the host itself does heavy work (e.g.
// decoding a large result).
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export interface LagStats {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
}

const RESOLUTION_MS = 5;

export class LagProbe {
  private readonly h: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });

  constructor() {
    this.h.enable();
  }

  /** Stops sampling; the histogram counts timer delay including its period, which is subtracted. */
  stop(): LagStats {
    this.h.disable();
    const lag = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
    if (this.h.count === 0) return { p50Ms: 0, p99Ms: 0, maxMs: 0, samples: 0 };
    return { p50Ms: lag(this.h.percentile(50)), p99Ms: lag(this.h.percentile(99)), maxMs: lag(this.h.max), samples: this.h.count };
  }
}

export function formatLag(s: LagStats): string {
  return `extension-host event-loop lag p50 ${s.p50Ms.toFixed(1)} ms, p99 ${s.p99Ms.toFixed(1)} ms, max ${s.maxMs.toFixed(1)} ms (${s.samples} samples)`;
}
