import type { Slab } from './slab';

/**
 * One receiver's share of a turn, as pieces in order: ranges of the turn's slab (runs of messages it gets)
 * and buffers of its own (a forward filter's replacement, a catch-up message). One scratch instance is reused
 * for every receiver of a fan-out, so building a share allocates nothing.
 */
export class Share {
  /** Per piece: first and last (exclusive) message of a slab range, or -1 for an own buffer. */
  readonly firsts: number[] = [];
  readonly lasts: number[] = [];
  /** Per piece: the own buffer, or null for a slab range. */
  readonly owns: (Buffer | null)[] = [];
  /** Pieces in it. */
  count = 0;
  /** Messages in it. */
  messages = 0;

  reset(): void {
    this.count = 0;
    this.messages = 0;
  }

  /** Adds messages `first..last` of the slab. */
  range(first: number, last: number): void {
    const at = this.count;
    this.firsts[at] = first;
    this.lasts[at] = last;
    this.owns[at] = null;
    this.count = at + 1;
    this.messages += last - first;
  }

  /** Adds one message of the receiver's own. */
  own(message: Buffer): void {
    const at = this.count;
    this.firsts[at] = -1;
    this.lasts[at] = -1;
    this.owns[at] = message;
    this.count = at + 1;
    this.messages += 1;
  }

  /** Bytes in it, slab ranges measured in `slab`. */
  bytes(slab: Slab | null): number {
    let bytes = 0;
    for (let i = 0; i < this.count; i += 1) {
      const own = this.owns[i];
      bytes += own !== null ? own.length : (slab as Slab).bytes(this.firsts[i], this.lasts[i]);
    }
    return bytes;
  }

  /** Drops references to own buffers so the scratch keeps nothing alive between fan-outs. */
  clear(): void {
    this.owns.fill(null, 0, this.count);
    this.reset();
  }
}
