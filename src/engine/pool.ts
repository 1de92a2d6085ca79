// Float32 buffers recycled between analyses of the same size. Fresh memory pays a page fault
// per 4 KB on first write (about 190 MB of residual streams and attention patterns for 512
// tokens of GPT-2), which costs more than the forward pass itself on some machines. Only the
// engine worker recycles: there, evicted analyses are no longer visible to anyone.
//
// The case this serves is re-running a text of the same length (typing, re-analysing), so the
// pool is small: the last few buffers given back, oldest dropped first. Buffers of lengths that
// never come back would otherwise pile up to the cap (a soak run of mixed lengths showed it).

export class BufferPool {
  /** Oldest first. */
  private readonly held: Float32Array[] = [];
  private bytes = 0;

  constructor(
    private readonly capBytes = 256 * 2 ** 20,
    private readonly maxBuffers = 6,
  ) {}

  take(length: number): Float32Array {
    for (let i = this.held.length - 1; i >= 0; i--) {
      const a = this.held[i]!;
      if (a.length === length) {
        this.held.splice(i, 1);
        this.bytes -= a.byteLength;
        return a;
      }
    }
    return new Float32Array(length);
  }

  give(...arrays: (Float32Array | null | undefined)[]): void {
    for (const a of arrays) {
      if (!a || a.length === 0 || a.byteOffset !== 0 || a.byteLength !== a.buffer.byteLength) continue;
      if (a.byteLength > this.capBytes || this.held.includes(a)) continue;
      this.held.push(a);
      this.bytes += a.byteLength;
      while (this.held.length > this.maxBuffers || this.bytes > this.capBytes) this.bytes -= this.held.shift()!.byteLength;
    }
  }

  /** Drops everything (e.g. when another model is loaded: its sizes differ). */
  clear(): void {
    this.held.length = 0;
    this.bytes = 0;
  }

  get heldBytes(): number {
    return this.bytes;
  }

  get heldBuffers(): number {
    return this.held.length;
  }
}
