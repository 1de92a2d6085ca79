// "Latest wins" for runs started at typing speed: a new run aborts the one in progress, and a
// result is shown only if its run is still the latest when it arrives.

export interface RunTicket {
  id: number;
  signal: AbortSignal;
  /** Still the latest run (no newer one began). */
  isCurrent(): boolean;
  /** Marks the run finished (it no longer blocks anything). */
  end(): void;
}

export class LatestOnly {
  private seq = 0;
  private current: { id: number; ctl: AbortController } | null = null;

  /** Starts a run, aborting the previous one. `id` may be given (shared id counters). */
  begin(id = ++this.seq): RunTicket {
    this.current?.ctl.abort();
    this.seq = Math.max(this.seq, id);
    const ctl = new AbortController();
    const run = { id, ctl };
    this.current = run;
    return {
      id,
      signal: ctl.signal,
      isCurrent: () => this.current === run,
      end: () => {
        if (this.current === run) this.current = null;
      },
    };
  }

  /** Aborts the run in progress, if any. */
  cancel(): void {
    this.current?.ctl.abort();
  }
}
