import { randomBytes } from 'node:crypto';
import { toError, withCode } from '../errors';
import type { Bus, BusListener } from './bus';
import {
  decodeFrame,
  encodeFrame,
  envelopeBytes,
  FrameKind,
  headerBytes,
  NodeSequence,
  type Envelope,
  type Frame,
} from './envelope';

/** Limits of a link's outbox: what waits to be published while the bus is slow or down. */
export interface OutboxLimits {
  /** Most bytes of frames it keeps; past it the oldest are shed (counted). */
  readonly maxBytes: number;
  /** Oldest frame it keeps, in ms; older ones are shed (counted). */
  readonly maxAge: number;
}

/** What a link tells the multiplexer it serves. Calls never throw into the link. */
export interface LinkOwner {
  /** Envelopes from another node, in that node's order, to deliver locally. */
  deliver(node: string, envelopes: readonly Envelope[], from: number): void;
  /** Messages from `node` were lost on the way (a gap in its numbering). */
  lost(node: string, count: number): void;
  /** Frames of ours were shed from the outbox (too many bytes or too old) before the bus took them. */
  shed(frames: number, messages: number): void;
  /** The bus is up (subscribed) or down. */
  state(up: boolean, error?: Error): void;
  /** Something about the bus went wrong that is not a message loss (a bad frame, a failed publish). */
  failed(error: Error): void;
}

/** A frame waiting in the outbox. */
interface Outgoing {
  readonly bytes: Buffer;
  readonly messages: number;
  readonly at: number;
}

/** The link's counters, for `stats()`. */
export interface LinkStats {
  up: boolean;
  framesOut: number;
  framesIn: number;
  messagesOut: number;
  messagesIn: number;
  /** Messages from other nodes detected as lost. */
  lost: number;
  /** Frames dropped as repeats (already delivered). */
  repeats: number;
  /** Frames of ours shed from the outbox, and the messages in them. */
  shedFrames: number;
  shedMessages: number;
  /** Bytes of frames waiting in the outbox. */
  outboxBytes: number;
}

/**
 * Joins one multiplexer to the other nodes of its cluster over a {@link Bus}.
 *
 * Out: each turn's messages for the cluster become one frame (more when they do not fit in the bus's
 * frame limit, never a message split), numbered per node and process incarnation, and wait in a bounded
 * outbox (bytes and age) until the bus takes them. After an outage the outbox goes out again only once the
 * bus is subscribed again; what went through before the outage but was not confirmed goes again, and
 * receivers drop the repeats.
 *
 * In: frames from other nodes are delivered in their node's order; its own frames are dropped; repeats and
 * late frames are dropped (never delivered twice, never out of order); gaps are counted as losses and
 * reported. Local delivery never waits for any of this.
 */
export class BusLink implements BusListener {
  /** This process's incarnation: a node restarted with the same id is a new incarnation. */
  readonly incarnation = randomBytes(8).toString('hex');
  readonly stats: LinkStats = {
    up: false,
    framesOut: 0,
    framesIn: 0,
    messagesOut: 0,
    messagesIn: 0,
    lost: 0,
    repeats: 0,
    shedFrames: 0,
    shedMessages: 0,
    outboxBytes: 0,
  };
  private seq = 0;
  private readonly outbox: Outgoing[] = [];
  /** Frames handed to the bus and not yet confirmed (the first `inFlight` of the outbox). */
  private inFlight = 0;
  private readonly sequences = new Map<string, NodeSequence>();
  private closed = false;
  private retry: NodeJS.Timeout | null = null;
  private readonly headerBytes: number;

  constructor(
    readonly bus: Bus,
    readonly node: string,
    private readonly limits: OutboxLimits,
    private readonly owner: LinkOwner,
  ) {
    if (Buffer.byteLength(node) > 255)
      throw withCode(new RangeError('a node id is at most 255 bytes'), 'ERR_INVALID_OPTION');
    this.headerBytes = headerBytes(node, this.incarnation);
  }

  /** True when a message of `bytes` (with an origin and a few rooms) fits in one frame of the bus. */
  fits(bytes: number): boolean {
    return this.headerBytes + ENVELOPE_ALLOWANCE + bytes <= this.bus.maxFrameBytes;
  }

  /** Opens the bus; resolves once subscribed. */
  open(): Promise<void> {
    return this.bus.open(this);
  }

  /** Publishes one turn's envelopes for the cluster (the local delivery has already happened). */
  publish(envelopes: readonly Envelope[]): void {
    if (this.closed || envelopes.length === 0) return;
    const max = this.bus.maxFrameBytes;
    let batch: Envelope[] = [];
    let bytes = this.headerBytes;
    for (const envelope of envelopes) {
      const size = envelopeBytes(envelope);
      if (this.headerBytes + size > max) {
        this.owner.failed(
          withCode(
            new RangeError(`a message of ${envelope.message.length} bytes does not fit in one frame of the bus`),
            'ERR_BUS_FRAME_TOO_LARGE',
          ),
        );
        continue;
      }
      if (bytes + size > max && batch.length > 0) {
        this.enqueue(batch);
        batch = [];
        bytes = this.headerBytes;
      }
      batch.push(envelope);
      bytes += size;
    }
    if (batch.length > 0) this.enqueue(batch);
    this.pump();
  }

  /** Closes the bus; nothing more goes out or comes in. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry !== null) clearTimeout(this.retry);
    this.outbox.length = 0;
    this.stats.outboxBytes = 0;
    await this.bus.close();
  }

  // ---------------------------------------------------------------- BusListener

  frame(bytes: Buffer): void {
    if (this.closed) return;
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch (error) {
      this.owner.failed(toError(error));
      return;
    }
    if (frame.node === this.node && frame.incarnation === this.incarnation) return; // our own
    this.stats.framesIn += 1;
    let sequence = this.sequences.get(frame.node);
    if (sequence === undefined) this.sequences.set(frame.node, (sequence = new NodeSequence()));
    const count = frame.kind === FrameKind.Messages ? frame.envelopes.length : 0;
    const verdict = sequence.accept(frame.incarnation, frame.first, count);
    if (verdict.lost > 0) {
      this.stats.lost += verdict.lost;
      this.owner.lost(frame.node, verdict.lost);
    }
    if (count === 0) return;
    if (verdict.skip >= count) {
      this.stats.repeats += 1;
      return;
    }
    this.stats.messagesIn += count - verdict.skip;
    this.owner.deliver(frame.node, frame.envelopes, verdict.skip);
  }

  up(): void {
    if (this.closed) return;
    this.stats.up = true;
    this.owner.state(true);
    // What was in flight when the bus went down goes again: receivers drop what did get through.
    this.inFlight = 0;
    this.shedOld();
    this.pump();
  }

  down(error?: Error): void {
    if (this.closed) return;
    this.stats.up = false;
    this.owner.state(false, error ?? withCode(new Error('bus down'), 'ERR_BUS_DOWN'));
  }

  // ---------------------------------------------------------------- outbox

  private enqueue(envelopes: Envelope[]): void {
    const frame: Frame = {
      kind: FrameKind.Messages,
      node: this.node,
      incarnation: this.incarnation,
      first: this.seq,
      envelopes,
    };
    this.seq += envelopes.length;
    const bytes = encodeFrame(frame);
    this.outbox.push({ bytes, messages: envelopes.length, at: Date.now() });
    this.stats.outboxBytes += bytes.length;
    this.shedOld();
  }

  /** Sheds the oldest frames not yet handed to the bus while the outbox is over its bounds. */
  private shedOld(): void {
    const { maxBytes, maxAge } = this.limits;
    const now = Date.now();
    let frames = 0;
    let messages = 0;
    while (
      this.outbox.length > this.inFlight &&
      (this.stats.outboxBytes > maxBytes || now - this.outbox[this.inFlight].at > maxAge)
    ) {
      const [dropped] = this.outbox.splice(this.inFlight, 1);
      this.stats.outboxBytes -= dropped.bytes.length;
      frames += 1;
      messages += dropped.messages;
    }
    if (frames > 0) {
      this.stats.shedFrames += frames;
      this.stats.shedMessages += messages;
      this.owner.shed(frames, messages);
    }
  }

  /** Hands the bus every frame not yet in flight, in order, while it is up. */
  private pump(): void {
    if (!this.stats.up || this.closed) return;
    while (this.inFlight < this.outbox.length) {
      const outgoing = this.outbox[this.inFlight];
      this.inFlight += 1;
      this.stats.framesOut += 1;
      this.stats.messagesOut += outgoing.messages;
      this.bus.publish(outgoing.bytes).then(
        () => this.confirmed(outgoing),
        (error: unknown) => this.rejected(outgoing, error),
      );
    }
  }

  private confirmed(outgoing: Outgoing): void {
    const at = this.outbox.indexOf(outgoing);
    if (at === -1) return; // shed or closed meanwhile
    // Confirmations come in order; anything before it is confirmed too.
    const removed = this.outbox.splice(0, at + 1);
    for (const frame of removed) this.stats.outboxBytes -= frame.bytes.length;
    this.inFlight = Math.max(0, this.inFlight - removed.length);
  }

  private rejected(outgoing: Outgoing, error: unknown): void {
    if (this.closed) return;
    const at = this.outbox.indexOf(outgoing);
    if (at === -1) return;
    // It and everything after it go again once the bus is up again.
    this.inFlight = Math.min(this.inFlight, at);
    this.stats.framesOut -= 1;
    this.stats.messagesOut -= outgoing.messages;
    this.owner.failed(toError(error));
    if (this.stats.up && this.retry === null) {
      // The bus still says it is up: it will say down soon; until then, try again a little later.
      this.retry = setTimeout(() => {
        this.retry = null;
        this.pump();
      }, RETRY_MS);
      this.retry.unref();
    }
  }
}

/** Room in a frame for one envelope's origin and rooms, besides its message. */
const ENVELOPE_ALLOWANCE = 1024;
/** How soon a publish the bus refused while it said it was up is tried again. */
const RETRY_MS = 100;
