// Float32 buffers recycled between analyses of the same size. Fresh memory pays a page fault
// per 4 KB on first write (about 190 MB of residual streams and attention patterns for 512
// tokens of GPT-2), which costs more than the forward pass itself on some machines. Only the
// engine worker recycles: there, evicted analyses are no longer visible to anyone.

export class BufferPool {
  private readonly free = new Map<number, Float32Array[]>();
  private bytes = 0;

  constructor(private readonly capBytes = 1 << 30) {}

  take(length: number): Float32Array {
    const list = this.free.get(length);
    const hit = list?.pop();
    if (hit) {
      this.bytes -= hit.byteLength;
      return hit;
    }
    return new Float32Array(length);
  }

  give(...arrays: (Float32Array | null | undefined)[]): void {
    for (const a of arrays) {
      if (!a || a.length === 0 || a.byteOffset !== 0 || a.byteLength !== a.buffer.byteLength) continue;
      if (this.bytes + a.byteLength > this.capBytes) continue;
      const list = this.free.get(a.length) ?? [];
      if (list.includes(a)) continue;
      list.push(a);
      this.free.set(a.length, list);
      this.bytes += a.byteLength;
    }
  }

  get heldBytes(): number {
    return this.bytes;
  }
}
