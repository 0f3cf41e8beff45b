import type { Decoder, MessageSink } from '../framing/framing';
import type { Settings } from '../options';
import { type TokenBuckets } from './rate-limiter';

/**
 * What one held message costs beyond its bytes (its Buffer view and the inbox slots): counted against
 * `maxPendingBytes` and the memory budget, so that a flood of tiny messages is bounded by memory.
 */
export const HELD_MESSAGE_OVERHEAD = 128;

/** What a client's messages wait for, as bits: while one is set, what it sends waits in its inbox. */
export const HOLD_ACCESS = 1;
export const HOLD_FILTER = 2;
export const HOLD_RATE = 4;

/** Why reading from a client is paused, as bits. */
export const PAUSE_INPUT = 1; // input waits: the inbox is full, or framed input waits
export const PAUSE_FLOW = 2; // receivers are behind
export const PAUSE_RATE = 4; // its rate limit

/** What the inbound half needs from its session. */
export interface InboundOwner {
  readonly settings: Readonly<Settings>;
  /** Runs the data filters on one message and broadcasts the result; a Promise while an async filter runs. */
  process(payload: Buffer, wire: Buffer): Promise<void> | undefined;
  /** A message grew past `maxMessageBytes`. */
  overflow(bytes: number): void;
  /** Reading pauses (first reason) or resumes (last reason gone). */
  pauseReading(): void;
  resumeReading(): void;
  /** True while receivers are behind: input waits unframed. */
  readonly flowHolding: boolean;
  /** Input is waiting for receivers: the sender is held until they catch up. */
  holdForFlow(): void;
  /** It passed its rate limit (once per throttling episode). */
  throttled(): void;
  /** Its rate limit's action is to disconnect it. */
  rateExceeded(): void;
  /** Memory held for this client's input grew or shrank. */
  heldInput(delta: number): void;
  /** Its stream ended (EOF) and everything it sent was framed. */
  inputEnded(): void;
  /** It left and everything it sent that will go out is out: its exit may run. */
  inputDone(): void;
  /** A partial message began (true) or ended (false): the message timeout watches it. */
  partial(begun: boolean): void;
}

/**
 * The inbound half of one client: bytes in, messages out, in the order sent.
 *
 * Chunks are framed as they arrive, unless they must wait: while receivers are behind (flow control) they
 * wait unframed; while the client's messages are held (its access decision, an async filter, its rate
 * limit) framed messages wait in its inbox, bounded by `maxPendingBytes` in real bytes: framing stops at the
 * bound and what is not framed yet stays as it arrived, while reading pauses, until the inbox drains.
 */
export class Inbound implements MessageSink {
  /** What its messages wait for (bits `HOLD_*`). */
  holds = HOLD_ACCESS;
  /** Why reading is paused (bits `PAUSE_*`). */
  pauses = 0;
  /** Rate-limit buckets, when rate limits are on. */
  rate: TokenBuckets | null = null;

  private unframed: Buffer[] | null = null;
  private unframedBytes = 0;
  /** Held messages as payload, wire pairs, from `inboxHead` on. */
  private inbox: Buffer[] | null = null;
  private inboxHead = 0;
  private inboxCost = 0;
  private decoderHeld = 0;
  private rateTimer: NodeJS.Timeout | null = null;
  /** Saw EOF; framing's end runs once every chunk before it is framed. */
  private ended = false;
  private endFramed = false;
  /** The server sent it away: nothing more it sent goes out. */
  dropped = false;
  /** When the partial message under way began (ms since the epoch). */
  partialSince = 0;
  /** It left on its own: what waits for its rate limit is dropped, the rest still goes out. */
  private departed = false;
  private draining = false;
  private doneReported = false;

  constructor(
    private readonly decoder: Decoder,
    private readonly owner: InboundOwner,
  ) {}

  /** Bytes held for this client's input, as the memory budget counts them. */
  get heldBytes(): number {
    return this.unframedBytes + this.inboxCost + this.decoderHeld;
  }

  /** True while input it sent waits, unframed, only for receivers to catch up. */
  get stashed(): boolean {
    return this.unframed !== null && !this.inboxFull && !this.dropped;
  }

  /** True once nothing it sent waits now and nothing will come. */
  get done(): boolean {
    return (
      (this.dropped || ((this.endFramed || this.departed) && this.unframed === null)) &&
      (this.inbox === null || this.inboxHead === this.inbox.length) &&
      (this.holds & HOLD_FILTER) === 0
    );
  }

  /** A chunk of its byte stream. */
  receive(chunk: Buffer): void {
    if (this.dropped || this.ended) return;
    if (this.unframed !== null || this.owner.flowHolding) {
      this.stash(chunk);
      if (this.owner.flowHolding) this.owner.holdForFlow();
      else this.pause(PAUSE_INPUT);
      return;
    }
    this.frame(chunk);
    if (this.owner.flowHolding && !this.dropped) this.owner.holdForFlow();
  }

  /** Its stream ended (EOF): frames what is left once every earlier chunk is framed. */
  finish(): void {
    if (this.ended || this.dropped) return;
    this.ended = true;
    this.drain();
  }

  /** It was admitted: its messages go out. */
  grant(): void {
    this.holds &= ~HOLD_ACCESS;
    this.drain();
  }

  /** The server sent it away: what it still had waiting is dropped. */
  drop(): void {
    if (this.dropped) return;
    this.dropped = true;
    this.clearRate();
    this.holds &= ~HOLD_RATE;
    this.inbox = null;
    this.inboxHead = 0;
    this.unframed = null;
    this.release(this.heldBytes);
    this.unframedBytes = 0;
    this.inboxCost = 0;
    this.decoderHeld = 0;
    this.owner.partial(false);
    this.check();
  }

  /**
   * It left on its own (EOF, reset, error): what it sent before still goes out, except what waits for its
   * rate limit, which is dropped now.
   */
  depart(): void {
    if (this.departed || this.dropped) return;
    this.departed = true;
    if ((this.holds & HOLD_RATE) !== 0) {
      this.drop();
      return;
    }
    this.drain();
  }

  /** Receivers caught up: frames what waited for them, about `max` bytes at most. Returns the bytes framed. */
  releaseFromFlow(max: number): number {
    const fed = this.feed(max);
    this.check(); // a client that left meanwhile is done once this was the last of it
    return fed;
  }

  /** Reading may resume as far as flow control is concerned. */
  resumeFromFlow(): void {
    this.unpause(PAUSE_FLOW);
  }

  /** Flow control paused it. */
  pauseForFlow(): void {
    this.pause(PAUSE_FLOW);
  }

  /** Stops its timers (the client is gone and nothing it holds will go out). */
  stop(): void {
    this.clearRate();
  }

  // ---------------------------------------------------------------- MessageSink (called by the decoder)

  message(payload: Buffer, wire: Buffer): boolean {
    if (this.dropped) return false;
    if (this.holds === 0 && (this.inbox === null || this.inboxHead === this.inbox.length) && this.mayGo(wire)) {
      this.run(payload, wire);
      return !this.dropped;
    }
    if (this.dropped) return false; // the rate limit disconnected it, or dropped its input
    this.hold(payload, wire);
    return !this.inboxFull;
  }

  overflow(bytes: number): void {
    this.owner.overflow(bytes);
  }

  // ---------------------------------------------------------------- internals

  private get inboxFull(): boolean {
    return this.inboxCost >= this.owner.settings.maxPendingBytes;
  }

  /** Frames one chunk; what the decoder leaves (it stopped at the inbox's bound) waits unframed. */
  private frame(chunk: Buffer): void {
    const decoder = this.decoder;
    const consumed = decoder.write(chunk, this);
    this.trackDecoder();
    if (typeof consumed === 'number' && consumed < chunk.length && !this.dropped) {
      this.stashFront(chunk.subarray(consumed));
      this.pause(PAUSE_INPUT);
    }
  }

  /** Frames waiting input while nothing blocks it, up to `max` bytes; returns the bytes framed. */
  private feed(max: number): number {
    let fed = 0;
    while (this.unframed !== null && fed < max && !this.dropped && !this.inboxFull && !this.owner.flowHolding) {
      const chunk = this.unframed.shift() as Buffer;
      if (this.unframed.length === 0) this.unframed = null;
      this.unframedBytes -= chunk.length;
      this.release(chunk.length);
      fed += chunk.length;
      this.frame(chunk);
    }
    if (this.unframed === null) {
      if (this.ended && !this.endFramed && !this.dropped) this.endOfStream();
      if (!this.inboxFull) this.unpause(PAUSE_INPUT);
    } else if (this.owner.flowHolding && !this.dropped) {
      this.owner.holdForFlow();
    }
    return fed;
  }

  private endOfStream(): void {
    this.endFramed = true;
    this.decoder.end(this);
    this.trackDecoder();
    if (!this.dropped) this.owner.inputEnded();
  }

  /** Processes held messages in order until one is held again, then frames waiting input. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      const inbox = this.inbox;
      while (inbox !== null && this.inboxHead < inbox.length && this.holds === 0 && !this.dropped) {
        const payload = inbox[this.inboxHead];
        const wire = inbox[this.inboxHead + 1];
        if (!this.mayGo(wire)) break;
        inbox[this.inboxHead] = EMPTY;
        inbox[this.inboxHead + 1] = EMPTY;
        this.inboxHead += 2;
        const cost = wire.length + HELD_MESSAGE_OVERHEAD;
        this.inboxCost -= cost;
        this.release(cost);
        this.run(payload, wire);
      }
      this.compactInbox();
      // Framing resumes once the inbox has room for a good part of its bound again.
      if (this.inboxCost <= this.owner.settings.maxPendingBytes / 2) this.feed(Number.POSITIVE_INFINITY);
    } finally {
      this.draining = false;
    }
    this.check();
  }

  /** True when its rate limit lets this message go now; else it is held (or the client goes). */
  private mayGo(wire: Buffer): boolean {
    const rate = this.rate;
    if (rate === null) return true;
    const settings = this.owner.settings;
    const strict = settings.rateLimitAction === 'disconnect';
    const wait = rate.take(wire.length, settings, Date.now(), strict);
    if (wait === 0) return true;
    if (this.departed) {
      // Gone: nobody waits for what it sent beyond its rate.
      this.drop();
      return false;
    }
    if (strict) {
      this.owner.rateExceeded();
      return false;
    }
    this.holds |= HOLD_RATE;
    this.pause(PAUSE_RATE);
    if (!rate.throttled) {
      rate.throttled = true;
      this.owner.throttled();
    }
    this.rateTimer = setTimeout(() => {
      this.rateTimer = null;
      this.holds &= ~HOLD_RATE;
      this.unpause(PAUSE_RATE);
      this.drain();
    }, wait);
    this.rateTimer.unref();
    return false;
  }

  /** Runs one message through the filters; an async one holds the messages after it. */
  private run(payload: Buffer, wire: Buffer): void {
    const pending = this.owner.process(payload, wire);
    if (pending === undefined) return;
    this.holds |= HOLD_FILTER;
    void pending.then(() => {
      this.holds &= ~HOLD_FILTER;
      this.drain();
    });
  }

  private hold(payload: Buffer, wire: Buffer): void {
    if (pinsLargeBuffer(wire)) {
      // Waiting messages must not keep whole read buffers alive: keep a copy of just this one.
      const copy = Buffer.from(wire);
      const offset = payload.byteOffset - wire.byteOffset;
      payload =
        payload.buffer === wire.buffer && offset >= 0 && offset + payload.length <= wire.length
          ? copy.subarray(offset, offset + payload.length)
          : Buffer.from(payload);
      wire = copy;
    }
    (this.inbox ??= []).push(payload, wire);
    const cost = wire.length + HELD_MESSAGE_OVERHEAD;
    this.inboxCost += cost;
    this.owner.heldInput(cost);
    if (this.inboxFull) this.pause(PAUSE_INPUT);
  }

  private stash(chunk: Buffer): void {
    (this.unframed ??= []).push(chunk);
    this.unframedBytes += chunk.length;
    this.owner.heldInput(chunk.length);
  }

  private stashFront(rest: Buffer): void {
    const kept = pinsLargeBuffer(rest) ? Buffer.from(rest) : rest;
    (this.unframed ??= []).unshift(kept);
    this.unframedBytes += kept.length;
    this.owner.heldInput(kept.length);
  }

  private release(bytes: number): void {
    if (bytes !== 0) this.owner.heldInput(-bytes);
  }

  /** Follows the memory the decoder holds for a partial message, and whether one is under way. */
  private trackDecoder(): void {
    const held = this.decoder.heldBytes ?? this.decoder.bufferedBytes;
    if (held !== this.decoderHeld) {
      const was = this.decoderHeld;
      this.owner.heldInput(held - was);
      this.decoderHeld = held;
      if ((was === 0) !== (held === 0)) {
        if (held > 0) this.partialSince = Date.now();
        this.owner.partial(held > 0);
      }
    }
  }

  private compactInbox(): void {
    const inbox = this.inbox;
    if (inbox === null) return;
    if (this.inboxHead === inbox.length) {
      this.inbox = null;
      this.inboxHead = 0;
    } else if (this.inboxHead > 1024 && this.inboxHead * 2 > inbox.length) {
      inbox.splice(0, this.inboxHead);
      this.inboxHead = 0;
    }
  }

  private pause(reason: number): void {
    if (this.pauses === 0) this.owner.pauseReading();
    this.pauses |= reason;
  }

  private unpause(reason: number): void {
    if ((this.pauses & reason) === 0) return;
    this.pauses &= ~reason;
    if (this.pauses === 0) this.owner.resumeReading();
  }

  private clearRate(): void {
    if (this.rateTimer !== null) clearTimeout(this.rateTimer);
    this.rateTimer = null;
  }

  /** Tells the owner once a departed client's input is all out. */
  private check(): void {
    if ((this.departed || this.dropped) && this.done && !this.doneReported) {
      this.doneReported = true;
      this.owner.inputDone();
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** Views smaller than an eighth of a read buffer of over 16 KiB would keep all of it alive while held. */
export function pinsLargeBuffer(view: Buffer): boolean {
  const backing = view.buffer.byteLength;
  return backing > 16 * 1024 && view.length * 8 < backing;
}
