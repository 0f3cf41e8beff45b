import type { GatePass } from '../admission/gate';
import type { Client } from '../client';
import { withCode } from '../errors';
import { STALE_MS, type BudgetHolder } from '../fanout/budget';
import { neverShownReading, type FlowMember } from '../fanout/flow-control';
import { Outbound, type OutboundOwner } from '../fanout/outbound';
import type { Receiver } from '../fanout/turn-log';
import type { MemoryAccount } from '../fanout/slab';
import { Inbound, type InboundOwner } from '../inbound/inbound';
import { TokenBuckets } from '../inbound/rate-limiter';
import type { Settings } from '../options';
import type { Codec, Connection, ConnectionOwner } from '../transport/connection';
import type { AccessDecision, DenyReason, ExitReason } from '../types';
import type { Hub } from './hub';

/**
 * Where a connection is in its life, one value at a time:
 * - `admitting`: the access filters are deciding; what it sends waits.
 * - `member`: it joined the broadcast.
 * - `leaving`: out of the broadcast; it gets what it is still owed, then its connection closes.
 * - `closed`: its connection closed; what it sent before may still be going out, then its exit runs.
 * - `done`: its exit ran (or it never joined); nothing of it is left.
 */
export type Phase = 'admitting' | 'member' | 'leaving' | 'closed' | 'done';

/** What an access decision came to when the access filter threw or rejected: a denial. */
export const ACCESS_FAILED: unique symbol = Symbol('access failed');
/** An access decision, or {@link ACCESS_FAILED}. */
export type AccessOutcome = AccessDecision | typeof ACCESS_FAILED;

/** Departures the client chose (or its network did): what it sent before still goes out. */
const SELF_INFLICTED: ReadonlySet<ExitReason> = new Set<ExitReason>(['eof', 'reset', 'error']);
/**
 * Reasons for which a connection is reset rather than closed: its peer takes nothing, and what the kernel did
 * not send it would stay in kernel memory (an orphan socket) until the kernel gives up on it.
 */
const NOT_READING: ReadonlySet<ExitReason> = new Set<ExitReason>(['slow-consumer', 'memory-budget', 'send-timeout']);
/** How long a polite close may wait for the peer to take what is queued before the connection is destroyed. */
const CLOSE_GRACE_MS = 2000;

/**
 * The server's record of one connection: its phase, its connection, and its inbound and outbound halves.
 * The public {@link Client} is its face to user code; everything else about it lives here.
 */
export class Session<S extends object>
  implements ConnectionOwner, InboundOwner, OutboundOwner, FlowMember, Receiver, BudgetHolder
{
  phase: Phase = 'admitting';
  /** It joined the broadcast at some point: its exit runs once it is gone. */
  joined = false;
  exitReason: ExitReason | null = null;
  exitError: Error | undefined = undefined;
  readonly in: Inbound;
  readonly out: Outbound;
  rooms: Set<string> | null = null;
  taking = false;
  readonly client: Client<S>;
  /** Its stream ended before it was admitted: it leaves once admitted and its input is out. */
  private endedEarly = false;
  private ending = false;
  private closeTimer: NodeJS.Timeout | null = null;
  /** Sends and a disconnect asked for while its share of a fan-out was being taken. */
  private deferred: (Buffer | ExitReason)[] | null = null;
  private finished = false;

  constructor(
    readonly id: number,
    readonly connection: Connection,
    private readonly pass: GatePass,
    private readonly host: Hub<S>,
    createClient: (session: Session<S>) => Client<S>,
  ) {
    this.client = createClient(this);
    this.in = new Inbound(host.decoderFor(connection), this);
    this.out = new Outbound(connection, this);
    const settings = host.settings;
    if (settings.maxMessagesPerSecond > 0 || settings.maxBytesPerSecond > 0) {
      this.in.rate = new TokenBuckets(settings, Date.now());
    }
    connection.owner = this;
  }

  get settings(): Readonly<Settings> {
    return this.host.settings;
  }

  get account(): MemoryAccount {
    return this.host.budget;
  }

  get codec(): Codec {
    return this.connection.codec;
  }

  get flowHolding(): boolean {
    return this.host.flow.holding;
  }

  get stashed(): boolean {
    return this.in.stashed;
  }

  get heldBytes(): number {
    return this.out.heldBytes + this.in.heldBytes;
  }

  get stalled(): boolean {
    return (this.out.congested || this.out.lagging) && Date.now() - this.out.progressAt > this.settings.stallTimeout;
  }

  get stale(): boolean {
    const out = this.out;
    if (out.heldBytes === 0 || Date.now() - out.progressAt <= STALE_MS) return false;
    // Only one that never showed it reads: a slow reader's kernel may wake the writer seconds apart.
    return neverShownReading(out);
  }

  toString(): string {
    return `client ${this.id} (${this.connection.address}:${this.connection.port})`;
  }

  // ---------------------------------------------------------------- admission

  /** Runs the access filters on a connection that passed the gate. */
  admit(): void {
    const idle = this.settings.idleTimeout;
    if (idle > 0) this.connection.setIdleTimeout(idle);
    const decision = this.host.decideAccess(this);
    if (decision instanceof Promise) {
      void decision.then((result) => this.decide(result));
    } else {
      this.decide(decision);
    }
  }

  /** Refused before it could join: counted, reported, closed. */
  deny(reason: DenyReason): void {
    if (this.phase !== 'admitting') return;
    this.phase = 'leaving';
    this.in.drop();
    this.host.denied(this, reason);
    // What an access filter queued for it (a reason, a banner) is still sent, as Tcl's close flushes. A
    // connection that cannot take writes yet (a WebSocket upgrade) is refused in its own way.
    if (this.connection.writable && (!this.out.idle || this.connection.pending > 0)) this.endPolitely('kicked');
    else this.connection.refuse(reason);
  }

  private decide(decision: AccessOutcome): void {
    if (this.phase !== 'admitting') return; // it left, or the server is going down, while we waited
    if (decision === ACCESS_FAILED) return this.deny('access-error');
    if (decision === -1 || decision === false || decision === '-1') return this.deny('access-filter');
    const accepted = this.connection.accept();
    if (accepted instanceof Promise) void accepted.then((ok) => this.join(ok));
    else this.join(accepted);
  }

  private join(accepted: boolean): void {
    if (this.phase !== 'admitting') return;
    if (!accepted) {
      this.leave('error', undefined, false);
      return;
    }
    this.phase = 'member';
    this.joined = true;
    this.host.joined(this);
    if (this.phase !== 'member') return; // a connect listener sent it away
    this.in.grant();
    // It said all it had to say before it was admitted: now that that is out, it leaves.
    if (this.endedEarly && this.phase === 'member' && !this.settings.allowHalfOpen) this.leave('eof', undefined, true);
  }

  // ---------------------------------------------------------------- leaving

  /**
   * Starts leaving: out of the broadcast at once. A graceful leave sends what it is owed first; otherwise the
   * connection is destroyed. The first reason given wins; a later hard leave still closes at once.
   */
  leave(reason: ExitReason, error: Error | undefined, graceful: boolean): void {
    if (this.phase === 'closed' || this.phase === 'done') return;
    if (this.taking && graceful) {
      // Asked by user code while its share is taken: it leaves right after, with that share.
      (this.deferred ??= []).push(reason);
      return;
    }
    const first = this.exitReason === null;
    if (first) {
      this.exitReason = reason;
      this.exitError = error;
    }
    if (this.phase === 'admitting' || this.phase === 'member') {
      if (graceful && this.phase === 'member') this.host.turn.catchUp(this); // it still gets what was broadcast before
      this.phase = 'leaving';
      this.host.leftBroadcast(this);
      if (SELF_INFLICTED.has(reason)) this.in.depart();
      else this.in.drop();
    }
    if (!graceful || !this.connection.writable) {
      this.out.release();
      // Reset when it is cut for not reading now, or was leaving for that (what the kernel holds for it is lost).
      this.connection.destroy(
        NOT_READING.has(reason) || (this.exitReason !== null && NOT_READING.has(this.exitReason)),
      );
      return;
    }
    this.endPolitely(reason);
  }

  private endPolitely(reason: ExitReason): void {
    if (this.ending) return;
    this.ending = true;
    if (this.out.idle) {
      this.connection.end(reason, CLOSE_GRACE_MS);
      return;
    }
    this.out.endWhenFlushed = true;
    this.closeTimer = setTimeout(() => this.connection.destroy(), CLOSE_GRACE_MS);
    this.closeTimer.unref();
  }

  /** The server shuts down: members get what is queued (within `timeout`); others close at once. */
  shutdown(timeout: number): void {
    if (this.phase === 'admitting') {
      this.deny('destroyed');
      return;
    }
    if (this.phase === 'member') {
      this.leave('destroy', undefined, true);
      if (this.closeTimer !== null) clearTimeout(this.closeTimer);
      this.closeTimer = setTimeout(() => this.connection.destroy(), timeout);
      this.closeTimer.unref();
      return;
    }
    if (this.phase === 'leaving') this.connection.destroy();
  }

  // ---------------------------------------------------------------- ConnectionOwner

  onData(data: Buffer, text: boolean): void {
    this.client.bytesIn += data.length;
    this.host.counters.bytesIn += data.length;
    if (this.phase !== 'admitting' && this.phase !== 'member') return;
    void text; // a WebSocket message is bytes to the multiplexer, text or binary frame alike
    this.in.receive(data);
  }

  onWritten(): void {
    this.out.onWritten(Date.now());
    if (this.out.backlog === 0) this.host.sendDeadlines.clear(this);
  }

  onEnd(): void {
    this.in.finish();
  }

  onError(error: Error, reason: ExitReason): void {
    this.host.log.debug('%s connection error: %s', this, error.message);
    this.leave(reason, error, false);
  }

  onIdle(): void {
    this.host.log.info('%s idle for %d ms', this, this.settings.idleTimeout);
    this.leave('idle', undefined, true);
  }

  onClose(): void {
    if (this.phase === 'admitting' || this.phase === 'member') this.leave(this.exitReason ?? 'eof', undefined, false);
    if (this.phase === 'closed' || this.phase === 'done') return;
    this.phase = 'closed';
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.out.release();
    this.host.sendDeadlines.clear(this);
    this.in.depart();
    if (this.in.done) this.inputFinished();
  }

  // ---------------------------------------------------------------- InboundOwner

  process(payload: Buffer, wire: Buffer): Promise<void> | undefined {
    return this.host.process(this, payload, wire);
  }

  overflow(bytes: number): void {
    this.host.overflowed(this, bytes);
  }

  pauseReading(): void {
    this.connection.pause();
  }

  resumeReading(): void {
    if (this.phase === 'admitting' || this.phase === 'member') this.connection.resume();
  }

  holdForFlow(): void {
    this.host.flow.holdSender(this);
  }

  throttled(): void {
    this.host.limit(this, 'rate-limit');
  }

  rateExceeded(): void {
    this.host.log.info('%s passed its rate limit: disconnecting', this);
    this.leave('rate-limit', undefined, true);
  }

  heldInput(delta: number): void {
    if (delta > 0) this.host.budget.hold(delta);
    else this.host.budget.release(-delta);
  }

  inputEnded(): void {
    if (this.phase === 'admitting') this.endedEarly = true;
    else if (this.phase === 'member' && !this.settings.allowHalfOpen) this.leave('eof', undefined, true);
  }

  inputDone(): void {
    if (this.phase === 'closed') this.inputFinished();
  }

  partial(begun: boolean): void {
    if (begun) this.host.messageDeadlines.watch(this);
    else this.host.messageDeadlines.clear(this);
  }

  // ---------------------------------------------------------------- OutboundOwner

  congested(): void {
    this.host.flow.congested(this);
  }

  relieved(): void {
    this.host.flow.relieved(this);
  }

  backlogged(): void {
    this.host.sendDeadlines.watch(this);
  }

  progressed(): void {
    this.host.flow.progressed(this);
  }

  overflowed(dropped: number): void {
    this.host.slowConsumer(this, dropped);
  }

  wrote(bytes: number, messages: number): void {
    const counters = this.host.counters;
    counters.bytesOut += bytes;
    counters.messagesOut += messages;
  }

  flushed(): void {
    this.connection.end(this.exitReason ?? 'kicked', CLOSE_GRACE_MS);
  }

  // ---------------------------------------------------------------- FlowMember

  pauseForFlow(): void {
    this.in.pauseForFlow();
  }

  releaseFromFlow(bytes: number): number {
    return this.in.releaseFromFlow(bytes);
  }

  resumeFromFlow(): void {
    this.in.resumeFromFlow();
  }

  lagged(): void {
    this.host.log.notice('%s lagging: %d bytes queued; senders no longer wait for it', this, this.out.backlog);
    this.host.limit(this, 'lagging');
  }

  // ---------------------------------------------------------------- Receiver

  encode(message: Buffer): Buffer {
    return this.connection.codec === 'ws' ? this.host.wsEncode(message) : message;
  }

  afterShare(): void {
    const deferred = this.deferred;
    if (deferred === null) return;
    this.deferred = null;
    for (const item of deferred) {
      if (typeof item === 'string') this.leave(item, undefined, true);
      else this.queue(item);
    }
  }

  // ---------------------------------------------------------------- BudgetHolder

  shed(stale: boolean): boolean {
    if (this.phase === 'closed' || this.phase === 'done') return false;
    const budget = this.settings.memoryBudget;
    const why = stale
      ? `its connection took nothing for ${STALE_MS} ms with half the memory budget of ${budget} bytes spent`
      : `memory budget of ${budget} bytes reached`;
    if (this.in.heldBytes <= this.out.heldBytes && this.settings.slowConsumer === 'drop-oldest') {
      const dropped = this.out.clear();
      if (dropped === 0) return false;
      this.client.drops += dropped;
      this.host.counters.drops += dropped;
      this.host.log.warn('%s: %s, dropped its %d oldest messages', this, why, dropped);
      this.host.limit(this, 'memory-budget');
      const out = this.out;
      // Behind no more, but it did not read its way out: no relief (unless a polite close waits for it).
      if (out.endWhenFlushed || out.backlog > this.settings.highWaterMark / 2) {
        out.afterProgress();
      } else {
        out.dropping = false;
        this.host.flow.cleared(this);
      }
      return true;
    }
    this.host.log.warn('%s holds %d bytes: %s, disconnecting', this, this.heldBytes, why);
    this.leave('memory-budget', withCode(new Error(why), 'ERR_MEMORY_BUDGET'), false);
    return true;
  }

  // ---------------------------------------------------------------- rooms

  joinRoom(room: string): boolean {
    return this.host.joinRoom(this, room);
  }

  leaveRoom(room: string): boolean {
    return this.host.leaveRoom(this, room);
  }

  // ---------------------------------------------------------------- direct sends

  /** Queues a message for this client alone (already encoded for its connection), after what it is owed. */
  send(data: Buffer): boolean {
    if (this.phase !== 'admitting' && this.phase !== 'member') return false;
    if (this.phase === 'member') this.host.turn.catchUp(this); // broadcasts made before this message go first
    const message = this.encode(data);
    if (this.taking) {
      (this.deferred ??= []).push(message);
      return true;
    }
    return this.queue(message);
  }

  private queue(message: Buffer): boolean {
    const accepted = this.out.queueOwn(message);
    this.host.turn.flushLater(this);
    return accepted;
  }

  // ---------------------------------------------------------------- the end

  private inputFinished(): void {
    if (this.finished) return;
    this.finished = true;
    this.in.stop();
    this.host.flow.forgetSender(this);
    this.host.messageDeadlines.clear(this);
    this.host.gate.leave(this.pass);
    if (!this.joined) {
      this.phase = 'done';
      this.host.gone(this);
      return;
    }
    const reason = this.exitReason ?? 'eof';
    const exited = this.host.exited(this, reason);
    const done = (): void => {
      this.phase = 'done';
      this.host.gone(this);
    };
    if (exited === undefined) done();
    else void exited.then(done);
  }
}
