import type { Socket } from 'node:net';
import type { Decoder, MessageSink } from './framing';
import type { Settings } from './options';

/** Why a client left. Exit filters and the `exit` event receive one of these. */
export type ExitReason =
  /** The client closed its side (EOF). */
  | 'eof'
  /** The connection was reset (ECONNRESET, EPIPE). */
  | 'reset'
  /** Another socket error; the `exit` event carries it. */
  | 'error'
  /** Server code called `client.disconnect()`. */
  | 'kicked'
  /** Its outbound backlog passed `maxQueuedBytes` under the `disconnect` policy. */
  | 'slow-consumer'
  /** It sent a line longer than `maxMessageBytes` under the `disconnect` policy. */
  | 'line-too-long'
  /** It passed its rate limit under the `disconnect` action. */
  | 'rate-limit'
  /** Nothing was read or written for `idleTimeout` ms. */
  | 'idle'
  /** The multiplexer was destroyed. */
  | 'destroy';

/** What a client needs from the server that owns it. */
export interface ClientOwner {
  readonly settings: Readonly<Settings>;
  /** Called once per client per event-loop turn in which it got data to send. */
  scheduleFlush(client: Client<object>): void;
  /** The client's backlog passed `highWaterMark`. */
  congested(client: Client<object>): void;
  /** The client's backlog fell to half of `highWaterMark`. */
  relieved(client: Client<object>): void;
  /** A message would push the backlog past `maxQueuedBytes`; `dropped` messages were dropped for it. */
  overflowed(client: Client<object>, dropped: number): void;
  /** The client started to leave: take it out of the broadcast. */
  leaving(client: Client<object>): void;
  /** Counts what was handed to the socket. */
  wrote(bytes: number, messages: number): void;
  /** Queues the broadcasts of this turn not yet given to the client: before a direct send, or as it leaves. */
  catchUp(client: Client<object>): void;
}

/** Messages of at most this size are copied into one buffer per write instead of being sent one by one. */
const COALESCE_ITEM_BYTES = 2048;
/** Upper bound of one coalesced write. */
const COALESCE_WRITE_BYTES = 64 * 1024;
/**
 * What one queued message costs beyond its bytes (the Buffer view and the queue slot, measured at ~110 bytes):
 * counted against the bounds, so that a flood of tiny messages is bounded by memory, not by payload bytes.
 */
export const MESSAGE_OVERHEAD = 128;
/** How long a graceful close may wait for the peer to take what is queued before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000;

/**
 * One connected client: its socket, where it comes from, per-client state, and its outbound queue.
 *
 * Broadcasts reach it once per event-loop turn as slices of the turn's shared buffer (see `takeTurn`);
 * when it is behind, messages are queued (the same Buffer for every receiver, never copied per client)
 * and written as it drains. The queue plus what the socket still holds is bounded by
 * `maxQueuedBytes`.
 */
export class Client<S extends object = Record<string, unknown>> {
  /**
   * Per-client state for server code (a chat nick, a room). Starts empty, so every field is optional
   * (`Partial<S>`) even after a hook has set it: check before use.
   */
  state: Partial<S> = {};
  /** When the connection was accepted (ms since the epoch). */
  readonly connectedAt = Date.now();
  /** Bytes read from the client. */
  bytesIn = 0;
  /** Messages the client sent that were broadcast. */
  messagesIn = 0;
  /** Messages dropped for this client under a `drop-*` slow-consumer policy. */
  drops = 0;

  /** @internal Decoder of the configured framing. */
  decoder: Decoder | null = null;
  /** @internal Bound sink of this client's messages. */
  sink: MessageSink | null = null;
  /** @internal Admitted by the access filters and part of the broadcast. */
  member = false;
  /** @internal No longer accepts messages; set when it starts to leave. */
  closing = false;
  /** @internal Exit hooks have run. */
  exited = false;
  /** @internal First reason given for its departure. */
  exitReason: ExitReason | null = null;
  /** @internal Error that made it leave, if any. */
  exitError: Error | undefined = undefined;
  /** @internal Reasons reading from the socket is paused (bit set). */
  pauseReasons = 0;
  /** @internal Above `highWaterMark` and holding senders back. */
  congested = false;
  /** @internal Was congested longer than `stallTimeout`: no longer holds senders back. */
  lagging = false;
  /** @internal When it became congested. */
  congestedSince = 0;
  /** @internal In a drop episode: reported once until it recovers. */
  dropping = false;
  /** @internal Inbound bytes waiting for an access decision or an async filter. */
  pendingBytes = 0;
  /** @internal What its messages wait for (bit set: access decision, async filter, rate limit); they go to the inbox meanwhile. */
  holds = 0;
  /** @internal Messages waiting while held, as payload, wire pairs, from `inboxHead` on. */
  inbox: Buffer[] = [];
  /** @internal */
  inboxHead = 0;
  /** @internal It closed while messages of its own were still held: exit hooks wait for them. */
  exitPending = false;
  /** @internal It sent EOF before its access decision. */
  endedEarly = false;
  /** @internal 'drain' events seen, and the count at the last congestion check: progress of a reader. */
  drains = 0;
  /** @internal */
  drainsAtCheck = 0;
  /** @internal Rate-limit token buckets and when they were last filled. */
  rateStamp = 0;
  /** @internal */
  messageTokens = 0;
  /** @internal */
  byteTokens = 0;
  /** @internal Chunks read while senders were held, not yet framed. */
  stash: Buffer[] | null = null;
  /** @internal Ends a rate-limit hold. */
  rateTimer: NodeJS.Timeout | null = null;
  /** @internal How long (ms) it may still hold senders back while congested; -1 until first congested. */
  holdBudget = -1;
  /** @internal When it last drained below half of `highWaterMark`. */
  relievedAt = 0;
  /** @internal The turn's log it receives from (its sequence number; -1 when not a member) and from where. */
  turnSeq = -1;
  /** @internal */
  turnFrom = 0;

  private readonly queue: Buffer[] = [];
  private head = 0;
  private queued = 0;
  /** What the socket held after our last write: an upper bound, since it only shrinks until we write again. */
  private socketBacklog = 0;
  private flushScheduled = false;
  private waitingDrain = false;
  private endWhenFlushed = false;
  private closeTimer: NodeJS.Timeout | null = null;

  /**
   * @param id unique within its multiplexer, increasing
   * @param socket the connection
   * @param address the peer's IP address (IPv4-mapped IPv6 addresses are given as IPv4), or `'local'`
   * @param port the peer's port (0 for Unix sockets)
   */
  constructor(
    readonly id: number,
    readonly socket: Socket,
    readonly address: string,
    readonly port: number,
    private readonly owner: ClientOwner,
  ) {}

  /** Bytes waiting to be sent to the client (its queue, each message counted with its overhead, plus what
   * the socket has not yet sent): what `maxQueuedBytes` bounds. */
  get queuedBytes(): number {
    return this.queued + this.socket.writableLength;
  }

  /** True while the client is connected and part of the broadcast. */
  get active(): boolean {
    return this.member && !this.closing;
  }

  /**
   * Queues data for this client alone. Strings are sent as UTF-8.
   * @returns false when the client is leaving or the message was dropped by the slow-consumer policy
   */
  send(data: Buffer | string): boolean {
    this.owner.catchUp(this); // broadcasts made before this message go first
    return this.enqueue(typeof data === 'string' ? Buffer.from(data) : data);
  }

  /**
   * Disconnects the client: it leaves the broadcast at once, gets what is already queued for it, then the
   * connection closes. Exit filters and the `exit` event run with `reason`.
   */
  disconnect(reason: ExitReason = 'kicked'): void {
    this.leave(reason, undefined, true);
  }

  /** `client 3 (127.0.0.1:50412)`, for logs. */
  toString(): string {
    return `client ${this.id} (${this.address}:${this.port})`;
  }

  /** @internal Queues a message; the hot path of every delivery. */
  enqueue(message: Buffer): boolean {
    if (this.closing) return false;
    const settings = this.owner.settings;
    const size = message.length + MESSAGE_OVERHEAD;
    const total = this.queued + this.socketBacklog + size;
    if (total <= settings.maxQueuedBytes) {
      this.push(message, size, total);
      return true;
    }
    // Past the bound the slow-consumer policy applies. It is reported (a 'limit' listener may run) only once the
    // queue is as the policy leaves it, so that what the listener queues for this client comes after this message.
    const excess = total - settings.maxQueuedBytes;
    const policy = settings.slowConsumer;
    if (policy === 'disconnect') {
      this.owner.overflowed(this, 0);
      return false;
    }
    // drop-oldest: whole messages only, and only those not yet handed to the socket.
    if (policy === 'drop-oldest' && this.queued >= excess) {
      const dropped = this.dropOldest(excess);
      this.push(message, size, total);
      this.drops += dropped;
      this.owner.overflowed(this, dropped);
      return true;
    }
    this.drops += 1;
    this.owner.overflowed(this, 1);
    return false;
  }

  private push(message: Buffer, size: number, total: number): void {
    this.queue.push(message);
    this.queued += size;
    if (!this.flushScheduled && !this.waitingDrain) {
      this.flushScheduled = true;
      this.owner.scheduleFlush(this);
    }
    if (total > this.owner.settings.highWaterMark && !this.congested && !this.lagging) this.owner.congested(this);
  }

  /**
   * Takes its share of one turn's broadcasts (log number `seq`): `messages[turnFrom..]` except those it is
   * excepted from (`excepts[i] === this`).
   * `shared` holds all of them back to back (message `i` at `offsets[i]`). A client that is keeping up
   * gets slices of `shared` written at once (one write per run of messages, no copy and no queue slot per
   * message); one that is behind, or whose share is too small a part of `shared` to keep it alive, gets
   * the messages queued one by one.
   * @internal
   */
  takeTurn(
    messages: readonly Buffer[],
    excepts: readonly unknown[],
    seq: number,
    shared: Buffer,
    offsets: readonly number[],
  ): void {
    const count = messages.length;
    const from = this.turnFrom;
    let bytes = offsets[count] - offsets[from];
    let taken = count - from;
    for (let i = from; i < count; i += 1) {
      if (excepts[i] === this) {
        bytes -= messages[i].length;
        taken -= 1;
      }
    }
    if (taken === 0) return;
    const socket = this.socket;
    const settings = this.owner.settings;
    const backlog = socket.writableLength;
    if (
      this.head !== this.queue.length ||
      this.waitingDrain ||
      socket.writableNeedDrain ||
      socket.destroyed ||
      backlog + bytes + (count - from - taken + 1) * MESSAGE_OVERHEAD > settings.maxQueuedBytes || // a slice per run of messages
      bytes * 4 < shared.length
    ) {
      this.queueShare(messages, excepts, seq);
      return;
    }
    this.turnFrom = count;
    const cork = taken < count - from;
    if (cork) socket.cork();
    let start = offsets[from];
    for (let i = from; i < count; i += 1) {
      if (excepts[i] !== this) continue;
      if (offsets[i] > start) socket.write(shared.subarray(start, offsets[i]));
      start = offsets[i + 1];
    }
    const end = offsets[count];
    if (end > start) socket.write(start === 0 && end === shared.length ? shared : shared.subarray(start, end));
    if (cork) socket.uncork();
    this.socketBacklog = socket.writableLength;
    this.owner.wrote(bytes, taken);
    if (this.socketBacklog > settings.highWaterMark && !this.congested && !this.lagging) this.owner.congested(this);
    else this.afterProgress();
  }

  /** @internal Done with log `seq` (unless user code already moved it on): it receives from the next one. */
  finishTurn(seq: number): void {
    if (this.turnSeq !== seq) return;
    this.turnSeq = seq + 1;
    this.turnFrom = 0;
  }

  /**
   * Queues `messages[turnFrom..]` of log `seq`, but those it is excepted from, moving `turnFrom` on with
   * each: a drop runs user code (a 'limit' listener) that may catch this client up or give the log out
   * meanwhile, and then it stops where that left off.
   * @internal
   */
  queueShare(messages: readonly Buffer[], excepts: readonly unknown[], seq: number): void {
    while (this.turnSeq === seq && this.turnFrom < messages.length) {
      const i = this.turnFrom;
      this.turnFrom = i + 1;
      if (excepts[i] !== this) this.enqueue(messages[i]);
    }
  }

  /**
   * Writes what is queued, coalescing small messages into one buffer, until the socket asks us to wait.
   * @internal
   */
  flush(): void {
    this.flushScheduled = false;
    const socket = this.socket;
    if (socket.destroyed) return;
    if (socket.writableNeedDrain) {
      this.waitingDrain = true;
      return;
    }
    const queue = this.queue;
    const count = queue.length;
    let head = this.head;
    let written = 0;
    let writable = true;
    const cork = count - head > 1;
    if (cork) socket.cork();
    while (head < count && writable) {
      let end = head + 1;
      let bytes = queue[head].length;
      if (bytes <= COALESCE_ITEM_BYTES) {
        while (
          end < count &&
          queue[end].length <= COALESCE_ITEM_BYTES &&
          bytes + queue[end].length <= COALESCE_WRITE_BYTES
        ) {
          bytes += queue[end].length;
          end += 1;
        }
      }
      writable = socket.write(end - head === 1 ? queue[head] : concat(queue, head, end, bytes));
      written += bytes;
      head = end;
    }
    if (cork) socket.uncork();
    const messages = head - this.head;
    if (head === count) {
      queue.length = 0;
      this.head = 0;
    } else {
      // Release references to what was written so it can be collected.
      queue.fill(EMPTY, this.head, head);
      this.head = head;
      this.compact();
      this.waitingDrain = true;
    }
    this.queued -= written + messages * MESSAGE_OVERHEAD;
    this.socketBacklog = socket.writableLength;
    this.owner.wrote(written, messages);
    this.afterProgress();
  }

  /** @internal The socket drained: send more. */
  onDrain(): void {
    this.drains += 1;
    this.waitingDrain = false;
    this.socketBacklog = this.socket.writableLength;
    if (this.head < this.queue.length) this.flush();
    else this.afterProgress();
  }

  /**
   * Starts leaving: out of the broadcast at once. A graceful leave sends what is queued first; otherwise the
   * socket is destroyed. The first reason given wins.
   * @internal
   */
  leave(reason: ExitReason, error: Error | undefined, graceful: boolean, graceMs = CLOSE_GRACE_MS): void {
    if (graceful && this.exitReason === null) this.owner.catchUp(this); // it still gets what was broadcast before
    if (this.exitReason === null) {
      this.exitReason = reason;
      this.exitError = error;
      this.owner.leaving(this);
    }
    const socket = this.socket;
    if (!graceful || socket.destroyed || !socket.writable) {
      this.closing = true;
      this.dropQueue();
      socket.destroy();
      return;
    }
    if (this.closing) return;
    this.closing = true;
    this.endWhenFlushed = true;
    this.closeTimer = setTimeout(() => socket.destroy(), graceMs);
    this.closeTimer.unref();
    if (this.head === this.queue.length && !this.waitingDrain) this.endSocket();
  }

  /** @internal The socket closed: release everything. */
  released(): void {
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    // A rate-limit hold with messages still waiting ends as planned: they were sent before it left.
    if (this.rateTimer !== null && this.inbox.length === 0) {
      clearTimeout(this.rateTimer);
      this.rateTimer = null;
    }
    this.dropQueue();
    this.decoder = null;
  }

  /** @internal Forgets the messages it sent that still wait (the server sent it away). */
  dropInbox(): void {
    this.inbox = [];
    this.inboxHead = 0;
    this.pendingBytes = 0;
  }

  /** @internal Releases the processed part of the inbox. */
  compactInbox(): void {
    if (this.inboxHead === this.inbox.length) {
      this.inbox.length = 0;
      this.inboxHead = 0;
    } else if (this.inboxHead > 1024 && this.inboxHead * 2 > this.inbox.length) {
      this.inbox.splice(0, this.inboxHead);
      this.inboxHead = 0;
    }
  }

  /** Drops queued messages (the socket is going away). */
  private dropQueue(): void {
    this.queue.length = 0;
    this.head = 0;
    this.queued = 0;
  }

  private afterProgress(): void {
    if (this.endWhenFlushed && this.head === this.queue.length) {
      this.endSocket();
      return;
    }
    if (this.congested || this.lagging || this.dropping) {
      if (this.queued + this.socketBacklog <= this.owner.settings.highWaterMark / 2) {
        this.dropping = false;
        this.owner.relieved(this);
      }
    }
  }

  private endSocket(): void {
    this.endWhenFlushed = false;
    const socket = this.socket;
    socket.end();
    if (this.exitReason === 'destroy') {
      // Shutting down: close once everything is handed to the kernel.
      socket.once('finish', () => socket.destroy());
      return;
    }
    // A lingering close: read and discard until the peer closes too (or the grace timer fires), so that a
    // client still sending does not get a reset that would wipe out what we told it last.
    socket.resume();
  }

  /**
   * Drops queued messages, oldest first, until `excess` bytes are free (the queue holds at least that much).
   * @returns how many it dropped
   */
  private dropOldest(excess: number): number {
    let freed = 0;
    let head = this.head;
    while (freed < excess) {
      freed += this.queue[head].length + MESSAGE_OVERHEAD;
      this.queue[head] = EMPTY;
      head += 1;
    }
    const dropped = head - this.head;
    this.head = head;
    this.queued -= freed;
    this.compact(); // a reader that takes nothing never flushes: release the dropped slots here
    return dropped;
  }

  /** Releases the slots before `head` once they are over half of the queue. */
  private compact(): void {
    if (this.head <= 1024 || this.head * 2 <= this.queue.length) return;
    this.queue.splice(0, this.head);
    this.head = 0;
  }
}

const EMPTY = Buffer.alloc(0);

function concat(queue: Buffer[], start: number, end: number, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  let offset = 0;
  for (let i = start; i < end; i += 1) {
    out.set(queue[i], offset);
    offset += queue[i].length;
  }
  return out;
}
