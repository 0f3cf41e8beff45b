import { ConnectionGate, type GatePass } from '../admission/gate';
import { EnvelopeKind, type Envelope, type EnvelopeOrigin } from '../bus/envelope';
import { Client, type RemoteClient } from '../client';
import { toError, withCode } from '../errors';
import { MemoryBudget } from '../fanout/budget';
import { FlowControl } from '../fanout/flow-control';
import { RoomIndex } from '../fanout/rooms';
import { TurnLog } from '../fanout/turn-log';
import { lineFraming } from '../framing/line';
import type { Decoder, Framing } from '../framing/framing';
import { MessageDecoder, messageFrames } from '../framing/websocket';
import { nextData } from '../inbound/filter-chain';
import { pinsLargeBuffer } from '../inbound/inbound';
import type { Logger } from '../log';
import type { Settings, TlsServerOptions } from '../options';
import type { Connection, TransportHost } from '../transport/connection';
import {
  DENY_REASONS,
  EXIT_REASONS,
  LIMIT_KINDS,
  type AccessDecision,
  type DenyReason,
  type ErrorSource,
  type ExitReason,
  type FilterResult,
  type ForwardResult,
  type LimitKind,
  type Target,
} from '../types';
import { Deadlines } from './deadlines';
import { ACCESS_FAILED, Session, type AccessOutcome } from './session';
import { callGuarded, isPromiseLike } from './user-code';

/** A local client or a client of another node: who sent a message. */
export type Origin<S extends object> = Client<S> | RemoteClient<S>;

/** The origin of what server code sends, on the bus. */
const SERVER_ORIGIN = Object.freeze({ id: -1, address: '', port: 0 });
const EMPTY = Buffer.alloc(0);

function remoteClient<S extends object>(node: string, origin: EnvelopeOrigin, state: Partial<S>): RemoteClient<S> {
  return { node, id: origin.id, address: origin.address, port: origin.port, state };
}

/** The state fields a presence change carries (an empty object when they do not parse). */
function parseState<S extends object>(message: Buffer): Partial<S> {
  try {
    const state: unknown = JSON.parse(message.toString('utf8'));
    return typeof state === 'object' && state !== null && !Array.isArray(state) ? state : {};
  } catch {
    return {};
  }
}

/** The counters behind `stats()`. */
export interface Counters {
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
  drops: number;
  filtered: number;
  filterErrors: number;
  hookErrors: number;
  disconnects: Record<ExitReason, number>;
  denials: Record<DenyReason, number>;
  limits: Record<LimitKind, number>;
}

/** The user-facing side of the multiplexer the hub calls into: its overridable hooks and its events. */
export interface HubOwner<S extends object> {
  readonly node: string;
  accessFilter(client: Client<S>): AccessDecision | Promise<AccessDecision>;
  filter(data: Buffer, client: Client<S>): FilterResult | Promise<FilterResult>;
  exitFilter(client: Client<S>, reason: ExitReason): unknown;
  forwardFilter(message: Buffer, receiver: Client<S>, sender: Origin<S> | null): ForwardResult;
  /** The protected broadcast, bound. */
  broadcast(message: Buffer, sender: Client<S>): void;
  /** True when data filters are registered or `filter` is overridden. */
  readonly filtering: boolean;
  emitConnect(client: Client<S>): void;
  emitData(message: Buffer, client: Client<S>): void;
  emitExit(client: Client<S>, reason: ExitReason, error: Error | undefined): void;
  emitDeny(client: Client<S>, reason: DenyReason): void;
  emitLimit(client: Client<S>, kind: LimitKind): void;
  emitPresence(change: 'join' | 'leave' | 'update', member: RemoteClient<S>): void;
  emitNode(state: 'up' | 'down', node: string): void;
  /** Logs and reports an error of user code or of the server. */
  report(error: unknown, source: ErrorSource, client?: Client<S>): void;
}

function zeroes<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>;
}

/**
 * The machinery of one multiplexer, assembled: connections and sessions, the broadcast's members and rooms,
 * the message path (filters, `data`, broadcast, deliver), the turn log, flow control, the memory budget, and
 * the counters. The public {@link Multiplexer} holds one and speaks for it.
 */
export class Hub<S extends object> implements TransportHost {
  readonly gate: ConnectionGate;
  /** Every connection not yet gone, whatever its phase. */
  readonly sessions = new Set<Session<S>>();
  /** The clients in the broadcast, in the order they joined. */
  readonly members = new Set<Session<S>>();
  readonly rooms = new RoomIndex<Session<S>>();
  readonly turn: TurnLog<Session<S>, Origin<S>>;
  readonly flow: FlowControl<Session<S>>;
  readonly budget: MemoryBudget;
  readonly sendDeadlines: Deadlines<Session<S>>;
  readonly messageDeadlines: Deadlines<Session<S>>;
  readonly counters: Counters = {
    messagesIn: 0,
    bytesIn: 0,
    messagesOut: 0,
    bytesOut: 0,
    drops: 0,
    filtered: 0,
    filterErrors: 0,
    hookErrors: 0,
    disconnects: zeroes(EXIT_REASONS),
    denials: zeroes(DENY_REASONS),
    limits: zeroes(LIMIT_KINDS),
  };
  destroyed = false;
  /** Other nodes' members, by node and client id, as their presence changes told. */
  private readonly remote = new Map<string, Map<number, RemoteClient<S>>>();
  private presenceFields: readonly string[] = [];
  /** The multiplexer's TLS options, the default of transports that listen on a port of their own. */
  tls: TlsServerOptions | undefined = undefined;
  private nextId = 0;
  /** The sender of the message being broadcast, for `deliver()` calls made by `broadcast()`. */
  private sender: Client<S> | null = null;
  private allGone: (() => void) | null = null;
  private readonly lines: boolean;

  constructor(
    private readonly owner: HubOwner<S>,
    readonly settings: Settings,
    readonly framing: Framing,
    readonly log: Logger,
  ) {
    this.gate = new ConnectionGate(settings);
    this.lines = framing === lineFraming;
    this.turn = new TurnLog<Session<S>, Origin<S>>(
      this.members,
      this.rooms,
      (message) => this.wsEncode(message),
      (active) => this.flow.fanning(active),
    );
    this.flow = new FlowControl<Session<S>>(
      settings,
      () => this.members,
      () => this.turn.fanOut(),
    );
    this.budget = new MemoryBudget(
      () => this.settings.memoryBudget,
      () => this.sessions,
    );
    this.sendDeadlines = new Deadlines(
      () => this.settings.sendTimeout,
      (session) => session.out.progressAt,
      (session) => this.sendTimedOut(session),
    );
    this.messageDeadlines = new Deadlines(
      () => this.settings.messageTimeout,
      (session) => session.in.partialSince,
      (session) => this.messageTimedOut(session),
    );
    this.applyThreshold();
  }

  /**
   * Joins the cluster: the turn's messages and presence changes for it go to `publish` after each local
   * fan-out (local delivery never waits for the bus); what other nodes send comes in through
   * {@link deliverRemote}. `fields` are the state fields a client's presence publishes.
   */
  attachBus(publish: (envelopes: Envelope[]) => void, fields: readonly string[]): void {
    this.presenceFields = fields;
    this.turn.outlet = (messages, senders, rooms, toBus, kinds) => {
      const envelopes: Envelope[] = [];
      for (let i = 0; i < messages.length; i += 1) {
        if (!toBus[i]) continue;
        const sender = senders[i];
        const origin = sender === null ? SERVER_ORIGIN : { id: sender.id, address: sender.address, port: sender.port };
        envelopes.push({ kind: kinds[i], origin, rooms: rooms[i], message: messages[i] });
      }
      if (envelopes.length > 0) publish(envelopes);
    };
  }

  /** A local client's presence changed: it goes to the cluster in order with its messages. */
  private presence(session: Session<S>, kind: EnvelopeKind): void {
    if (this.turn.outlet === null) return;
    const payload =
      kind === EnvelopeKind.Leave ? EMPTY : Buffer.from(JSON.stringify(this.publishedState(session.client)));
    this.turn.append(payload, session.client, null, null, true, kind);
  }

  /** Sends a local client's published state fields to the other nodes again (after server code changed them). */
  publishState(client: Client<S>): void {
    if (client.session.phase === 'member') this.presence(client.session, EnvelopeKind.Update);
  }

  /** The state fields of `client` that presence publishes. */
  private publishedState(client: Client<S>): Partial<S> {
    const state: Record<string, unknown> = {};
    const source = client.state as Record<string, unknown>;
    for (const field of this.presenceFields) if (source[field] !== undefined) state[field] = source[field];
    return state as Partial<S>;
  }

  /** This node's members as presence envelopes: a snapshot for the other nodes. */
  snapshot(): Envelope[] {
    const envelopes: Envelope[] = [];
    for (const session of this.members) {
      const { id, address, port } = session.client;
      const message = Buffer.from(JSON.stringify(this.publishedState(session.client)));
      envelopes.push({ kind: EnvelopeKind.Join, origin: { id, address, port }, rooms: null, message });
    }
    return envelopes;
  }

  /** What another node sends, in its order: messages into this turn's log (local members only), presence. */
  deliverRemote(node: string, envelopes: readonly Envelope[], from: number): void {
    let table = this.remote.get(node);
    if (table === undefined) this.remote.set(node, (table = new Map<number, RemoteClient<S>>()));
    let snapshot: Map<number, RemoteClient<S>> | null = null;
    for (let i = from; i < envelopes.length; i += 1) {
      const { kind, origin, rooms, message } = envelopes[i];
      if (kind === EnvelopeKind.Message) {
        if (rooms !== null && rooms.length === 0) continue;
        const sender = origin.id < 0 ? null : (table.get(origin.id) ?? remoteClient(node, origin, {}));
        this.turn.append(message, sender, null, rooms, false);
      } else if (kind === EnvelopeKind.Join || kind === EnvelopeKind.Update) {
        const member = remoteClient<S>(node, origin, parseState<S>(message));
        if (snapshot !== null) {
          snapshot.set(origin.id, member);
          continue;
        }
        const known = table.get(origin.id);
        table.set(origin.id, member);
        // A snapshot may have told it already: only what is news is reported.
        if (known === undefined) this.owner.emitPresence('join', member);
        else if (JSON.stringify(known.state) !== JSON.stringify(member.state))
          this.owner.emitPresence('update', member);
      } else if (kind === EnvelopeKind.Leave) {
        const member = table.get(origin.id);
        if (member === undefined) continue;
        table.delete(origin.id);
        this.owner.emitPresence('leave', member);
      } else if (kind === EnvelopeKind.Snapshot) {
        snapshot = new Map();
      }
    }
    if (snapshot !== null) this.replace(node, table, snapshot);
  }

  /** A snapshot of a node's members replaces what was known of them: the differences are reported. */
  private replace(node: string, table: Map<number, RemoteClient<S>>, next: Map<number, RemoteClient<S>>): void {
    for (const [id, member] of table) {
      if (next.has(id)) continue;
      table.delete(id);
      this.owner.emitPresence('leave', member);
    }
    for (const [id, member] of next) {
      const known = table.get(id);
      table.set(id, member);
      if (known === undefined) this.owner.emitPresence('join', member);
      else if (JSON.stringify(known.state) !== JSON.stringify(member.state)) this.owner.emitPresence('update', member);
    }
    void node;
  }

  /** Another node was heard again, or not for too long: when down, its members are gone. */
  nodeChanged(node: string, up: boolean): void {
    this.owner.emitNode(up ? 'up' : 'down', node);
    if (up) return;
    const table = this.remote.get(node);
    if (table === undefined) return;
    this.remote.delete(node);
    for (const member of table.values()) this.owner.emitPresence('leave', member);
  }

  /** The members of the cluster: this node's clients, then the other nodes' as presence knows them. */
  clusterMembers(): Array<Client<S> | RemoteClient<S>> {
    const all: Array<Client<S> | RemoteClient<S>> = [];
    for (const session of this.members) all.push(session.client);
    for (const table of this.remote.values()) for (const member of table.values()) all.push(member);
    return all;
  }

  /** Recomputes what follows from the settings (after `config()`). */
  applyThreshold(): void {
    // Congestion is seen at fan-out, so a receiver can pass highWaterMark by this much before senders are held:
    // a small part of the room between highWaterMark and maxQueuedBytes.
    const { highWaterMark, maxQueuedBytes } = this.settings;
    this.turn.threshold = Math.max(0, Math.min(256 * 1024, highWaterMark / 4, (maxQueuedBytes - highWaterMark) / 4));
  }

  /** Makes the fan-out call the forward filter for every delivery (once one is registered or overridden). */
  enableForwarding(): void {
    if (this.turn.forward !== null) return;
    const owner = this.owner;
    this.turn.forward = (message, receiver, sender) => {
      let result: ForwardResult;
      try {
        result = owner.forwardFilter(message, receiver.client, sender);
      } catch (error) {
        return this.forwardFailed(error, receiver);
      }
      if (result === undefined) return undefined;
      const next = nextData(message, result);
      if (next instanceof Error) return this.forwardFailed(next, receiver);
      return next === message ? undefined : next;
    };
  }

  private forwardFailed(error: unknown, receiver: Session<S>): Buffer | null | undefined {
    this.counters.filterErrors += 1;
    this.owner.report(error, 'forwardFilter', receiver.client);
    return this.settings.filterErrors === 'drop' ? null : undefined;
  }

  // ---------------------------------------------------------------- TransportHost

  adopt(connection: Connection, pass: GatePass): void {
    const session = this.createSession(connection, pass);
    this.log.debug('%s connected', session);
    session.admit();
  }

  refuse(connection: Connection, pass: GatePass, reason: DenyReason): void {
    this.createSession(connection, pass).deny(reason);
  }

  report(error: unknown): void {
    this.owner.report(error, 'server');
  }

  private createSession(connection: Connection, pass: GatePass): Session<S> {
    const node = this.owner.node;
    const session = new Session<S>(this.nextId++, connection, pass, this, (self) => new Client<S>(self, node));
    this.sessions.add(session);
    return session;
  }

  // ---------------------------------------------------------------- admission

  /** Runs the access decision: the decision, or ACCESS_FAILED when it threw or rejected (which denies). */
  decideAccess(session: Session<S>): AccessOutcome | Promise<AccessOutcome> {
    const client = session.client;
    const failed = (error: unknown): typeof ACCESS_FAILED => {
      this.log.warn('access filter failed for %s, denying: %s', session, toError(error).message);
      this.owner.report(error, 'accessFilter', client);
      return ACCESS_FAILED;
    };
    try {
      const decision = this.owner.accessFilter(client);
      if (isPromiseLike(decision)) return Promise.resolve(decision).then(undefined, failed);
      return decision;
    } catch (error) {
      return failed(error);
    }
  }

  joined(session: Session<S>): void {
    this.members.add(session);
    this.turn.enter(session);
    this.log.debug('%s joined', session);
    this.presence(session, EnvelopeKind.Join);
    this.owner.emitConnect(session.client);
  }

  denied(session: Session<S>, reason: DenyReason): void {
    this.counters.denials[reason] += 1;
    this.log.info('%s denied: %s', session, reason);
    this.owner.emitDeny(session.client, reason);
  }

  /** Takes a leaving client out of everything that could send to it or wait for it. */
  leftBroadcast(session: Session<S>): void {
    this.members.delete(session);
    if (session.rooms !== null) this.rooms.leaveAll(session, session.rooms);
    this.turn.exit(session);
    this.flow.forgetReceiver(session);
  }

  joinRoom(session: Session<S>, room: string): boolean {
    if (session.phase !== 'member') return false;
    return this.rooms.join(room, session, (session.rooms ??= new Set()));
  }

  leaveRoom(session: Session<S>, room: string): boolean {
    return session.rooms !== null && this.rooms.leave(room, session, session.rooms);
  }

  // ---------------------------------------------------------------- the message path

  /** Runs the data filters on one message from `session`, then broadcasts it; a Promise while one is async. */
  process(session: Session<S>, payload: Buffer, wire: Buffer): Promise<void> | undefined {
    if (!this.owner.filtering) {
      this.publish(wire, session.client);
      return undefined;
    }
    const client = session.client;
    let result: FilterResult | Promise<FilterResult>;
    try {
      result = this.owner.filter(payload, client);
    } catch (error) {
      result = this.filterFailed(error, client, payload);
    }
    if (isPromiseLike(result)) {
      return Promise.resolve(result)
        .then(undefined, (error: unknown) => this.filterFailed(error, client, payload))
        .then((resolved) => {
          // Sent away while the filter ran: what it still had waiting is not broadcast.
          if (!session.in.dropped) this.filtered(client, payload, wire, resolved);
        });
    }
    this.filtered(client, payload, wire, result);
    return undefined;
  }

  private filtered(client: Client<S>, payload: Buffer, wire: Buffer, result: FilterResult): void {
    let next = nextData(payload, result);
    if (next instanceof Error) next = this.filterFailed(next, client, payload);
    if (next === payload) {
      this.publish(wire, client);
      return;
    }
    if (next === null) {
      this.counters.filtered += 1;
      return;
    }
    let encoded: Buffer;
    try {
      encoded = this.framing.encode(next);
    } catch (error) {
      this.owner.report(error, 'framing', client);
      return;
    }
    this.publish(encoded, client);
  }

  /** A filter threw: reported; the data goes on unchanged (as Tcl) or, when failing closed, is dropped. */
  filterFailed(thrown: unknown, client: Client<S>, input: Buffer): Buffer | null {
    this.counters.filterErrors += 1;
    this.log.warn('filter failed on data from %s: %s', client, toError(thrown).message);
    this.owner.report(thrown, 'filter', client);
    return this.settings.filterErrors === 'drop' ? null : input;
  }

  /** A filtered message from a local client: counted, `data`, then the (overridable) broadcast. */
  publish(message: Buffer, client: Client<S>): void {
    // Queued for a slow reader, a small view would keep its whole read buffer alive: send a copy instead.
    if (pinsLargeBuffer(message)) message = Buffer.from(message);
    client.messagesIn += 1;
    this.counters.messagesIn += 1;
    this.owner.emitData(message, client);
    const previous = this.sender;
    this.sender = client;
    try {
      this.owner.broadcast(message, client);
    } catch (error) {
      this.owner.report(error, 'broadcast', client);
    } finally {
      this.sender = previous;
    }
  }

  /** One delivery into this turn's log; the sender is the client being broadcast for, or null. */
  deliver(message: Buffer, target: Target<S>): void {
    const rooms = target.rooms === undefined ? null : target.rooms;
    if (rooms !== null && rooms.length === 0) return;
    if (this.members.size === 0 && this.turn.outlet === null) return;
    const except = target.except === undefined || target.except === null ? null : target.except.session;
    this.turn.append(message, this.sender, except, rooms, target.local !== true);
  }

  /** One stream message as WebSocket frames (text per line in line framing, else binary). */
  wsEncode(message: Buffer): Buffer {
    return messageFrames(message, this.lines);
  }

  /** The decoder of a new connection: the framing's for streams; whole messages for WebSocket. */
  decoderFor(connection: Connection): Decoder {
    return connection.codec === 'ws'
      ? new MessageDecoder(this.lines, this.settings)
      : this.framing.createDecoder(this.settings);
  }

  overflowed(session: Session<S>, bytes: number): void {
    const max = this.settings.maxMessageBytes;
    if (this.settings.lineOverflow === 'discard') {
      this.log.info('%s sent a message of %d bytes (max %d): discarded', session, bytes, max);
      this.limit(session, 'line-too-long');
      session.send(Buffer.from(`error: message longer than ${max} bytes discarded\n`));
      return;
    }
    this.log.info('%s sent a message of %d bytes (max %d): disconnecting', session, bytes, max);
    session.send(Buffer.from(`error: message longer than ${max} bytes; closing\n`));
    const error = withCode(new RangeError(`message longer than ${max} bytes`), 'ERR_LINE_TOO_LONG');
    session.leave('line-too-long', error, true);
  }

  /** A receiver passed `maxQueuedBytes`: disconnected, or `dropped` messages dropped for it. */
  slowConsumer(session: Session<S>, dropped: number): void {
    if (dropped === 0) {
      const { maxQueuedBytes } = this.settings;
      this.log.warn(
        '%s is a slow consumer (%d bytes queued, max %d): disconnecting',
        session,
        session.out.backlog,
        maxQueuedBytes,
      );
      session.leave('slow-consumer', undefined, false);
      return;
    }
    session.client.drops += dropped;
    this.counters.drops += dropped;
    if (!session.out.dropping) {
      session.out.dropping = true;
      this.log.warn('%s is a slow consumer (%d bytes queued): dropping messages for it', session, session.out.backlog);
      this.limit(session, 'slow-consumer');
    }
  }

  /** A limit acted on a client that stays: counted now, reported once the fan-out in progress is over. */
  limit(session: Session<S>, kind: LimitKind): void {
    this.counters.limits[kind] += 1;
    this.turn.defer(() => this.owner.emitLimit(session.client, kind));
  }

  private sendTimedOut(session: Session<S>): void {
    if (session.out.backlog === 0) return;
    const { sendTimeout } = this.settings;
    this.log.warn(
      '%s took nothing for %d ms with %d bytes waiting: disconnecting',
      session,
      sendTimeout,
      session.out.backlog,
    );
    session.leave(
      'send-timeout',
      withCode(new Error(`took no bytes for ${sendTimeout} ms`), 'ERR_SEND_TIMEOUT'),
      false,
    );
  }

  private messageTimedOut(session: Session<S>): void {
    const { messageTimeout } = this.settings;
    this.log.info('%s left a message unfinished for %d ms: disconnecting', session, messageTimeout);
    const error = withCode(new Error(`message unfinished after ${messageTimeout} ms`), 'ERR_MESSAGE_TIMEOUT');
    session.leave('message-timeout', error, true);
  }

  // ---------------------------------------------------------------- the end

  /** A client that joined has left and its input is out: exit filters, then `exit`. A Promise while async. */
  exited(session: Session<S>, reason: ExitReason): Promise<void> | undefined {
    this.counters.disconnects[reason] += 1;
    this.presence(session, EnvelopeKind.Leave);
    this.log.debug('%s left: %s', session, reason);
    const client = session.client;
    const emit = (): void => this.owner.emitExit(client, reason, session.exitError);
    const running = callGuarded(
      () => this.owner.exitFilter(client, reason),
      (error) => this.owner.report(error, 'exitFilter', client),
    );
    if (running === undefined) {
      emit();
      return undefined;
    }
    return running.then(emit);
  }

  /** A session is over. */
  gone(session: Session<S>): void {
    this.sessions.delete(session);
    if (this.sessions.size === 0 && this.allGone !== null) this.allGone();
  }

  /**
   * Shuts every connection down: members get what is queued for them (up to `timeout` ms), clients still
   * awaiting access are denied (`destroyed`); resolves once every exit has run (or `timeout` passed twice).
   */
  shutdown(timeout: number): Promise<void> {
    this.destroyed = true;
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      const finish = (): void => {
        if (timer !== null) clearTimeout(timer);
        this.allGone = null;
        resolve();
      };
      if (this.sessions.size === 0) return finish();
      this.allGone = finish;
      // Hooks that never settle must not hold destroy() forever.
      timer = setTimeout(
        () => {
          this.log.warn('%d clients still closing after %d ms', this.sessions.size, 2 * timeout);
          finish();
        },
        2 * timeout + 100,
      );
      timer.unref();
      for (const session of [...this.sessions]) session.shutdown(timeout);
    });
  }

  /** Stops every timer. */
  stop(): void {
    this.turn.stop();
    this.flow.stop();
    this.budget.stop();
    this.sendDeadlines.stop();
    this.messageDeadlines.stop();
  }
}
