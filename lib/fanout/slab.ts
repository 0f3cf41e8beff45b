/** Where a slab's bytes are counted: the process-wide memory budget, shared Buffers once. */
export interface MemoryAccount {
  hold(bytes: number): void;
  release(bytes: number): void;
}

/**
 * One turn's messages in one encoding (the stream bytes, or WebSocket frames), copied once, back to back:
 * message `i` is `buffer[offsets[i]..offsets[i + 1])`. Every receiver's share of the turn is sliced from it,
 * and a receiver that is behind queues ranges of it, never copies. While a queue holds a range of it, it
 * is counted once in the memory budget.
 */
export class Slab {
  /** Queue entries that hold a range of it. */
  private refs = 0;

  /**
   * @param buffer the messages back to back
   * @param offsets `count + 1` boundaries, from 0 to `buffer.length`
   */
  constructor(
    readonly buffer: Buffer,
    readonly offsets: readonly number[],
  ) {}

  /** Messages in it. */
  get count(): number {
    return this.offsets.length - 1;
  }

  /** Bytes of messages `first..last` (exclusive). */
  bytes(first: number, last: number): number {
    return this.offsets[last] - this.offsets[first];
  }

  /** Messages `first..last` as one view (the buffer itself when that is all of it). */
  view(first: number, last: number): Buffer {
    if (first === 0 && last === this.offsets.length - 1) return this.buffer;
    return this.buffer.subarray(this.offsets[first], this.offsets[last]);
  }

  /** @internal A queue entry took a range of it. */
  retain(account: MemoryAccount): void {
    if (this.refs === 0) account.hold(this.buffer.length);
    this.refs += 1;
  }

  /** @internal A queue entry let go of its range. */
  release(account: MemoryAccount): void {
    this.refs -= 1;
    if (this.refs === 0) account.release(this.buffer.length);
  }
}

/**
 * Builds the slab of `messages` (null for none). One message is used as it is; more are copied once.
 */
export function slabOf(messages: readonly Buffer[]): Slab {
  const count = messages.length;
  const offsets = new Array<number>(count + 1);
  offsets[0] = 0;
  for (let i = 0; i < count; i += 1) offsets[i + 1] = offsets[i] + messages[i].length;
  const buffer = count === 1 ? messages[0] : Buffer.concat(messages, offsets[count]);
  return new Slab(buffer, offsets);
}
