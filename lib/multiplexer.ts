import { EventEmitter } from 'eventemitter3';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Client, MESSAGE_OVERHEAD, type ClientOwner, type ExitReason } from './client';
import { invalidArgument, toError, withCode } from './errors';
import { resolveFraming, type Framing, type MessageSink } from './framing';
import { Logger } from './log';
import {
  parseSetting,
  resolveSettings,
  settingKey,
  type MultiplexerOptions,
  type SettingKey,
  type Settings,
  type TlsServerOptions,
} from './options';

/** What a data filter returns: new data, `undefined` to pass the data on unchanged, `null` or `false` to drop it. */
export type FilterResult = Buffer | string | null | false | undefined | void;

/**
 * A data filter (Tcl `AddFilter`): gets the data and its sender, returns what to broadcast.
 *
 * In `raw` framing `data` is a chunk as it was read (any boundaries); in `line` framing it is one line
 * without its terminator, and the result gets a `\n` appended; with a custom framing, one message of it.
 */
export type DataFilter<S extends object = Record<string, unknown>> = (
  data: Buffer,
  client: Client<S>,
) => FilterResult | Promise<FilterResult>;

/** What an access filter returns: `-1` or `false` denies, anything else grants. */
export type AccessDecision = boolean | number | string | null | undefined | void;

/** An access filter (Tcl `AddAccessFilter`): decides whether a new client may join. Throwing denies. */
export type AccessFilter<S extends object = Record<string, unknown>> = (
  client: Client<S>,
) => AccessDecision | Promise<AccessDecision>;

/** An exit filter (Tcl `AddExitFilter`): runs once when a client that joined leaves. Its result is ignored. */
export type ExitFilter<S extends object = Record<string, unknown>> = (client: Client<S>, reason: ExitReason) => unknown;

/** Why a connection was refused before it joined. */
export type DenyReason =
  /** An access filter returned `-1` or `false`. */
  | 'access-filter'
  /** An access filter threw or rejected (fail closed). */
  | 'access-error'
  /** `maxClients` were connected already. */
  | 'max-clients'
  /** `maxConnectionsPerAddress` were connected from its address already. */
  | 'max-per-address'
  /** The multiplexer was shutting down. */
  | 'destroyed';

/** A limit that acted on a client without disconnecting it. */
export type LimitKind =
  /** Its backlog passed `maxQueuedBytes`: messages for it are being dropped (reported once per episode). */
  | 'slow-consumer'
  /** It held senders back for `stallTimeout` ms in all while others kept up: senders no longer wait for it. */
  | 'lagging'
  /** A line past `maxMessageBytes` was discarded (`lineOverflow: 'discard'`). */
  | 'line-too-long'
  /** It passed its rate limit: reading from it pauses until the rate allows more. */
  | 'rate-limit';

/** Where an error reported through the `error` event came from. */
export interface ErrorContext<S extends object = Record<string, unknown>> {
  /** The hook, listener or operation that failed. */
  readonly source: 'filter' | 'accessFilter' | 'exitFilter' | 'broadcast' | 'framing' | 'listener' | 'server';
  /** The client concerned, if any. */
  readonly client?: Client<S>;
}

/** The events of a {@link Multiplexer}, with their listener signatures. */
export interface MultiplexerEvents<S extends object = Record<string, unknown>> {
  /** Listening: a TCP address, or the Unix socket path. */
  listening: (address: net.AddressInfo | string) => void;
  /** A client passed the access filters and joined the broadcast. */
  connect: (client: Client<S>) => void;
  /** A message from `client` is being broadcast: the bytes receivers get, after the data filters. */
  data: (message: Buffer, client: Client<S>) => void;
  /** A client that joined has left, after the exit filters ran. `error` is set for socket errors. */
  exit: (client: Client<S>, reason: ExitReason, error?: Error) => void;
  /** A connection was refused before it joined; its socket is closed. */
  deny: (client: Client<S>, reason: DenyReason) => void;
  /** A limit acted on a client that stays connected. */
  limit: (client: Client<S>, limit: LimitKind) => void;
  /** User code threw or rejected, or the listening socket failed to accept. The server keeps running. */
  error: (error: Error, context: ErrorContext<S>) => void;
  /** `destroy()` finished: the listener and every client are closed. */
  close: () => void;
}

/** Where to listen: a TCP port and host, or a Unix socket path. */
export interface ListenOptions {
  /** TCP port; 0 picks a free one. Default 0. */
  port?: number;
  /** Interface to bind; default all (IPv6 and IPv4). */
  host?: string;
  /** A Unix socket path instead of TCP. */
  path?: string;
  /** Pending-connection queue length. */
  backlog?: number;
}

/** Options of {@link Multiplexer.destroy}. */
export interface DestroyOptions {
  /** How long to let healthy clients take what is queued for them before closing them hard (ms). Default 5000. */
  timeout?: number;
}

/** Counters and gauges of one multiplexer, as returned by {@link Multiplexer.stats}. */
export interface MultiplexerStats {
  /** Clients connected, including those awaiting an access decision. */
  connections: number;
  /** Clients that joined the broadcast and are still in it. */
  clients: number;
  messagesIn: number;
  bytesIn: number;
  /** Messages handed to client sockets (one per receiver). */
  messagesOut: number;
  bytesOut: number;
  /** Bytes waiting to be sent, over all clients. */
  queuedBytes: number;
  /** Messages dropped under a `drop-*` slow-consumer policy. */
  drops: number;
  /** Messages a data filter dropped. */
  filtered: number;
  /** Data filters that threw or rejected. */
  filterErrors: number;
  /** Other hooks and listeners that threw or rejected. */
  hookErrors: number;
  /** Clients whose reading is paused at the moment, for any reason. */
  pausedClients: number;
  /** Departures of joined clients, by reason. */
  disconnects: Record<ExitReason, number>;
  /** Refused connections, by reason. */
  denials: Record<DenyReason, number>;
  /** Limits that acted without disconnecting, by kind. */
  limits: Record<LimitKind, number>;
}

const PAUSE_PENDING = 1;
const PAUSE_CONGESTION = 2;
const PAUSE_RATE = 4;

const HOLD_ACCESS = 1;
const HOLD_FILTER = 2;
const HOLD_RATE = 4;

/** Departures the client chose (or its network did): what it sent before still goes out. */
const SELF_INFLICTED = new Set<ExitReason | null>(['eof', 'reset', 'error']);

/** Ms of hold budget a congested client earns back per ms spent below the mark. */
const HOLD_REFILL = 4;
/** Default time a TLS client has to finish its handshake. */
const TLS_HANDSHAKE_TIMEOUT = 10_000;

let instances = 0;

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

function zeroes<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>;
}

const EXIT_REASONS: readonly ExitReason[] = [
  'eof',
  'reset',
  'error',
  'kicked',
  'slow-consumer',
  'line-too-long',
  'rate-limit',
  'idle',
  'destroy',
];
const DENY_REASONS: readonly DenyReason[] = [
  'access-filter',
  'access-error',
  'max-clients',
  'max-per-address',
  'destroyed',
];
const LIMIT_KINDS: readonly LimitKind[] = ['slow-consumer', 'lagging', 'line-too-long', 'rate-limit'];

/** IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is reported as the IPv4 address, as Tcl does. */
function normalizeAddress(address: string | undefined): string {
  if (address === undefined) return 'local';
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/**
 * A one-to-many message server: what one client sends, every other client receives.
 *
 * The path of a message, in order: connect → `accessFilter` → read → frame → `filter` → `data` event →
 * `broadcast` → per-client queue → write; and when a client leaves, `exitFilter` → `exit` event.
 *
 * @typeParam S - the shape of `client.state`
 * @example
 * const mux = new Multiplexer({ framing: 'line' });
 * mux.addFilter((line, client) => `${client.address}: ${line}`);
 * await mux.listen(7777);
 */
export class Multiplexer<S extends object = Record<string, unknown>> extends EventEmitter<MultiplexerEvents<S>> {
  /** The instance name, used in log namespaces (`multiplexer:<name>:<level>`). */
  readonly name: string;
  /** The instance's logger; its threshold is the `debugLevel` setting. */
  readonly log: Logger;
  /** The framing in use. */
  readonly framing: Framing;

  private readonly current: Settings;
  private readonly tlsOptions: TlsServerOptions | undefined;
  private readonly secureContext: tls.SecureContext | null;
  private readonly filters: DataFilter<S>[] = [];
  private readonly accessFilters: AccessFilter<S>[] = [];
  private readonly exitFilters: ExitFilter<S>[] = [];
  private readonly members = new Set<Client<S>>();
  private readonly connections = new Set<Client<S>>();
  private readonly perAddress = new Map<string, number>();
  /** TLS connections still in their handshake. */
  private readonly handshaking = new Set<tls.TLSSocket>();
  /** Open TCP connections, in any phase: what `maxClients` counts. */
  private openSockets = 0;
  private readonly congestion = new Set<Client<S>>();
  private readonly heldSenders = new Set<Client<S>>();
  /** Receivers that spent their hold budget and are still behind: senders do not wait for them. */
  private readonly laggards = new Set<Client<S>>();
  private lastCongestionCheck = 0;
  private readonly guardedListeners = new WeakMap<object, Map<string, (...args: unknown[]) => void>>();
  private readonly owner: ClientOwner;
  private server: net.Server | null = null;
  private nextId = 0;
  private dirty: Client<S>[] = [];
  private spare: Client<S>[] = [];
  private flushTimer: NodeJS.Immediate | null = null;
  /** This turn's broadcasts, not yet given to the members, and whom each one skips. */
  private turn: Buffer[] = [];
  private turnExcept: (Client<S> | undefined)[] = [];
  private turnBytes = 0;
  /** Numbers the logs: a member receives from the log whose number it holds (`Client.turnSeq`). */
  private turnSeq = 0;
  private spareTurn: Buffer[] = [];
  private spareExcept: (Client<S> | undefined)[] = [];
  private readonly offsets: number[] = [0];
  /** Senders to release once the fan-out in progress is done. */
  private releaseAfterFanOut = false;
  /** The log being given out, while `fanOut` runs. */
  private fanning: { messages: Buffer[]; excepts: (Client<S> | undefined)[]; seq: number } | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private destroyed: Promise<void> | null = null;
  private rateLimited = false;
  /** A turn's log goes out early once it holds this many bytes (see `fanOutThreshold`). */
  private fanOutBytes = 0;
  /** Set by destroy(): called when the last client has closed. */
  private allClosed: (() => void) | null = null;
  private readonly counters = {
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

  /**
   * Creates an instance (Tcl `::multiplexer::create`). Options are validated at once; bad ones throw a
   * TypeError with `code: 'ERR_INVALID_OPTION'` naming the option and what it accepts.
   */
  constructor(options: MultiplexerOptions = {}) {
    super();
    this.current = resolveSettings(options);
    this.framing = resolveFraming(options.framing);
    this.tlsOptions = options.tls;
    if (options.tls !== undefined && (typeof options.tls !== 'object' || options.tls === null)) {
      throw invalidArgument('tls must be an object of tls.createServer options (key, cert, ...)');
    }
    // Built now so that a bad key or certificate fails here, not at the first connection.
    this.secureContext = options.tls === undefined ? null : tls.createSecureContext(options.tls);
    this.name = options.name ?? `mp${instances}`;
    instances += 1;
    this.log = new Logger(`multiplexer:${this.name}`);
    this.log.level = this.current.debugLevel;
    this.rateLimited = this.current.maxBytesPerSecond > 0 || this.current.maxMessagesPerSecond > 0;
    this.fanOutBytes = fanOutThreshold(this.current);
    this.owner = this.createOwner();
  }

  // ---------------------------------------------------------------- hooks

  /**
   * Adds a data filter (Tcl `AddFilter`). Filters run in registration order, each on the previous one's
   * result; the last result is broadcast. A filter may be async: the sender's later messages wait, so
   * everyone still receives them in the order sent.
   * @example
   * mux.addFilter((line, client) => `${client.state.nick}: ${line}`);
   */
  addFilter(filter: DataFilter<S>): this {
    this.filters.push(assertFunction(filter, 'filter'));
    return this;
  }

  /**
   * Adds an access filter (Tcl `AddAccessFilter`). Filters run in registration order when a client
   * connects; `-1` or `false` (or a throw) denies and closes it at once. Until all have granted, the client
   * is not part of the broadcast, and what it sends meanwhile waits.
   * @example
   * mux.addAccessFilter((client) => client.address === '127.0.0.1' || -1);
   */
  addAccessFilter(filter: AccessFilter<S>): this {
    this.accessFilters.push(assertFunction(filter, 'access filter'));
    return this;
  }

  /**
   * Adds an exit filter (Tcl `AddExitFilter`): it runs once when a client that joined leaves, for
   * whatever reason. Errors are logged and ignored; the result is ignored.
   * @example
   * mux.addExitFilter((client, reason) => mux.sendToAll(`${client.state.nick} left (${reason})\n`));
   */
  addExitFilter(filter: ExitFilter<S>): this {
    this.exitFilters.push(assertFunction(filter, 'exit filter'));
    return this;
  }

  /**
   * Transforms one message before it is broadcast. The default runs the filters added with `addFilter`;
   * override it in a subclass (and call `super.filter` to keep them). Returns a Promise only when a filter
   * is async.
   */
  filter(data: Buffer, client: Client<S>): FilterResult | Promise<FilterResult> {
    return this.runFilters(data, client, 0);
  }

  /**
   * Decides whether a new client may join. The default runs the filters added with `addAccessFilter`;
   * override it in a subclass. `-1` or `false` denies.
   */
  accessFilter(client: Client<S>): AccessDecision | Promise<AccessDecision> {
    return this.runAccessFilters(client, 0);
  }

  /**
   * Runs when a client that joined leaves. The default runs the filters added with `addExitFilter`, each
   * guarded; override it in a subclass.
   */
  exitFilter(client: Client<S>, reason: ExitReason): void | Promise<void> {
    for (const exitFilter of this.exitFilters) this.callHook('exitFilter', client, () => exitFilter(client, reason));
  }

  /**
   * Sends one message to its receivers: by default every client that joined, except the sender unless
   * `sendToOrigin` is set. Override it for rooms or private messages; queue with `client.send()`.
   * Runs for every message: keep it free of allocations.
   * @param message the bytes to send (the same Buffer goes to every receiver; do not modify it)
   * @param sender the client it came from
   */
  protected broadcast(message: Buffer, sender: Client<S>): void {
    this.enqueueAll(message, this.current.sendToOrigin ? undefined : sender);
  }

  // ---------------------------------------------------------------- server code API

  /** The current settings, for subclasses (a `broadcast` override reads `sendToOrigin` here). */
  protected get settings(): Readonly<Settings> {
    return this.current;
  }

  /** The clients that joined the broadcast, in the order they joined. */
  get clients(): ReadonlySet<Client<S>> {
    return this.members;
  }

  /** Server code sends `data` to every client that joined, except `except`. Strings are sent as UTF-8. */
  sendToAll(data: Buffer | string, except?: Client<S>): void {
    this.enqueueAll(typeof data === 'string' ? Buffer.from(data) : data, except);
  }

  /**
   * Sends the same Buffer to every member but `except`. It goes into this turn's log, which `fanOut` gives
   * to every member once per event-loop turn: the cost of a message does not grow with the receivers.
   */
  private enqueueAll(message: Buffer, except: Client<S> | undefined): void {
    if (this.members.size === 0) return;
    const turn = this.turn;
    if (turn.length === 0 && this.flushTimer === null) this.flushTimer = setImmediate(this.flushAll);
    turn.push(message);
    this.turnExcept.push(except);
    this.turnBytes += message.length + MESSAGE_OVERHEAD;
    // A large turn goes out early, before it could fill a queue on its own: the bounds and congestion checks keep up.
    if (this.turnBytes >= this.fanOutBytes) this.fanOut();
  }

  /**
   * Gives this turn's log to every member: the messages are copied once, back to back, and each member
   * takes its share (see `Client.takeTurn`). Broadcasts made meanwhile (by user code called from here) go
   * to the next log.
   */
  private fanOut(): void {
    const messages = this.turn;
    const count = messages.length;
    if (count === 0 || this.fanning !== null) return;
    const excepts = this.turnExcept;
    const seq = this.turnSeq;
    this.fanning = { messages, excepts, seq };
    this.turn = this.spareTurn;
    this.turnExcept = this.spareExcept;
    this.turnBytes = 0;
    this.turnSeq = seq + 1;
    const offsets = this.offsets;
    offsets.length = count + 1;
    offsets[0] = 0;
    for (let i = 0; i < count; i += 1) offsets[i + 1] = offsets[i] + messages[i].length;
    try {
      const shared = count === 1 ? messages[0] : Buffer.concat(messages, offsets[count]);
      for (const client of this.members) {
        if (client.turnSeq !== seq) continue; // joined since, or caught up already
        client.takeTurn(messages, excepts, seq, shared, offsets);
        client.finishTurn(seq);
      }
    } finally {
      this.fanning = null;
      messages.length = 0;
      excepts.length = 0;
      this.spareTurn = messages;
      this.spareExcept = excepts;
    }
    if (this.releaseAfterFanOut) {
      this.releaseAfterFanOut = false;
      if (this.congestion.size === 0) this.releaseSenders();
    }
  }

  /**
   * Queues for one member what this turn's logs hold for it and it has not taken yet: the rest of the log
   * being given out, if any, then the current one.
   */
  private catchUp(client: Client<S>): void {
    const fanning = this.fanning;
    if (fanning !== null && client.turnSeq === fanning.seq) {
      client.queueShare(fanning.messages, fanning.excepts, fanning.seq);
      client.finishTurn(fanning.seq);
    }
    // User code run by a drop may give the current log out early: then go on with the next one.
    while (client.turnSeq === this.turnSeq && client.turnFrom < this.turn.length)
      client.queueShare(this.turn, this.turnExcept, this.turnSeq);
  }

  /** Writes this turn's broadcasts, then every client with a queue. */
  private readonly flushAll = (): void => {
    this.fanOut();
    this.flushTimer = null;
    if (this.turn.length > 0) this.flushTimer = setImmediate(this.flushAll); // broadcast by user code during fanOut
    const dirty = this.dirty;
    this.dirty = this.spare;
    for (let i = 0; i < dirty.length; i += 1) dirty[i].flush();
    dirty.length = 0;
    this.spare = dirty;
  };

  /** Server code sends `data` to one client. Same as `client.send(data)`. */
  sendTo(client: Client<S>, data: Buffer | string): boolean {
    return client.send(data);
  }

  /** Disconnects one client (it gets what is queued for it first). Same as `client.disconnect(reason)`. */
  disconnect(client: Client<S>, reason: ExitReason = 'kicked'): void {
    client.disconnect(reason);
  }

  // ---------------------------------------------------------------- configuration

  /** All settings. */
  config(): Readonly<Settings>;
  /** One setting, by camelCase or Tcl name (`sendtoorigin`, `debuglevel`). */
  config<K extends SettingKey>(key: K): Settings[K];
  config(key: string): Settings[SettingKey];
  /**
   * Changes one setting (Tcl `Config key value`), by camelCase or Tcl name. Tcl-style values such as `1`,
   * `"yes"` or `"4096"` are accepted. An unknown key or a bad value throws a TypeError naming the valid ones.
   */
  config(key: string, value: unknown): this;
  config(key?: string, value?: unknown): Readonly<Settings> | Settings[SettingKey] | this {
    if (key === undefined) return { ...this.current };
    const name = settingKey(key);
    if (arguments.length < 2) return this.current[name];
    this.apply(name, value);
    return this;
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Starts listening (Tcl `Init port`). Resolves with the bound address once listening; rejects with
   * `code: 'EADDRINUSE'` when the port is taken.
   * @param where a port (0 for any free one), a Unix socket path, or {@link ListenOptions}
   */
  listen(port?: number | (ListenOptions & { path?: undefined })): Promise<net.AddressInfo>;
  listen(path: string | (ListenOptions & { path: string })): Promise<string>;
  listen(where?: number | string | ListenOptions): Promise<net.AddressInfo | string>;
  listen(where: number | string | ListenOptions = 0): Promise<net.AddressInfo | string> {
    if (this.destroyed !== null)
      return Promise.reject(withCode(new Error('this multiplexer was destroyed'), 'ERR_DESTROYED'));
    if (this.server !== null)
      return Promise.reject(
        withCode(new Error('already listening; create another Multiplexer to listen twice'), 'ERR_ALREADY_LISTENING'),
      );
    let options: net.ListenOptions;
    try {
      options = listenOptions(where);
    } catch (error) {
      return Promise.reject(toError(error));
    }
    // TLS is layered on each accepted socket here rather than by tls.Server, so that connections in their
    // handshake are counted by the limits, time out, and are closed by destroy().
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        this.server = null;
        const where = options.path ?? `${options.host ?? 'all interfaces'} port ${options.port}`;
        const message =
          error.code === 'EADDRINUSE'
            ? `cannot listen on ${where}: address already in use`
            : `cannot listen on ${where}: ${error.message}`;
        reject(Object.assign(new Error(message, { cause: error }), { code: error.code ?? 'ERR_LISTEN' }));
      };
      server.once('error', onError);
      server.listen(options, () => {
        server.off('error', onError);
        if (this.destroyed !== null) {
          reject(withCode(new Error('destroyed while starting to listen'), 'ERR_DESTROYED'));
          return;
        }
        server.on('error', (error) => this.report(error, { source: 'server' }, 'accept failed: %s'));
        const address = server.address() ?? '';
        this.log.notice('listening on %o', address);
        this.emitGuarded('listening', address);
        resolve(address);
      });
    });
  }

  /** Tcl's `Init port`: same as `listen(port)`. */
  init(port: number): Promise<net.AddressInfo> {
    return this.listen(port);
  }

  /** The bound address while listening, else null. */
  address(): net.AddressInfo | string | null {
    return this.server?.address() ?? null;
  }

  /**
   * Shuts down: stops accepting, lets healthy clients take what is queued for them (up to `timeout` ms),
   * closes every client (exit filters run with reason `'destroy'`), frees everything. Idempotent: later
   * calls return the same Promise.
   */
  destroy(options: DestroyOptions = {}): Promise<void> {
    if (this.destroyed !== null) return this.destroyed;
    const timeout = options.timeout ?? 5000;
    this.destroyed = new Promise<void>((resolve) => {
      const server = this.server;
      const serverClosed = new Promise<void>((done) => {
        if (server === null) return done();
        server.once('error', () => done());
        // Closing a server whose listen() is still pending makes that listen() reject (see listen()).
        if (server.listening) server.close(() => done());
        else server.once('listening', () => server.close(() => done()));
      });
      for (const socket of this.handshaking) socket.destroy();
      const clientsClosed = new Promise<void>((done) => {
        if (this.connections.size === 0) return done();
        const timer = setTimeout(() => {
          for (const client of this.connections) client.leave('destroy', undefined, false);
        }, timeout);
        this.allClosed = () => {
          clearTimeout(timer);
          done();
        };
        for (const client of [...this.connections]) client.leave('destroy', undefined, client.member, timeout);
      });
      void Promise.all([serverClosed, clientsClosed]).then(() => {
        this.stopTimers();
        this.log.notice('destroyed');
        this.emitGuarded('close');
        this.removeAllListeners();
        resolve();
      });
    });
    return this.destroyed;
  }

  /** A snapshot of the counters; cheap enough to poll every second. */
  stats(): MultiplexerStats {
    let queuedBytes = 0;
    let pausedClients = 0;
    for (const client of this.connections) {
      queuedBytes += client.queuedBytes;
      if (client.pauseReasons !== 0) pausedClients += 1;
    }
    const c = this.counters;
    return {
      connections: this.connections.size,
      clients: this.members.size,
      messagesIn: c.messagesIn,
      bytesIn: c.bytesIn,
      messagesOut: c.messagesOut,
      bytesOut: c.bytesOut,
      queuedBytes,
      drops: c.drops,
      filtered: c.filtered,
      filterErrors: c.filterErrors,
      hookErrors: c.hookErrors,
      pausedClients,
      disconnects: { ...c.disconnects },
      denials: { ...c.denials },
      limits: { ...c.limits },
    };
  }

  // ---------------------------------------------------------------- listeners are user code too

  override on<T extends EventEmitter.EventNames<MultiplexerEvents<S>>>(
    event: T,
    fn: EventEmitter.EventListener<MultiplexerEvents<S>, T>,
    context?: unknown,
  ): this {
    return super.on(event, this.guardListener(event, fn), context);
  }

  override addListener<T extends EventEmitter.EventNames<MultiplexerEvents<S>>>(
    event: T,
    fn: EventEmitter.EventListener<MultiplexerEvents<S>, T>,
    context?: unknown,
  ): this {
    return super.addListener(event, this.guardListener(event, fn), context);
  }

  override once<T extends EventEmitter.EventNames<MultiplexerEvents<S>>>(
    event: T,
    fn: EventEmitter.EventListener<MultiplexerEvents<S>, T>,
    context?: unknown,
  ): this {
    return super.once(event, this.guardListener(event, fn), context);
  }

  override removeListener<T extends EventEmitter.EventNames<MultiplexerEvents<S>>>(
    event: T,
    fn?: EventEmitter.EventListener<MultiplexerEvents<S>, T>,
    context?: unknown,
    once?: boolean,
  ): this {
    const guarded = fn === undefined ? undefined : this.guardedListeners.get(fn)?.get(String(event));
    return super.removeListener(event, guarded ?? fn, context, once);
  }

  override off<T extends EventEmitter.EventNames<MultiplexerEvents<S>>>(
    event: T,
    fn?: EventEmitter.EventListener<MultiplexerEvents<S>, T>,
    context?: unknown,
    once?: boolean,
  ): this {
    return this.removeListener(event, fn, context, once);
  }

  /** Wraps a listener so that what it throws or rejects is logged and reported instead of escaping. */
  private guardListener<F>(event: string | symbol, fn: F): F {
    if (typeof fn !== 'function') throw invalidArgument(`listener for ${String(event)} must be a function`);
    const key = String(event);
    let byEvent = this.guardedListeners.get(fn);
    const known = byEvent?.get(key);
    if (known !== undefined) return known as F;
    const listener = fn as (...args: unknown[]) => unknown;
    const failed = (error: unknown): void => this.listenerFailed(key, error);
    // A plain function: eventemitter3 calls it with the context given to on(), or the emitter.
    const guarded = function (this: unknown, ...args: unknown[]): void {
      try {
        const result = listener.apply(this, args);
        if (isPromiseLike(result)) result.then(undefined, failed);
      } catch (error) {
        failed(error);
      }
    };
    if (byEvent === undefined) {
      byEvent = new Map();
      this.guardedListeners.set(fn, byEvent);
    }
    byEvent.set(key, guarded);
    return guarded as F;
  }

  private listenerFailed(event: string, thrown: unknown): void {
    this.counters.hookErrors += 1;
    const error = toError(thrown);
    this.log.error('%s listener failed: %s', event, error.stack ?? error.message);
    // An error listener that fails is only logged: reporting it again could loop.
    if (event !== 'error') this.emit('error', error, { source: 'listener' });
  }

  // ---------------------------------------------------------------- connection lifecycle

  /** A TCP connection arrived: count it, apply the connection limits, then TLS or straight to accept(). */
  private onConnection(raw: net.Socket): void {
    const address = normalizeAddress(raw.remoteAddress);
    const port = raw.remotePort ?? 0;
    const count = (this.perAddress.get(address) ?? 0) + 1;
    this.perAddress.set(address, count);
    this.openSockets += 1;
    raw.once('close', () => {
      this.openSockets -= 1;
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left === 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
    const { maxClients, maxConnectionsPerAddress } = this.current;
    let refusal: DenyReason | null = null;
    if (this.destroyed !== null) refusal = 'destroyed';
    else if (maxClients > 0 && this.openSockets > maxClients) refusal = 'max-clients';
    else if (maxConnectionsPerAddress > 0 && count > maxConnectionsPerAddress) refusal = 'max-per-address';
    if (refusal !== null) {
      raw.on('error', () => undefined); // it is being closed: nothing more to learn from it
      this.deny(new Client<S>(this.nextId++, raw, address, port, this.owner), refusal);
    } else if (this.secureContext === null) {
      this.accept(raw, address, port);
    } else {
      this.handshake(raw, this.secureContext, address, port);
    }
  }

  private handshake(raw: net.Socket, secureContext: tls.SecureContext, address: string, port: number): void {
    const options = this.tlsOptions ?? {};
    const socket = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext,
      requestCert: options.requestCert,
      rejectUnauthorized: options.rejectUnauthorized,
      ALPNProtocols: options.ALPNProtocols,
      SNICallback: options.SNICallback,
    });
    this.handshaking.add(socket);
    const fail = (why: string): void => {
      this.log.info('TLS handshake with %s:%d failed: %s', address, port, why);
      socket.destroy();
    };
    const onEnd = (): void => fail('closed during the handshake');
    const onError = (error: Error): void => fail(error.message);
    const timer = setTimeout(() => fail('timed out'), options.handshakeTimeout ?? TLS_HANDSHAKE_TIMEOUT);
    timer.unref();
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.once('close', () => {
      clearTimeout(timer);
      this.handshaking.delete(socket);
    });
    socket.once('secure', () => {
      clearTimeout(timer);
      this.handshaking.delete(socket);
      if (this.destroyed !== null) return fail('shutting down');
      if (options.requestCert === true && options.rejectUnauthorized !== false && !socket.authorized) {
        return fail(`client certificate rejected: ${String(socket.authorizationError)}`);
      }
      socket.off('end', onEnd);
      socket.off('error', onError);
      this.accept(socket, address, port);
    });
  }

  private accept(socket: net.Socket, address: string, port: number): void {
    const client = new Client<S>(this.nextId++, socket, address, port, this.owner);
    this.connections.add(client);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onSocketData(client, chunk));
    socket.on('end', () => this.onSocketEnd(client));
    socket.on('error', (error: NodeJS.ErrnoException) => this.onSocketError(client, error));
    socket.on('close', () => this.onSocketClose(client));
    socket.on('drain', () => client.onDrain());
    socket.on('timeout', () => {
      this.log.info('%s idle for %d ms', client, this.current.idleTimeout);
      client.leave('idle', undefined, true);
    });
    this.log.debug('%s connected', client);

    if (this.current.idleTimeout > 0) socket.setTimeout(this.current.idleTimeout);
    client.decoder = this.framing.createDecoder(this.current);
    client.sink = this.createSink(client);
    client.holds |= HOLD_ACCESS; // what it sends waits in its inbox until it is admitted
    let decision: AccessDecision | Promise<AccessDecision>;
    try {
      decision = this.accessFilter(client);
    } catch (error) {
      return this.accessFailed(client, error);
    }
    if (isPromiseLike(decision)) {
      decision.then(
        (result) => this.decide(client, result),
        (error: unknown) => this.accessFailed(client, error),
      );
    } else {
      this.decide(client, decision);
    }
  }

  private runAccessFilters(client: Client<S>, from: number): AccessDecision | Promise<AccessDecision> {
    for (let i = from; i < this.accessFilters.length; i += 1) {
      const result = this.accessFilters[i](client);
      if (isPromiseLike(result)) {
        // Once it has gone, later filters need not run for it.
        return Promise.resolve(result).then((resolved) =>
          denies(resolved) || client.closing ? resolved : this.runAccessFilters(client, i + 1),
        );
      }
      if (denies(result)) return result;
    }
    return true;
  }

  private accessFailed(client: Client<S>, thrown: unknown): void {
    this.counters.hookErrors += 1;
    const error = toError(thrown);
    this.log.warn('access filter failed for %s, denying: %s', client, error.message);
    this.emitGuarded('error', error, { source: 'accessFilter', client });
    if (!client.closing) this.deny(client, 'access-error');
  }

  private decide(client: Client<S>, decision: AccessDecision): void {
    if (client.closing) return; // it left, or the server is going down, while we waited
    if (denies(decision)) return this.deny(client, 'access-filter');
    client.member = true;
    this.members.add(client);
    client.turnSeq = this.turnSeq; // what was broadcast before it joined is not for it
    client.turnFrom = this.turn.length;
    this.log.debug('%s joined', client);
    this.emitGuarded('connect', client);
    client.holds &= ~HOLD_ACCESS;
    this.drainInbox(client);
    // It said all it had to say before it was admitted: now that it is out, it leaves.
    if (client.endedEarly && !client.closing && !this.current.allowHalfOpen) client.leave('eof', undefined, true);
  }

  private deny(client: Client<S>, reason: DenyReason): void {
    this.counters.denials[reason] += 1;
    this.log.info('%s denied: %s', client, reason);
    // Never joined, so no exit hooks. What an access filter queued for it (a reason, a banner) is still sent, as Tcl's close flushes.
    client.leave('kicked', undefined, client.queuedBytes > 0);
    this.emitGuarded('deny', client, reason);
  }

  private onSocketEnd(client: Client<S>): void {
    if (client.closing) return;
    this.drainStash(client);
    this.decode(client, null);
    if ((client.holds & HOLD_ACCESS) !== 0) {
      client.endedEarly = true; // admitted or not, decide() sees to it
      return;
    }
    if (!this.current.allowHalfOpen) client.leave('eof', undefined, true);
  }

  private onSocketError(client: Client<S>, error: NodeJS.ErrnoException): void {
    const reset = error.code === 'ECONNRESET' || error.code === 'EPIPE';
    this.log.debug('%s socket error: %s', client, error.message);
    if (!client.closing) this.drainStash(client); // what it sent before the error still goes out
    client.leave(reset ? 'reset' : 'error', error, false);
  }

  private onSocketClose(client: Client<S>): void {
    if (!this.connections.delete(client)) return;
    this.forget(client);
    client.closing = true;
    client.released();
    if (!client.exited && client.member) {
      // Its last messages (held by an async filter or a rate limit) go out first, then it is announced gone.
      if (client.holds !== 0 || client.inboxHead < client.inbox.length) client.exitPending = true;
      else this.runExit(client);
    }
    if (this.connections.size === 0 && this.allClosed !== null) this.allClosed();
  }

  /** Exit filters, then the `exit` event: once per client that joined. */
  private runExit(client: Client<S>): void {
    if (client.exited) return;
    client.exited = true;
    client.exitPending = false;
    const reason = client.exitReason ?? 'eof';
    this.counters.disconnects[reason] += 1;
    this.log.debug('%s left: %s', client, reason);
    this.callHook('exitFilter', client, () => this.exitFilter(client, reason));
    this.emitGuarded('exit', client, reason, client.exitError);
  }

  /** Takes a leaving client out of every structure that could send to it or wait for it. */
  private forget(client: Client<S>): void {
    this.members.delete(client);
    client.turnSeq = -1;
    this.heldSenders.delete(client);
    this.laggards.delete(client);
    this.endCongestion(client);
  }

  /** The client no longer holds senders back; when it was the last one, they go on. */
  private endCongestion(client: Client<S>): void {
    client.congested = false;
    if (!this.congestion.delete(client) || this.congestion.size !== 0) return;
    // During a fan-out, released senders could not be fanned out one by one: they go once it is done.
    if (this.fanning !== null) this.releaseAfterFanOut = true;
    else this.releaseSenders();
  }

  // ---------------------------------------------------------------- the message path

  private onSocketData(client: Client<S>, chunk: Buffer): void {
    client.bytesIn += chunk.length;
    this.counters.bytesIn += chunk.length;
    if (client.closing || client.decoder === null || client.sink === null) return;
    if (this.congestion.size !== 0 || client.stash !== null) {
      // A receiver is behind: this chunk waits, unread by the framing, until it catches up. Holding it costs
      // nothing extra (it is in memory already), whereas broadcasting it would add it to every queue.
      (client.stash ??= []).push(chunk);
      this.holdSender(client);
      return;
    }
    this.decode(client, chunk);
    if (this.congestion.size !== 0 && !client.closing) this.holdSender(client);
  }

  /** Frames a chunk (or, with null, the end of the stream); a framing that throws costs only this client. */
  private decode(client: Client<S>, chunk: Buffer | null): void {
    const { decoder, sink } = client;
    if (decoder === null || sink === null) return;
    try {
      if (chunk === null) decoder.end(sink);
      else decoder.write(chunk, sink);
    } catch (error) {
      this.report(error, { source: 'framing', client }, `framing ${this.framing.name} failed: %s`);
      client.leave('error', toError(error), false);
    }
  }

  /** Frames what a held sender sent while it waited. */
  private drainStash(client: Client<S>): void {
    const stash = client.stash;
    client.stash = null;
    if (stash !== null) for (const chunk of stash) this.decode(client, chunk);
  }

  private createSink(client: Client<S>): MessageSink {
    return {
      message: (payload, wire) => this.onMessage(client, payload, wire),
      overflow: (bytes) => this.onOverflow(client, bytes),
    };
  }

  private onMessage(client: Client<S>, payload: Buffer, wire: Buffer): void {
    // A client being disconnected gets nothing more broadcast, not even the rest of the chunk just read.
    if (client.closing) return;
    if (
      client.holds === 0 &&
      client.inbox.length === 0 &&
      (!this.rateLimited || this.takeTokens(client, wire.length))
    ) {
      this.process(client, payload, wire);
      return;
    }
    if (client.closing) return; // the rate limit disconnected it
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
    client.inbox.push(payload, wire);
    client.pendingBytes += wire.length + MESSAGE_OVERHEAD;
    if (client.pendingBytes > this.current.maxPendingBytes) this.pause(client, PAUSE_PENDING);
  }

  /** Runs the data filters on one message, then broadcasts it; async filters make later messages wait. */
  private process(client: Client<S>, payload: Buffer, wire: Buffer): void {
    if (this.filters.length === 0 && this.filter === Multiplexer.prototype.filter) {
      this.publish(wire, client);
      return;
    }
    let result: FilterResult | Promise<FilterResult>;
    try {
      result = this.filter(payload, client);
    } catch (error) {
      result = this.filterFailed(error, client, payload);
    }
    if (isPromiseLike(result)) {
      client.holds |= HOLD_FILTER;
      void Promise.resolve(result)
        .then(undefined, (error: unknown) => this.filterFailed(error, client, payload))
        .then((resolved) => {
          client.holds &= ~HOLD_FILTER;
          if (!this.sentAway(client)) this.filtered(client, payload, wire, resolved);
          this.drainInbox(client);
        });
      return;
    }
    this.filtered(client, payload, wire, result);
  }

  private filtered(client: Client<S>, payload: Buffer, wire: Buffer, result: FilterResult): void {
    const next = this.nextData(payload, result, client);
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
      this.report(error, { source: 'framing', client }, `framing ${this.framing.name} failed to encode: %s`);
      return;
    }
    this.publish(encoded, client);
  }

  /**
   * What a filter's result means for the data: the same Buffer (unchanged), another one, or null (dropped).
   * A result of another type is a failed filter.
   */
  private nextData(current: Buffer, result: FilterResult, client: Client<S>): Buffer | null {
    if (result === undefined) return current;
    if (result === null || result === false) return null;
    if (typeof result === 'string') return Buffer.from(result);
    const value: unknown = result; // JavaScript callers and casts can return anything
    if (Buffer.isBuffer(value)) return value;
    if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const error = new TypeError(
      `a filter returned ${describeValue(value)}; expected a Buffer, a string, undefined, null or false`,
    );
    return this.filterFailed(error, client, current) === null ? null : current;
  }

  /** True when the server sent the client away: what it still had waiting is not broadcast. */
  private sentAway(client: Client<S>): boolean {
    return client.closing && !SELF_INFLICTED.has(client.exitReason);
  }

  private runFilters(data: Buffer, client: Client<S>, from: number): FilterResult | Promise<FilterResult> {
    let current = data;
    for (let i = from; i < this.filters.length; i += 1) {
      let result: FilterResult | Promise<FilterResult>;
      try {
        result = this.filters[i](current, client);
      } catch (error) {
        result = this.filterFailed(error, client, current);
      }
      if (isPromiseLike(result)) {
        const input = current;
        return Promise.resolve(result)
          .then(undefined, (error: unknown) => this.filterFailed(error, client, input))
          .then((resolved) => {
            const next = this.nextData(input, resolved, client);
            return next === null ? null : this.runFilters(next, client, i + 1);
          });
      }
      const next = this.nextData(current, result, client);
      if (next === null) return null;
      current = next;
    }
    return current;
  }

  /** A filter threw: logged and reported; the data goes on unchanged (as Tcl) or, when failing closed, is dropped. */
  private filterFailed(thrown: unknown, client: Client<S>, input: Buffer): FilterResult {
    this.counters.filterErrors += 1;
    const error = toError(thrown);
    this.log.warn('filter failed on data from %s: %s', client, error.message);
    this.emitGuarded('error', error, { source: 'filter', client });
    return this.current.filterErrors === 'drop' ? null : input;
  }

  /** Processes waiting messages in order until one is held again (async filter, rate limit). */
  private drainInbox(client: Client<S>): void {
    while (client.inboxHead < client.inbox.length && client.holds === 0) {
      if (this.sentAway(client)) {
        client.dropInbox();
        break;
      }
      const payload = client.inbox[client.inboxHead];
      const wire = client.inbox[client.inboxHead + 1];
      if (this.rateLimited && !this.takeTokens(client, wire.length)) break;
      client.inboxHead += 2;
      client.pendingBytes -= wire.length + MESSAGE_OVERHEAD;
      this.process(client, payload, wire);
    }
    client.compactInbox();
    if (client.pendingBytes <= this.current.maxPendingBytes / 2) this.unpause(client, PAUSE_PENDING);
    if (client.exitPending && client.holds === 0 && client.inboxHead === client.inbox.length) this.runExit(client);
  }

  private publish(message: Buffer, sender: Client<S>): void {
    // Queued for a slow reader, a small view would keep its whole read buffer alive: send a copy instead.
    if (pinsLargeBuffer(message)) message = Buffer.from(message);
    sender.messagesIn += 1;
    this.counters.messagesIn += 1;
    this.emit('data', message, sender);
    try {
      this.broadcast(message, sender);
    } catch (error) {
      this.report(error, { source: 'broadcast', client: sender }, 'broadcast failed: %s');
    }
  }

  private onOverflow(client: Client<S>, bytes: number): void {
    const max = this.current.maxMessageBytes;
    if (this.current.lineOverflow === 'discard') {
      this.log.info('%s sent a message of %d bytes (max %d): discarded', client, bytes, max);
      this.limitActed(client, 'line-too-long');
      client.send(`error: message longer than ${max} bytes discarded\n`);
      return;
    }
    this.log.info('%s sent a message of %d bytes (max %d): disconnecting', client, bytes, max);
    client.send(`error: message longer than ${max} bytes; closing\n`);
    client.leave(
      'line-too-long',
      withCode(new RangeError(`message longer than ${max} bytes`), 'ERR_LINE_TOO_LONG'),
      true,
    );
  }

  // ---------------------------------------------------------------- flow control

  private pause(client: Client<S>, reason: number): void {
    if (client.pauseReasons === 0) client.socket.pause();
    client.pauseReasons |= reason;
  }

  private unpause(client: Client<S>, reason: number): void {
    if ((client.pauseReasons & reason) === 0) return;
    client.pauseReasons &= ~reason;
    if (client.pauseReasons === 0 && !client.closing) client.socket.resume();
  }

  /** A receiver is congested: the sender that just fed it waits until it drains. */
  private holdSender(client: Client<S>): void {
    this.heldSenders.add(client);
    this.pause(client, PAUSE_CONGESTION);
  }

  /** Every receiver caught up: held senders go on, each first framing what it sent while it waited. */
  private releaseSenders(): void {
    this.stopWatchdog();
    for (const sender of this.heldSenders) {
      // A sender released just now put a receiver behind again: the rest keep waiting for the next relief.
      if (this.congestion.size !== 0) return;
      this.heldSenders.delete(sender);
      if (!sender.closing) {
        this.drainStash(sender);
        this.fanOut(); // so that a receiver it puts behind is seen now
      }
      if (this.congestion.size !== 0 && !sender.closing) {
        this.heldSenders.add(sender);
        return;
      }
      this.unpause(sender, PAUSE_CONGESTION);
    }
  }

  /**
   * Receivers that hold senders back while most others keep up, or that take nothing at all, spend their hold
   * budget (`stallTimeout` in all); when it is spent they are lagging, slow consumers: senders stop waiting
   * for them. While as many receivers are behind as keep up and they are all reading, the server itself is
   * the bottleneck: everyone waits, nobody is blamed.
   */
  private checkCongestion(): void {
    const now = Date.now();
    const elapsed = now - this.lastCongestionCheck;
    this.lastCongestionCheck = now;
    const halfMark = this.current.highWaterMark / 2;
    const overloaded = this.members.size - this.congestion.size - this.laggards.size < this.congestion.size;
    for (const client of this.congestion) {
      if (client.queuedBytes <= halfMark) {
        this.owner.relieved(client); // drained without a 'drain' event (a small highWaterMark)
        continue;
      }
      // A reader that took nothing since the last check is stalled, overload or not.
      const stalled = client.drains === client.drainsAtCheck;
      client.drainsAtCheck = client.drains;
      if (overloaded && !stalled) continue;
      client.holdBudget -= Math.min(elapsed, now - client.congestedSince);
      if (client.holdBudget > 0) continue;
      client.holdBudget = 0;
      client.congested = false;
      client.lagging = true;
      this.laggards.add(client);
      this.congestion.delete(client);
      this.log.notice(
        '%s lagging: %d bytes queued for %d ms; senders no longer wait for it',
        client,
        client.queuedBytes,
        now - client.congestedSince,
      );
      this.limitActed(client, 'lagging');
    }
    if (this.congestion.size === 0) this.releaseSenders();
  }

  private stopWatchdog(): void {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.watchdog = null;
  }

  /**
   * Token buckets holding one second's worth: true when the message may go now. Otherwise the client is
   * held (its messages wait, reading pauses) until the rate allows more, or disconnected.
   */
  private takeTokens(client: Client<S>, bytes: number): boolean {
    const { maxMessagesPerSecond, maxBytesPerSecond, rateLimitAction } = this.current;
    const now = Date.now();
    const elapsed = (now - client.rateStamp) / 1000;
    client.rateStamp = now;
    client.messageTokens = Math.min(maxMessagesPerSecond, client.messageTokens + elapsed * maxMessagesPerSecond);
    client.byteTokens = Math.min(maxBytesPerSecond, client.byteTokens + elapsed * maxBytesPerSecond);
    const messagesShort = maxMessagesPerSecond > 0 && client.messageTokens < 1;
    // Throttling lets one message run into debt (paid by waiting after it); the disconnect action does not.
    const bytesShort =
      maxBytesPerSecond > 0 && (rateLimitAction === 'disconnect' ? client.byteTokens < bytes : client.byteTokens <= 0);
    if (!messagesShort && !bytesShort) {
      client.messageTokens -= 1;
      client.byteTokens -= bytes; // may go below zero: a large message is paid for by waiting afterwards
      return true;
    }
    if (rateLimitAction === 'disconnect') {
      this.log.info('%s passed its rate limit: disconnecting', client);
      client.leave('rate-limit', undefined, true);
      return false;
    }
    const wait = Math.max(
      messagesShort ? (1 - client.messageTokens) / maxMessagesPerSecond : 0,
      bytesShort ? (1 - client.byteTokens) / maxBytesPerSecond : 0,
    );
    client.holds |= HOLD_RATE;
    this.pause(client, PAUSE_RATE);
    this.limitActed(client, 'rate-limit');
    client.rateTimer = setTimeout(
      () => {
        client.rateTimer = null;
        client.holds &= ~HOLD_RATE;
        this.unpause(client, PAUSE_RATE);
        this.drainInbox(client);
      },
      Math.ceil(wait * 1000),
    );
    client.rateTimer.unref();
    return false;
  }

  // ---------------------------------------------------------------- settings

  private apply<K extends SettingKey>(key: K, value: unknown): void {
    const parsed = parseSetting(key, value);
    this.current[key] = parsed;
    this.log.debug('config %s = %o', key, parsed);
    if (key === 'debugLevel') this.log.level = this.current.debugLevel;
    if (key === 'idleTimeout')
      for (const client of this.connections) client.socket.setTimeout(this.current.idleTimeout);
    if (key === 'maxMessagesPerSecond' || key === 'maxBytesPerSecond') {
      this.rateLimited = this.current.maxBytesPerSecond > 0 || this.current.maxMessagesPerSecond > 0;
    }
    if (key === 'highWaterMark' || key === 'maxQueuedBytes') this.fanOutBytes = fanOutThreshold(this.current);
  }

  // ---------------------------------------------------------------- internals

  private createOwner(): ClientOwner {
    return {
      settings: this.current,
      scheduleFlush: (client) => {
        this.dirty.push(client);
        if (this.flushTimer === null) this.flushTimer = setImmediate(this.flushAll);
      },
      catchUp: (client) => this.catchUp(client),
      congested: (client) => {
        const now = Date.now();
        const { stallTimeout } = this.current;
        // Each client may hold senders back for stallTimeout in all (see checkCongestion), earning it back
        // while below the mark: a reader that stops again and again cannot stall the broadcast again and again.
        client.holdBudget =
          client.holdBudget < 0
            ? stallTimeout
            : Math.min(stallTimeout, client.holdBudget + (now - client.relievedAt) * HOLD_REFILL);
        client.congested = true;
        client.congestedSince = now;
        this.congestion.add(client);
        if (this.watchdog === null) {
          this.lastCongestionCheck = now;
          this.watchdog = setInterval(() => this.checkCongestion(), Math.max(5, Math.min(50, stallTimeout / 4)));
          this.watchdog.unref();
        }
      },
      relieved: (client) => {
        const now = Date.now();
        client.lagging = false;
        client.relievedAt = now;
        this.laggards.delete(client);
        this.endCongestion(client);
      },
      overflowed: (client, dropped) => {
        const typed = client as Client<S>;
        if (this.current.slowConsumer === 'disconnect') {
          this.log.warn(
            '%s is a slow consumer (%d bytes queued, max %d): disconnecting',
            client,
            client.queuedBytes,
            this.current.maxQueuedBytes,
          );
          client.leave('slow-consumer', undefined, false);
          return;
        }
        this.counters.drops += dropped;
        if (!client.dropping) {
          client.dropping = true;
          this.log.warn(
            '%s is a slow consumer (%d bytes queued): dropping messages for it',
            client,
            client.queuedBytes,
          );
          this.limitActed(typed, 'slow-consumer');
        }
      },
      leaving: (client) => {
        // Sent before it left on its own: still broadcast. Held when the server sends it away: dropped.
        if (!SELF_INFLICTED.has(client.exitReason)) {
          client.dropInbox();
          client.stash = null;
        }
        this.forget(client);
      },
      wrote: (bytes, messages) => {
        this.counters.bytesOut += bytes;
        this.counters.messagesOut += messages;
      },
    };
  }

  private limitActed(client: Client<S>, kind: LimitKind): void {
    this.counters.limits[kind] += 1;
    this.emitGuarded('limit', client, kind);
  }

  /** Calls user code that returns nothing useful; whatever it throws or rejects is logged and reported. */
  private callHook(source: ErrorContext['source'], client: Client<S>, hook: () => unknown): void {
    try {
      const result = hook();
      if (isPromiseLike(result))
        result.then(undefined, (error: unknown) => this.report(error, { source, client }, `${source} failed: %s`));
    } catch (error) {
      this.report(error, { source, client }, `${source} failed: %s`);
    }
  }

  private report(thrown: unknown, context: ErrorContext<S>, format: string): void {
    this.counters.hookErrors += 1;
    const error = toError(thrown);
    this.log.error(format, error.stack ?? error.message);
    this.emitGuarded('error', error, context);
  }

  /** Listeners are guarded when added; this also guards against anything else thrown while emitting. */
  private emitGuarded<T extends EventEmitter.EventNames<MultiplexerEvents<S>>>(
    event: T,
    ...args: EventEmitter.EventArgs<MultiplexerEvents<S>, T>
  ): void {
    try {
      this.emit(event, ...args);
    } catch (error) {
      this.log.error('%s listener failed: %s', String(event), toError(error).message);
    }
  }

  private stopTimers(): void {
    this.stopWatchdog();
    if (this.flushTimer !== null) clearImmediate(this.flushTimer);
    this.flushTimer = null;
    this.turn.length = 0;
    this.turnExcept.length = 0;
    this.turnBytes = 0;
  }
}

/**
 * How many bytes (each message counted with its overhead) a turn's log may hold before it goes out early.
 * Congestion is seen at fan-out, so a receiver can pass `highWaterMark` by this much (plus a chunk) before
 * senders are held: a small part of the room between `highWaterMark` and `maxQueuedBytes`.
 */
function fanOutThreshold(settings: Readonly<Settings>): number {
  return Math.max(
    0,
    Math.min(256 * 1024, settings.highWaterMark / 4, (settings.maxQueuedBytes - settings.highWaterMark) / 4),
  );
}

function denies(decision: AccessDecision): boolean {
  return decision === -1 || decision === false || decision === '-1';
}

function describeValue(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/** Views smaller than an eighth of a read buffer of over 16 KiB would keep all of it alive while queued. */
function pinsLargeBuffer(view: Buffer): boolean {
  const backing = view.buffer.byteLength;
  return backing > 16 * 1024 && view.length * 8 < backing;
}

function assertFunction<F>(value: F, what: string): F {
  if (typeof value !== 'function') throw invalidArgument(`${what} must be a function; got ${typeof value}`);
  return value;
}

function listenOptions(where: number | string | ListenOptions): net.ListenOptions {
  if (typeof where === 'number' || (typeof where === 'string' && /^\d+$/.test(where))) {
    return { port: checkPort(Number(where)) };
  }
  if (typeof where === 'string') return { path: where };
  if (typeof where !== 'object' || where === null)
    throw invalidArgument(`listen() takes a port, a path or { port, host, path }; got ${String(where)}`);
  if (where.path !== undefined) return { path: where.path, backlog: where.backlog };
  return { port: checkPort(where.port ?? 0), host: where.host, backlog: where.backlog };
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw invalidArgument(`port must be an integer from 0 to 65535; got ${port}`);
  return port;
}
