import type { MemoryAccount, Slab } from './slab';

/**
 * What one queue entry costs beyond its bytes (its slots in the queue's arrays and the view made to write it):
 * counted against the bounds, so that a flood of tiny messages is bounded by memory, not by payload bytes.
 */
export const ENTRY_OVERHEAD = 64;

/**
 * What {@link OutboundQueue.take} moved out: views to write, their bytes and whole messages, and the memory
 * they hold, now the taker's to release once written: one reference to each slab in `slabs`, and `owns` bytes
 * of own buffers.
 */
export interface Taken {
  readonly views: Buffer[];
  readonly slabs: Slab[];
  bytes: number;
  messages: number;
  owns: number;
}

/** An empty {@link Taken} to fill. */
export function taken(): Taken {
  return { views: [], slabs: [], bytes: 0, messages: 0, owns: 0 };
}

/**
 * The messages one receiver is owed and has not been handed yet, oldest first: ranges of shared turn slabs
 * (a lagging receiver holds one entry per turn, not one per message) and buffers of its own (direct sends,
 * a forward filter's replacement). Entries are taken and dropped in whole messages only, so what reaches the
 * socket is never a message cut in two. Pure: no sockets, no timers.
 */
export class OutboundQueue {
  private slabs: (Slab | null)[] = [];
  private buffers: (Buffer | null)[] = [];
  private firsts: number[] = [];
  private lasts: number[] = [];
  private head = 0;
  private payload = 0;

  constructor(private readonly account: MemoryAccount) {}

  /** Payload bytes queued. */
  get bytes(): number {
    return this.payload;
  }

  /** Entries queued. */
  get length(): number {
    return this.slabs.length - this.head;
  }

  /** What the queue costs against `maxQueuedBytes`: its bytes plus {@link ENTRY_OVERHEAD} per entry. */
  get cost(): number {
    return this.payload + this.length * ENTRY_OVERHEAD;
  }

  /** Queues messages `first..last` (exclusive) of `slab`. */
  pushRange(slab: Slab, first: number, last: number): void {
    if (last <= first) return;
    const tail = this.slabs.length - 1;
    // A range that continues the last one (the next turn's share of the same slab) extends it.
    if (tail >= this.head && this.slabs[tail] === slab && this.lasts[tail] === first) {
      this.lasts[tail] = last;
    } else {
      slab.retain(this.account);
      this.slabs.push(slab);
      this.buffers.push(null);
      this.firsts.push(first);
      this.lasts.push(last);
    }
    this.payload += slab.bytes(first, last);
  }

  /** Queues one message of this receiver's own. */
  pushBuffer(message: Buffer): void {
    this.account.hold(message.length);
    this.slabs.push(null);
    this.buffers.push(message);
    this.firsts.push(0);
    this.lasts.push(1);
    this.payload += message.length;
  }

  /**
   * Moves whole messages from the head into `into`, up to `max` bytes (at least one message when there is
   * one, however large).
   */
  take(max: number, into: Taken): void {
    const slabs = this.slabs;
    while (this.head < slabs.length && into.bytes < max) {
      const at = this.head;
      const slab = slabs[at];
      if (slab === null) {
        const message = this.buffers[at] as Buffer;
        if (into.bytes > 0 && into.bytes + message.length > max) break;
        into.views.push(message);
        into.bytes += message.length;
        into.messages += 1;
        into.owns += message.length;
        this.payload -= message.length;
        this.buffers[at] = null;
        this.head += 1;
        continue;
      }
      const first = this.firsts[at];
      const last = this.lasts[at];
      let end = last;
      const room = max - into.bytes;
      if (slab.bytes(first, last) > room) {
        end = first + 1;
        while (end < last && slab.bytes(first, end + 1) <= room) end += 1;
        if (into.bytes > 0 && slab.bytes(first, end) > room) break;
      }
      const bytes = slab.bytes(first, end);
      into.views.push(slab.view(first, end));
      into.bytes += bytes;
      into.messages += end - first;
      this.payload -= bytes;
      if (end < last) {
        // The entry stays, with its reference: the taker gets one of its own.
        slab.retain(this.account);
        into.slabs.push(slab);
        this.firsts[at] = end;
        break;
      }
      into.slabs.push(slab); // the entry's reference goes with the views
      slabs[at] = null;
      this.head += 1;
    }
    this.compact();
  }

  /**
   * Drops the oldest whole messages until at least `cost` (bytes plus entry overhead) is freed or the queue
   * is empty.
   * @returns how many messages it dropped
   */
  dropOldest(cost: number): number {
    let freed = 0;
    let dropped = 0;
    const slabs = this.slabs;
    while (this.head < slabs.length && freed < cost) {
      const at = this.head;
      const slab = slabs[at];
      if (slab === null) {
        const message = this.buffers[at] as Buffer;
        freed += message.length + ENTRY_OVERHEAD;
        this.payload -= message.length;
        this.account.release(message.length);
        this.buffers[at] = null;
        this.head += 1;
        dropped += 1;
        continue;
      }
      let first = this.firsts[at];
      const last = this.lasts[at];
      const whole = slab.bytes(first, last);
      if (freed + whole < cost) {
        // The whole range goes: dropped at once, not message by message (a lagging receiver's turn of 64 B lines
        // is thousands of them).
        freed += whole;
        this.payload -= whole;
        dropped += last - first;
        first = last;
      }
      while (first < last && freed < cost) {
        const bytes = slab.bytes(first, first + 1);
        freed += bytes;
        this.payload -= bytes;
        first += 1;
        dropped += 1;
      }
      if (first < last) {
        this.firsts[at] = first;
        break;
      }
      freed += ENTRY_OVERHEAD;
      slab.release(this.account);
      slabs[at] = null;
      this.head += 1;
    }
    this.compact();
    return dropped;
  }

  /** Drops everything (the receiver is going away). */
  clear(): void {
    for (let at = this.head; at < this.slabs.length; at += 1) {
      const slab = this.slabs[at];
      if (slab !== null) slab.release(this.account);
      else this.account.release((this.buffers[at] as Buffer).length);
    }
    this.slabs = [];
    this.buffers = [];
    this.firsts = [];
    this.lasts = [];
    this.head = 0;
    this.payload = 0;
  }

  /** Releases the slots before `head` once the queue is empty, or once they are over half of it. */
  private compact(): void {
    const head = this.head;
    if (head === this.slabs.length) {
      this.slabs.length = 0;
      this.buffers.length = 0;
      this.firsts.length = 0;
      this.lasts.length = 0;
      this.head = 0;
    } else if (head > 64 && head * 2 > this.slabs.length) {
      this.slabs.splice(0, head);
      this.buffers.splice(0, head);
      this.firsts.splice(0, head);
      this.lasts.splice(0, head);
      this.head = 0;
    }
  }
}
