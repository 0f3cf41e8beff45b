import type { Settings } from '../options';
import type { Connection } from '../transport/connection';
import { ENTRY_OVERHEAD, OutboundQueue, taken as emptyTaken, type Taken } from './outbound-queue';
import { Share } from './share';
import type { MemoryAccount, Slab } from './slab';

/**
 * A coarse clock, moved on once per fan-out and per flow-control check: what a write stamps on its receiver
 * without a clock read per write.
 */
export const clock = { now: Date.now() };

/** How fast a receiver's typical gap between completions fades once its gaps get shorter. */
const GAP_HALF_LIFE_MS = 10_000;
/** How long after it began lagging a receiver that still reads may queue up to four times `maxQueuedBytes`. */
const LAG_PROBATION_MS = 1000;
/** How many times `maxQueuedBytes` such a receiver may queue then. */
const LAG_ROOM = 4;

/** A share is written at once while less than this is still on its way to the kernel. */
export const DIRECT_LIMIT = 64 * 1024;
/** Largest write made from a queue. */
const WRITE_MAX = 256 * 1024;

/** What an outbound half needs from its session and the flow control. */
export interface OutboundOwner {
  readonly settings: Readonly<Settings>;
  readonly account: MemoryAccount;
  /** Its backlog passed `highWaterMark`. */
  congested(): void;
  /** Its backlog fell to half of `highWaterMark` after congestion, lagging or drops. */
  relieved(): void;
  /** It has data waiting (queued or in flight) and had none: the send timeout watches it. */
  backlogged(): void;
  /** A write completed while it was behind. */
  progressed(): void;
  /** A share would push it past `maxQueuedBytes`; `dropped` messages were dropped under a drop policy. */
  overflowed(dropped: number): void;
  /** Counts what was handed to the connection. */
  wrote(bytes: number, messages: number): void;
  /** Everything queued is written and a polite close was asked for. */
  flushed(): void;
}

/** What one write in flight holds, for the memory budget: a reference to each of its slabs, own bytes. */
interface Flight {
  readonly bytes: number;
  readonly slabs: readonly Slab[];
  readonly owns: number;
}

const NO_SLABS: readonly Slab[] = [];
/** Scratch share for one own message (used synchronously, so one serves every client). */
const OWN = new Share();

/**
 * The outbound half of one client: what it is owed, and how it is written. A receiver that keeps up is
 * written its share of each turn at once (slices of the turn's slab, one system call); one that is behind
 * queues ranges of the slabs and is written from its queue as its connection takes bytes. Progress is the
 * kernel taking bytes (a write completing), never a 'drain' event.
 */
export class Outbound {
  /** The turn log it receives from (its number; -1 when not a member) and from which message on. */
  turnSeq = -1;
  turnFrom = 0;
  /** Above `highWaterMark`, and not yet lagging. */
  congested = false;
  /** Held senders back too long: senders no longer wait for it until it drains to half the mark. */
  lagging = false;
  /** When it last began lagging. */
  laggedAt = 0;
  /** Time it was behind, fading by half each second from `behindAt`, and when it last made it a slow reader. */
  behindMs = 0;
  behindAt = 0;
  slowAt = 0;
  /** In a drop episode: reported once until it recovers. */
  dropping = false;
  /** Its lagging was reported in this congestion episode. */
  lagReported = false;
  /** Ms it may still hold senders back in all (earned back while it keeps up); -1 until first congested. */
  holdBudget = -1;
  /** When it became congested, and when it last drained below half the mark. */
  congestedSince = 0;
  relievedAt = 0;
  /** When a write last completed, or its backlog began: what the stall and send timeouts measure from. */
  progressAt = 0;
  /** A typical time between completed writes while it is behind (the kernel wakes writers in steps). */
  typicalGap = 0;
  /** When a write last completed while it was congested: it showed it reads while behind. */
  provenAt = 0;
  /** Bytes handed to its connection in all (what its kernel took is this less what is still pending). */
  writtenBytes = 0;
  /** When `typicalGap` was last updated. */
  private gapAt = 0;
  /** When it was last written to: a receiver that gets nothing is neither keeping up nor behind. */
  lastWriteAt = 0;
  /** A polite close is waiting for the queue to empty. */
  endWhenFlushed = false;
  /** Messages dropped for it under a drop policy. */
  drops = 0;

  private queue: OutboundQueue | null = null;
  private flights: Flight[] | null = null;
  private flightBytes = 0;

  constructor(
    private readonly connection: Connection,
    private readonly owner: OutboundOwner,
  ) {}

  /** Where its memory is counted. */
  get account(): MemoryAccount {
    return this.owner.account;
  }

  /** What `maxQueuedBytes` bounds: the queue (with its entry overhead) plus what the kernel has not taken. */
  get backlog(): number {
    return this.queuedBytes + this.connection.pending;
  }

  /** Bytes its kernel took in all: past what a kernel holds for a client that never reads, it reads. */
  get takenBytes(): number {
    return this.writtenBytes - this.connection.pending;
  }

  /** Queued bytes not yet handed to the connection. */
  get queuedBytes(): number {
    return this.queue === null ? 0 : this.queue.cost;
  }

  /** Bytes it holds against the memory budget: its queue and its writes in flight. */
  get heldBytes(): number {
    return this.queuedBytes + this.flightBytes;
  }

  /** True while nothing waits in its queue. */
  get idle(): boolean {
    return this.queue === null || this.queue.length === 0;
  }

  /**
   * Takes its share of a turn: written at once when it keeps up (its queue is empty and little is in flight),
   * else queued as ranges of `slab`, as far as `maxQueuedBytes` and the slow-consumer policy allow.
   */
  accept(share: Share, slab: Slab | null, scratch: Buffer[]): void {
    if (share.count === 0) return;
    const bytes = share.bytes(slab);
    const connection = this.connection;
    const pending = connection.pending;
    if (
      this.idle &&
      pending < DIRECT_LIMIT &&
      connection.writable &&
      pending + bytes + share.count * ENTRY_OVERHEAD <= this.owner.settings.maxQueuedBytes
    ) {
      let owns = 0;
      for (let i = 0; i < share.count; i += 1) {
        const own = share.owns[i];
        if (own !== null) owns += own.length;
        scratch.push(own !== null ? own : (slab as Slab).view(share.firsts[i], share.lasts[i]));
      }
      this.write(scratch, bytes, share.messages);
      scratch.length = 0;
      // In flight: it now holds a reference to the slab (when it took part of it) and its own bytes.
      if (connection.pending > 0)
        this.hold(bytes, slab !== null && owns < bytes ? [retained(slab, this)] : NO_SLABS, owns);
      return;
    }
    this.enqueue(share, slab, bytes, true);
  }

  /**
   * Queues one message of its own (a direct send), already in its connection's codec, to be written with
   * whatever else it gets this turn (the caller has it flushed at the end of the turn).
   * @returns false when the slow-consumer policy dropped it (or is disconnecting the client)
   */
  queueOwn(message: Buffer): boolean {
    const share = OWN;
    share.reset();
    share.own(message);
    const lost = this.enqueue(share, null, message.length, false);
    share.clear();
    return lost === 0;
  }

  /** A write completed. */
  onWritten(now: number): void {
    if (this.flights !== null) this.land();
    if (this.congested || this.lagging) {
      // The kernel wakes a writer in steps: a long gap, then a burst of completions. The typical gap keeps the
      // long ones, fading with time (half in 10 s), not with each completion of a burst.
      const gap = now - this.progressAt;
      const faded = this.typicalGap * 0.5 ** ((now - this.gapAt) / GAP_HALF_LIFE_MS);
      this.typicalGap = Math.max(gap, faded);
      this.gapAt = now;
      this.provenAt = now;
    }
    this.progressAt = now;
    if (this.congested || this.lagging) this.owner.progressed();
    this.pump();
  }

  /** Writes from the queue while the connection takes bytes. */
  pump(): void {
    const queue = this.queue;
    const connection = this.connection;
    if (queue !== null && queue.length > 0) {
      const taken: Taken = emptyTaken();
      while (queue.length > 0 && connection.pending < DIRECT_LIMIT && connection.writable) {
        queue.take(WRITE_MAX, taken);
        this.write(taken.views, taken.bytes, taken.messages);
        if (connection.pending > 0) {
          this.hold(taken.bytes, taken.slabs.slice(), taken.owns, true);
        } else {
          this.releaseFlight(taken);
        }
        taken.views.length = 0;
        taken.slabs.length = 0;
        taken.bytes = 0;
        taken.messages = 0;
        taken.owns = 0;
      }
    }
    this.afterProgress();
  }

  /** Drops what is queued (the connection is going away, or the memory budget asks). */
  clear(): number {
    const queue = this.queue;
    if (queue === null) return 0;
    const dropped = queue.dropOldest(Number.POSITIVE_INFINITY);
    this.queue = null;
    return dropped;
  }

  /** Drops queued messages, oldest first, until `cost` is freed; the count dropped. */
  dropOldest(cost: number): number {
    return this.queue === null ? 0 : this.queue.dropOldest(cost);
  }

  /** The connection closed: nothing it holds is needed now. */
  release(): void {
    this.clear();
    const flights = this.flights;
    this.flights = null;
    this.flightBytes = 0;
    if (flights !== null) for (const flight of flights) this.releaseFlight(flight);
  }

  /** Checks for relief, and ends the connection once a polite close has nothing left to send. */
  afterProgress(): void {
    const backlog = this.backlog;
    if (this.endWhenFlushed && this.idle) {
      this.endWhenFlushed = false;
      this.owner.flushed();
      return;
    }
    if ((this.congested || this.lagging || this.dropping) && backlog <= this.owner.settings.highWaterMark / 2) {
      this.dropping = false;
      this.owner.relieved();
    }
  }

  private write(views: Buffer[], bytes: number, messages: number): void {
    const connection = this.connection;
    const before = connection.pending;
    connection.write(views);
    this.writtenBytes += bytes;
    this.lastWriteAt = clock.now;
    this.owner.wrote(bytes, messages);
    if (connection.pending === 0) return; // the kernel took it all at once
    if (before === 0 && this.idle) {
      this.progressAt = Date.now();
      this.owner.backlogged();
    }
    if (connection.pending > this.owner.settings.highWaterMark && !this.congested && !this.lagging) {
      this.owner.congested();
    }
  }

  /**
   * Keeps a write the kernel has not taken yet in the memory budget until it completes: its slabs by
   * reference (counted once however many connections hold them), its own bytes. `held` says the own bytes
   * are counted already (they come from the queue).
   */
  private hold(bytes: number, slabs: readonly Slab[], owns: number, held = false): void {
    if (owns > 0 && !held) this.owner.account.hold(owns);
    (this.flights ??= []).push({ bytes, slabs, owns });
    this.flightBytes += bytes;
  }

  /** Releases the writes that completed: those beyond what the connection still holds. */
  private land(): void {
    const flights = this.flights as Flight[];
    const pending = this.connection.pending;
    while (flights.length > 0 && this.flightBytes > pending) {
      const flight = flights.shift() as Flight;
      this.flightBytes -= flight.bytes;
      this.releaseFlight(flight);
    }
    if (flights.length === 0) this.flights = null;
  }

  private releaseFlight(flight: Flight): void {
    const account = this.owner.account;
    for (const slab of flight.slabs) slab.release(account);
    if (flight.owns > 0) account.release(flight.owns);
  }

  /**
   * What its backlog may reach now: `maxQueuedBytes`, or four times that for a moment after it began lagging
   * while it still reads: senders held for it are let go then and their kernels' backlog (which grows with the
   * hold: 13-33 MB after holds of 1-10 s here) lands on it at once, while the others are only now tested at the
   * senders' pace (when they fall behind too, the readers behind are a majority after all, and it holds senders
   * again). The process-wide memory budget still applies.
   */
  private queueLimit(max: number): number {
    const now = Date.now();
    return this.lagging && now - this.laggedAt <= LAG_PROBATION_MS && now - this.progressAt <= LAG_PROBATION_MS
      ? LAG_ROOM * max
      : max;
  }

  /**
   * Queues a share that cannot be written now, applying the slow-consumer policy past `maxQueuedBytes`.
   * @returns how many of the share's own messages were not queued (all of them when the policy disconnects)
   */
  private enqueue(share: Share, slab: Slab | null, bytes: number, write: boolean): number {
    const settings = this.owner.settings;
    const queue = (this.queue ??= new OutboundQueue(this.owner.account));
    const wasIdle = queue.length === 0 && this.connection.pending === 0;
    const cost = bytes + share.count * ENTRY_OVERHEAD;
    const total = this.backlog + cost;
    const limit = total <= settings.maxQueuedBytes ? settings.maxQueuedBytes : this.queueLimit(settings.maxQueuedBytes);
    let dropped = 0;
    let lost = 0;
    if (total <= limit) {
      pushShare(queue, share, slab, 0, share.count);
    } else if (settings.slowConsumer === 'disconnect') {
      this.owner.overflowed(0);
      return share.messages;
    } else if (settings.slowConsumer === 'drop-oldest') {
      // Oldest first: what is queued (never what the kernel holds), then the share's own oldest messages.
      const excess = total - limit;
      dropped += queue.dropOldest(excess);
      lost = pushNewest(queue, share, slab, limit - this.backlog);
      dropped += lost;
    } else {
      lost = pushOldest(queue, share, slab, limit - this.backlog);
      dropped += lost;
    }
    if (wasIdle && queue.length > 0) {
      this.progressAt = Date.now();
      this.owner.backlogged();
    }
    if (this.backlog > settings.highWaterMark && !this.congested && !this.lagging) this.owner.congested();
    if (dropped > 0) {
      this.drops += dropped;
      this.owner.overflowed(dropped);
    }
    if (write) this.pump();
    return lost;
  }
}

/** Takes a reference to a slab for a write in flight. */
function retained(slab: Slab, outbound: Outbound): Slab {
  slab.retain(outbound.account);
  return slab;
}

/** Queues pieces `from..to` of a share. */
function pushShare(queue: OutboundQueue, share: Share, slab: Slab | null, from: number, to: number): void {
  for (let i = from; i < to; i += 1) {
    const own = share.owns[i];
    if (own !== null) queue.pushBuffer(own);
    else queue.pushRange(slab as Slab, share.firsts[i], share.lasts[i]);
  }
}

/** Queues the share's oldest messages that fit in `room` (cost); the count of those that did not. */
function pushOldest(queue: OutboundQueue, share: Share, slab: Slab | null, room: number): number {
  let dropped = 0;
  for (let i = 0; i < share.count; i += 1) {
    const own = share.owns[i];
    if (own !== null) {
      if (own.length + ENTRY_OVERHEAD <= room) {
        queue.pushBuffer(own);
        room -= own.length + ENTRY_OVERHEAD;
      } else dropped += 1;
      continue;
    }
    const first = share.firsts[i];
    const last = share.lasts[i];
    let end = first;
    while (end < last && (slab as Slab).bytes(first, end + 1) + ENTRY_OVERHEAD <= room) end += 1;
    if (end > first) {
      queue.pushRange(slab as Slab, first, end);
      room -= (slab as Slab).bytes(first, end) + ENTRY_OVERHEAD;
    }
    dropped += last - end;
  }
  return dropped;
}

/** Queues the share's newest messages that fit in `room` (cost), in order; the count of those that did not. */
function pushNewest(queue: OutboundQueue, share: Share, slab: Slab | null, room: number): number {
  // Walk back from the newest message to find where the part that fits begins.
  let piece = share.count;
  let start = 0; // first message kept within `piece` when it is a range
  let kept = 0;
  while (piece > 0) {
    const i = piece - 1;
    const own = share.owns[i];
    if (own !== null) {
      if (own.length + ENTRY_OVERHEAD > room) break;
      room -= own.length + ENTRY_OVERHEAD;
      kept += 1;
      piece -= 1;
      continue;
    }
    const first = share.firsts[i];
    const last = share.lasts[i];
    let begin = last;
    while (begin > first && (slab as Slab).bytes(begin - 1, last) + ENTRY_OVERHEAD <= room) begin -= 1;
    kept += last - begin;
    if (begin > first) {
      start = begin;
      room = 0;
      break;
    }
    room -= (slab as Slab).bytes(first, last) + ENTRY_OVERHEAD;
    piece -= 1;
  }
  if (piece > 0 && start > 0) {
    queue.pushRange(slab as Slab, start, share.lasts[piece - 1]);
  }
  pushShare(queue, share, slab, piece, share.count);
  return share.messages - kept;
}
