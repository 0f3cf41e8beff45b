import { randomBytes } from 'node:crypto';
import { toError, withCode } from '../errors';
import type { Bus, BusListener } from './bus';
import {
  decodeFrame,
  encodeFrame,
  EnvelopeKind,
  envelopeBytes,
  FrameKind,
  headerBytes,
  NodeSequence,
  type Envelope,
  type Frame,
} from './envelope';

/** What a link reads of the multiplexer's settings, live. */
export interface LinkSettings {
  /** Most bytes of frames waiting for the bus; past it the oldest are shed. */
  readonly outboxBytes: number;
  /** Oldest frame (ms) kept waiting; older ones are shed. */
  readonly outboxAge: number;
  /** How often (ms) the node says it is alive. */
  readonly heartbeatInterval: number;
  /** A node not heard for this long (ms) is down. */
  readonly nodeTimeout: number;
  /** While the outbox is above this (bytes, at most half of `outboxBytes`), local senders wait. */
  readonly highWaterMark: number;
  /** How long (ms) a slow bus may hold local senders back before `busOverflow` applies. */
  readonly stallTimeout: number;
  /** Past `stallTimeout`: shed the oldest frames (`'shed'`) or keep senders waiting (`'wait'`). */
  readonly busOverflow: 'shed' | 'wait';
}

/** What a link tells the multiplexer it serves. Calls never throw into the link. */
export interface LinkOwner {
  /** Envelopes from another node (messages and presence), in that node's order, from index `from` on. */
  deliver(node: string, envelopes: readonly Envelope[], from: number): void;
  /** Messages from `node` were lost on the way (a gap in its numbering). */
  lost(node: string, count: number): void;
  /** Frames of ours were shed from the outbox (too many bytes or too old) before the bus took them. */
  shed(frames: number, messages: number): void;
  /** The bus is up (subscribed) or down. */
  state(up: boolean, error?: Error): void;
  /** Another node was heard again (up) or not heard for `nodeTimeout` (down). */
  node(node: string, up: boolean): void;
  /** This node's members as presence envelopes (a snapshot, for nodes that ask). */
  snapshot(): Envelope[];
  /** The bus is slow: local senders should wait (true) or may go on (false). */
  hold(holding: boolean): void;
  /** Something about the bus went wrong that is not a message loss (a bad frame, a failed publish). */
  failed(error: Error): void;
}

/** A frame waiting in the outbox. */
interface Outgoing {
  readonly bytes: Buffer;
  readonly messages: number;
  readonly at: number;
  /** The sequence number of its first message (of the next one, for a heartbeat). */
  readonly first: number;
}

/** After an outage, the outbox waits for the nodes that were up to be heard again (subscribed again). */
interface ReplayGate {
  readonly waitingFor: Set<string>;
  readonly timer: NodeJS.Timeout;
}

/** What the link knows of another node. */
interface Peer {
  readonly sequence: NodeSequence;
  lastSeen: number;
  up: boolean;
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
  /** Bytes of frames waiting in the outbox (handed to the bus and not confirmed, or not handed yet). */
  outboxBytes: number;
  /** Other nodes heard from lately. */
  nodesUp: number;
}

/** Bytes handed to the bus and not yet confirmed, at most (a subscriber elsewhere must not be flooded). */
const MAX_IN_FLIGHT = 1024 * 1024;
/** Room in a frame for one envelope's origin and rooms, besides its message. */
const ENVELOPE_ALLOWANCE = 1024;
/** How soon a publish the bus refused while it said it was up is tried again. */
const RETRY_MS = 100;
const NO_ORIGIN = Object.freeze({ id: -1, address: '', port: 0 });

/**
 * Joins one multiplexer to the other nodes of its cluster over a {@link Bus}.
 *
 * Out: each turn's messages (and presence changes) for the cluster become one frame, more when they do not
 * fit in the bus's frame limit (never a message split), numbered per node and process incarnation, and wait
 * in a bounded outbox (bytes and age) until the bus takes them, with at most 1 MiB handed to it and not yet
 * confirmed. After an outage the outbox goes out again only once the bus is subscribed again; what was not
 * confirmed goes again, and receivers drop the repeats. A slow bus is one more receiver: while its outbox is
 * above the high-water mark local senders wait, for `stallTimeout`, then `busOverflow` decides. A bus that is
 * down never makes anyone wait: local delivery goes on, and the outbox sheds its oldest frames.
 *
 * In: frames from other nodes are delivered in their node's order; its own frames are dropped; repeats and
 * late frames are dropped (never delivered twice, never out of order); gaps, seen in frames and heartbeats,
 * are counted as losses and reported. A node not heard for `nodeTimeout` is down.
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
    nodesUp: 0,
  };
  private seq = 0;
  private readonly outbox: Outgoing[] = [];
  /** Frames handed to the bus and not yet confirmed: the first `inFlight` of the outbox. */
  private inFlight = 0;
  private inFlightBytes = 0;
  private readonly peers = new Map<string, Peer>();
  private closed = false;
  private retry: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly headerBytes: number;
  /** When our own heartbeat last came back (the bus carries our frames to us too). */
  private lastEcho = 0;
  private upSince = 0;
  /** A slow bus holds local senders back: since when, and whether its time is spent. */
  private holdingSince = 0;
  private holdSpent = false;
  private snapshotDue: NodeJS.Immediate | null = null;
  private gate: ReplayGate | null = null;

  constructor(
    readonly bus: Bus,
    readonly node: string,
    private readonly settings: LinkSettings,
    private readonly owner: LinkOwner,
  ) {
    if (Buffer.byteLength(node) > 255 || node.length === 0) {
      throw withCode(new RangeError('a node id is 1 to 255 bytes'), 'ERR_INVALID_OPTION');
    }
    this.headerBytes = headerBytes(node, this.incarnation);
  }

  /** True when a message of `bytes` (with an origin and a few rooms) fits in one frame of the bus. */
  fits(bytes: number): boolean {
    return this.headerBytes + ENVELOPE_ALLOWANCE + bytes <= this.bus.maxFrameBytes;
  }

  /** Opens the bus; resolves once subscribed. */
  async open(): Promise<void> {
    await this.bus.open(this);
    const every = this.settings.heartbeatInterval;
    this.heartbeat = setInterval(() => this.beat(), every);
    this.heartbeat.unref();
  }

  /** Other nodes heard from lately, and when. */
  nodes(): Array<{ node: string; up: boolean; lastSeen: number }> {
    return [...this.peers].map(([node, peer]) => ({ node, up: peer.up, lastSeen: peer.lastSeen }));
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
        const error = new RangeError(
          `a message of ${envelope.message.length} bytes does not fit in one frame of the bus`,
        );
        this.owner.failed(withCode(error, 'ERR_BUS_FRAME_TOO_LARGE'));
        continue;
      }
      if (bytes + size > max && batch.length > 0) {
        this.enqueue(FrameKind.Messages, batch);
        batch = [];
        bytes = this.headerBytes;
      }
      batch.push(envelope);
      bytes += size;
    }
    if (batch.length > 0) this.enqueue(FrameKind.Messages, batch);
    this.pump();
  }

  /** Closes the bus; nothing more goes out or comes in. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry !== null) clearTimeout(this.retry);
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    if (this.gate !== null) clearTimeout(this.gate.timer);
    this.gate = null;
    if (this.snapshotDue !== null) clearImmediate(this.snapshotDue);
    this.outbox.length = 0;
    this.stats.outboxBytes = 0;
    this.setHold(false);
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
    if (frame.node === this.node && frame.incarnation === this.incarnation) {
      if (frame.kind === FrameKind.Heartbeat) this.lastEcho = Date.now(); // the bus still carries us
      return;
    }
    this.stats.framesIn += 1;
    const now = Date.now();
    let peer = this.peers.get(frame.node);
    let fresh = false;
    if (peer === undefined) {
      peer = { sequence: new NodeSequence(), lastSeen: now, up: false };
      this.peers.set(frame.node, peer);
      fresh = true;
    }
    peer.lastSeen = now;
    this.heard(frame.node);
    const count = frame.kind === FrameKind.Messages ? frame.envelopes.length : 0;
    const verdict = peer.sequence.accept(frame.incarnation, frame.first, count);
    if (!peer.up || verdict.restarted || fresh) {
      peer.up = true;
      this.countNodes();
      this.owner.node(frame.node, true);
      // A node newly heard (or back, or restarted) learns our members, and we ask for its own.
      this.requestSnapshot(frame.node);
      this.snapshotSoon();
    }
    if (verdict.lost > 0) {
      this.stats.lost += verdict.lost;
      this.owner.lost(frame.node, verdict.lost);
      this.requestSnapshot(frame.node); // presence changes may have been among them
    }
    if (count === 0) return;
    if (verdict.skip >= count) {
      this.stats.repeats += 1;
      return;
    }
    this.stats.messagesIn += count - verdict.skip;
    for (let i = verdict.skip; i < count; i += 1) {
      const envelope = frame.envelopes[i];
      if (envelope.kind === EnvelopeKind.SnapshotRequest && envelope.message.toString() === this.node) {
        this.snapshotSoon();
      }
    }
    this.owner.deliver(frame.node, frame.envelopes, verdict.skip);
  }

  up(): void {
    if (this.closed) return;
    const first = this.upSince === 0;
    this.stats.up = true;
    this.upSince = Date.now();
    this.lastEcho = 0;
    this.owner.state(true);
    // What was in flight when the bus went down goes again: receivers drop what did get through.
    this.inFlight = 0;
    this.inFlightBytes = 0;
    this.shedOld();
    if (!first) this.closeGate();
    if (first) this.snapshotSoon(); // the nodes already there learn who is here
    this.enqueue(FrameKind.Heartbeat, []);
    this.pump();
  }

  down(error?: Error): void {
    if (this.closed || !this.stats.up) return;
    this.stats.up = false;
    this.setHold(false); // local delivery never waits for a bus that is down
    this.owner.state(false, error ?? withCode(new Error('bus down'), 'ERR_BUS_DOWN'));
  }

  // ---------------------------------------------------------------- liveness

  /** Every heartbeatInterval: says we are alive, checks who else is, and that the bus still carries us. */
  private beat(): void {
    if (this.closed) return;
    const now = Date.now();
    const { nodeTimeout } = this.settings;
    this.enqueue(FrameKind.Heartbeat, []);
    this.pump();
    if (this.gate !== null && this.stats.up) this.hello();
    for (const [node, peer] of this.peers) {
      if (peer.up && now - peer.lastSeen > nodeTimeout) {
        peer.up = false;
        this.countNodes();
        this.owner.node(node, false);
        this.heard(node); // down: no longer waited for
      }
    }
    // Our own heartbeats come back through the broker. When they stop while the bus says it is up, the path
    // is gone without the client noticing (a blackhole): the bus is down for us.
    if (this.stats.up && this.lastEcho > 0 && now - this.lastEcho > nodeTimeout && now - this.upSince > nodeTimeout) {
      this.down(withCode(new Error(`our own heartbeats stopped coming back for ${nodeTimeout} ms`), 'ERR_BUS_DOWN'));
      this.bus.reconnect?.();
    }
    this.checkHold(now);
  }

  private countNodes(): void {
    let up = 0;
    for (const peer of this.peers.values()) if (peer.up) up += 1;
    this.stats.nodesUp = up;
  }

  private requestSnapshot(node: string): void {
    this.publish([{ kind: EnvelopeKind.SnapshotRequest, origin: NO_ORIGIN, rooms: null, message: Buffer.from(node) }]);
  }

  /** Publishes our members soon (once per turn however many ask). */
  private snapshotSoon(): void {
    if (this.snapshotDue !== null || this.closed) return;
    this.snapshotDue = setImmediate(() => {
      this.snapshotDue = null;
      const head: Envelope = { kind: EnvelopeKind.Snapshot, origin: NO_ORIGIN, rooms: null, message: EMPTY };
      this.publish([head, ...this.owner.snapshot()]);
    });
  }

  // ---------------------------------------------------------------- outbox

  private enqueue(kind: FrameKind, envelopes: Envelope[]): void {
    const first = this.seq;
    const frame: Frame = { kind, node: this.node, incarnation: this.incarnation, first, envelopes };
    if (kind === FrameKind.Messages) this.seq += envelopes.length;
    const bytes = encodeFrame(frame);
    this.outbox.push({ bytes, messages: envelopes.length, at: Date.now(), first });
    this.stats.outboxBytes += bytes.length;
    // With nothing in flight, a bus that is up takes the frame at once, however large: it does not wait, so
    // it is not the outbox's to shed (a turn larger than outboxBytes would otherwise be lost on a healthy bus).
    if (this.inFlight === 0) this.pump();
    this.shedOld();
    this.checkHold(Date.now());
  }

  /** Sheds the oldest frames not yet handed to the bus while the outbox is over its bounds. */
  private shedOld(): void {
    const { outboxBytes, outboxAge } = this.settings;
    const now = Date.now();
    let frames = 0;
    let messages = 0;
    while (
      this.outbox.length > this.inFlight &&
      (this.stats.outboxBytes > outboxBytes || now - this.outbox[this.inFlight].at > outboxAge)
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

  /** Hands the bus the frames not yet in flight, in order, while it is up and not too much is unconfirmed. */
  private pump(): void {
    if (!this.stats.up || this.closed || this.gate !== null) return;
    while (this.inFlight < this.outbox.length && (this.inFlightBytes < MAX_IN_FLIGHT || this.inFlight === 0)) {
      const outgoing = this.outbox[this.inFlight];
      this.inFlight += 1;
      this.inFlightBytes += outgoing.bytes.length;
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
    if (at === -1 || at >= this.inFlight) return; // shed, resent or closed meanwhile
    // Confirmations come in order: anything before it is confirmed too.
    const removed = this.outbox.splice(0, at + 1);
    for (const frame of removed) {
      this.stats.outboxBytes -= frame.bytes.length;
      this.inFlightBytes -= frame.bytes.length;
    }
    this.inFlight -= removed.length;
    this.checkHold(Date.now());
    this.pump();
  }

  private rejected(outgoing: Outgoing, error: unknown): void {
    if (this.closed) return;
    const at = this.outbox.indexOf(outgoing);
    if (at === -1 || at >= this.inFlight) return;
    // It and everything after it go again once the bus is up again.
    for (let i = at; i < this.inFlight; i += 1) {
      this.inFlightBytes -= this.outbox[i].bytes.length;
      this.stats.framesOut -= 1;
      this.stats.messagesOut -= this.outbox[i].messages;
    }
    this.inFlight = at;
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

  // ---------------------------------------------------------------- replay after an outage

  /**
   * Back after an outage: Redis and NATS keep nothing for a subscriber that is not there, so the outbox waits
   * until the nodes that were up before are heard again (they are subscribed again), for two heartbeat
   * intervals at most. Meanwhile heartbeats go straight out, numbered from the oldest frame still waiting,
   * so the others hear us (and open their own gates) without counting what waits as lost.
   */
  private closeGate(): void {
    const waitingFor = new Set<string>();
    for (const [node, peer] of this.peers) if (peer.up) waitingFor.add(node);
    if (waitingFor.size === 0) return;
    if (this.gate !== null) clearTimeout(this.gate.timer);
    const { heartbeatInterval, nodeTimeout } = this.settings;
    const timer = setTimeout(() => this.openGate(), Math.min(2 * heartbeatInterval, nodeTimeout));
    timer.unref();
    this.gate = { waitingFor, timer };
    this.hello();
  }

  /** A node the gate waits for was heard again (or is down): the gate opens once none is left. */
  private heard(node: string): void {
    if (this.gate !== null && this.gate.waitingFor.delete(node) && this.gate.waitingFor.size === 0) this.openGate();
  }

  private openGate(): void {
    if (this.gate === null) return;
    clearTimeout(this.gate.timer);
    this.gate = null;
    this.pump();
  }

  /** A heartbeat past the outbox: the next number it will send is that of its oldest frame. */
  private hello(): void {
    const first = this.outbox.length > 0 ? this.outbox[0].first : this.seq;
    const frame: Frame = {
      kind: FrameKind.Heartbeat,
      node: this.node,
      incarnation: this.incarnation,
      first,
      envelopes: [],
    };
    this.bus.publish(encodeFrame(frame)).catch(() => undefined); // one that does not get through goes again next beat
  }

  // ---------------------------------------------------------------- a slow bus holds senders back

  /** The outbox's high-water mark: local senders wait while it holds more (and the bus is up). */
  private get mark(): number {
    return Math.min(this.settings.highWaterMark, this.settings.outboxBytes / 2);
  }

  private checkHold(now: number): void {
    const bytes = this.stats.outboxBytes;
    if (this.holdingSince === 0) {
      if (bytes > this.mark && this.stats.up && !this.holdSpent) this.setHold(true);
      else if (this.holdSpent && bytes <= this.mark / 2) this.holdSpent = false;
      return;
    }
    if (bytes <= this.mark / 2 || !this.stats.up) {
      this.setHold(false);
      return;
    }
    // Past its stall budget a slow bus sheds (senders go on, the outbox bound applies) unless told to wait.
    if (this.settings.busOverflow === 'shed' && now - this.holdingSince > this.settings.stallTimeout) {
      this.holdSpent = true;
      this.setHold(false);
    }
  }

  private setHold(holding: boolean): void {
    if (holding === this.holdingSince > 0) return;
    this.holdingSince = holding ? Date.now() : 0;
    this.owner.hold(holding);
    if (holding && this.settings.busOverflow === 'shed') {
      const timer = setTimeout(() => this.checkHold(Date.now()), this.settings.stallTimeout + 1);
      timer.unref();
    }
  }
}

const EMPTY = Buffer.alloc(0);
