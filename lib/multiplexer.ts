import { EventEmitter } from 'eventemitter3';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Bus } from './bus/bus';
import { BusLink, type LinkStats } from './bus/link';
import { Client, type RemoteClient } from './client';
import { Hub, type HubOwner } from './core/hub';
import { ListenerGuard } from './core/listeners';
import { ClientsView } from './core/readonly-set';
import { callGuarded, runChain } from './core/user-code';
import { invalidArgument, toError, withCode } from './errors';
import { resolveFraming, type Framing } from './framing';
import { runDataFilters } from './inbound/filter-chain';
import { Logger, SummedWarning } from './log';
import {
  parseSetting,
  resolveSettings,
  settingKey,
  type MultiplexerOptions,
  type SettingKey,
  type Settings,
  type TlsServerOptions,
} from './options';
import { isTransport, type Transport } from './transport/connection';
import { listenOptions, StreamTransport } from './transport/tcp';
import {
  type AccessDecision,
  type AccessFilter,
  type BoundAddress,
  type DataFilter,
  type DenyReason,
  type DestroyOptions,
  type ErrorContext,
  type ErrorSource,
  type ExitFilter,
  type ExitReason,
  type FilterResult,
  type ForwardFilter,
  type ForwardResult,
  type LimitKind,
  type ListenOptions,
  type Sender,
  type Target,
} from './types';

/** The events of a {@link Multiplexer}, with their listener signatures. */
export interface MultiplexerEvents<S extends object = Record<string, unknown>> {
  /** A listener is listening: a TCP address, or the Unix socket path. Once per `listen()`. */
  listening: (address: AddressInfo | string) => void;
  /** A client passed the access filters and joined the broadcast. */
  connect: (client: Client<S>) => void;
  /** A message from `client` is being broadcast: the bytes receivers get, after the data filters. */
  data: (message: Buffer, client: Client<S>) => void;
  /** A client that joined has left, after the exit filters ran. `error` is set for socket errors. */
  exit: (client: Client<S>, reason: ExitReason, error?: Error) => void;
  /** A connection was refused before it joined; its connection is closed. */
  deny: (client: Client<S>, reason: DenyReason) => void;
  /** A limit acted on a client that stays connected. */
  limit: (client: Client<S>, limit: LimitKind) => void;
  /** User code threw or rejected, or a listener failed to accept. The server keeps running. */
  error: (error: Error, context: ErrorContext<S>) => void;
  /** `destroy()` finished: every listener and every client are closed. */
  close: () => void;
  /** Messages from another node of the cluster were lost on the bus (a gap in its numbering). */
  loss: (node: string, count: number) => void;
  /** The bus went up (subscribed) or down. */
  bus: (state: 'up' | 'down', error?: Error) => void;
  /** A client of another node joined, left or had its published state change (see the `presence` option). */
  presence: (change: 'join' | 'leave' | 'update', member: RemoteClient<S>) => void;
  /** Another node of the cluster was heard again (`up`) or not for `nodeTimeout` (`down`: its members are gone). */
  node: (state: 'up' | 'down', node: string) => void;
}

/** Counters and gauges of one multiplexer, as returned by {@link Multiplexer.stats}. */
export interface MultiplexerStats {
  /** Connections in every phase (awaiting access, joined, closing). */
  connections: number;
  /** Clients in the broadcast. */
  clients: number;
  /** Messages broadcast (after filters), and bytes read from clients. */
  messagesIn: number;
  bytesIn: number;
  /** Messages and bytes handed to client connections (one per receiver). */
  messagesOut: number;
  bytesOut: number;
  /** Bytes waiting to be sent, over all clients (each client's backlog as `maxQueuedBytes` counts it). */
  queuedBytes: number;
  /** Bytes the server holds for clients as the memory budget counts them (shared buffers once). */
  heldBytes: number;
  /** Messages dropped under a `drop-*` slow-consumer policy or the memory budget. */
  drops: number;
  /** Messages a data filter dropped. */
  filtered: number;
  /** Data and forward filters that threw, rejected or returned a bad value. */
  filterErrors: number;
  /** Other hooks and listeners that threw or rejected. */
  hookErrors: number;
  /** Clients whose reading is paused at the moment, for whatever reason. */
  pausedClients: number;
  /** Departures of joined clients, by reason. */
  disconnects: Record<ExitReason, number>;
  /** Refused connections, by reason. */
  denials: Record<DenyReason, number>;
  /** Limits that acted without disconnecting, by kind. */
  limits: Record<LimitKind, number>;
  /** The bus, when this node is part of a cluster: frames and messages each way, losses, the outbox. */
  bus: (LinkStats & { node: string }) | null;
}

/** Options of `sendToAll` and `sendToRoom`. */
export interface SendOptions<S extends object = Record<string, unknown>> {
  /** A client that does not get it. */
  except?: Client<S> | null;
  /** Only this node's clients, not the other nodes of a cluster. */
  local?: boolean;
}

let instances = 0;

function assertFunction<F>(value: F, what: string): F {
  if (typeof value !== 'function') throw invalidArgument(`${what} must be a function; got ${typeof value}`);
  return value;
}

function toBuffer(data: Buffer | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data) : data;
}

type EventName<S extends object> = EventEmitter.EventNames<MultiplexerEvents<S>>;
type EventListener<S extends object, T extends EventName<S>> = EventEmitter.EventListener<MultiplexerEvents<S>, T>;

/**
 * A one-to-many message server: what one client sends, every other client receives.
 *
 * One message's way, in order: connect → `accessFilter` → read → frame → `filter` → `data` event →
 * `broadcast` → `deliver` → turn log → `forwardFilter` (per receiver, when one is registered) → write; and
 * when a client leaves, `exitFilter` → `exit` event.
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
  /** This node's id in a cluster (the `node` option; random by default). */
  readonly node: string;
  /** The instance's logger; its threshold is the `debugLevel` setting. */
  readonly log: Logger;
  /** The framing in use. */
  readonly framing: Framing;

  private readonly current: Settings;
  private readonly tlsOptions: TlsServerOptions | undefined;
  private readonly filters: DataFilter<S>[] = [];
  private readonly accessFilters: AccessFilter<S>[] = [];
  private readonly exitFilters: ExitFilter<S>[] = [];
  private readonly forwardFilters: ForwardFilter<S>[] = [];
  private readonly hub: Hub<S>;
  private readonly guard: ListenerGuard;
  private readonly clientView: ReadonlySet<Client<S>>;
  private readonly transports: Transport[] = [];
  private destroyed: Promise<void> | null = null;
  private readonly link: BusLink | null = null;
  private busOpened: Promise<void> | null = null;

  /**
   * Creates an instance (Tcl `::multiplexer::create`). Options are validated at once; bad ones throw a
   * TypeError with `code: 'ERR_INVALID_OPTION'` naming the option and what it accepts.
   */
  constructor(options: MultiplexerOptions = {}) {
    super();
    this.current = resolveSettings(options);
    this.framing = resolveFraming(options.framing);
    if (options.tls !== undefined && (typeof options.tls !== 'object' || options.tls === null)) {
      throw invalidArgument('tls must be an object of tls.createServer options (key, cert, ...)');
    }
    this.tlsOptions = options.tls;
    // A bad key or certificate fails here, not at the first connection.
    if (options.tls !== undefined) new StreamTransport({}, options.tls);
    this.name = options.name ?? `mp${instances}`;
    instances += 1;
    this.node = options.node ?? randomBytes(6).toString('hex');
    this.log = new Logger(`multiplexer:${this.name}`);
    this.log.level = this.current.debugLevel;
    this.guard = new ListenerGuard((event, error) => this.listenerFailed(event, error));
    this.hub = new Hub<S>(this.hubOwner(), this.current, this.framing, this.log);
    this.hub.tls = options.tls;
    this.clientView = new ClientsView(this.hub.members);
    if (this.forwardFilter !== Multiplexer.prototype.forwardFilter) this.hub.enableForwarding();
    if (options.bus !== undefined) this.link = this.createLink(options.bus, options.presence ?? []);
  }

  /** Sheds are logged at most once a second, summed (an outage sheds a frame per turn). */
  private readonly shedLog = new SummedWarning(1000, (frames, messages) =>
    this.log.warn(
      'the %s bus is slow or down: shed %d frames (%d messages) from the outbox',
      this.link?.bus.kind ?? 'bus',
      frames,
      messages,
    ),
  );

  private createLink(bus: Bus, presence: readonly string[]): BusLink {
    const link = new BusLink(bus, this.node, this.current, {
      deliver: (node, envelopes, from) => this.hub.deliverRemote(node, envelopes, from),
      lost: (node, count) => {
        this.log.warn('lost %d messages from node %s on the %s bus', count, node, bus.kind);
        this.emitGuarded('loss', node, count);
      },
      shed: (frames, messages) => this.shedLog.add(frames, messages),
      state: (up, error) => {
        if (up) this.log.notice('%s bus up', bus.kind);
        else this.log.warn('%s bus down: %s', bus.kind, error?.message ?? 'lost');
        this.emitGuarded('bus', up ? 'up' : 'down', error);
      },
      failed: (error) => this.report(error, 'bus'),
      node: (node, up) => {
        if (up) this.log.info('node %s up', node);
        else this.log.warn('node %s down: not heard for %d ms', node, this.current.nodeTimeout);
        this.hub.nodeChanged(node, up);
      },
      snapshot: () => this.hub.snapshot(),
      hold: (holding) => this.hub.flow.holdExternal(holding),
    });
    this.hub.attachBus((envelopes) => link.publish(envelopes), presence);
    return link;
  }

  /** Opens the bus once, before the first listener accepts anyone. */
  private openBus(): Promise<void> {
    const link = this.link;
    if (link === null) return Promise.resolve();
    if (this.busOpened === null) {
      const largest = Math.max(64 * 1024, this.current.maxMessageBytes + 2);
      if (!link.fits(largest)) {
        const error = withCode(
          new RangeError(
            `the ${link.bus.kind} bus carries frames of at most ${link.bus.maxFrameBytes} bytes: too small for messages of ${largest} bytes (maxMessageBytes, or a raw read)`,
          ),
          'ERR_BUS_FRAME_TOO_LARGE',
        );
        this.busOpened = Promise.reject(error);
      } else {
        this.busOpened = link.open();
      }
    }
    return this.busOpened;
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
   * whatever reason. Errors are logged and ignored; a Promise it returns is awaited before the next exit
   * filter and the `exit` event.
   * @example
   * mux.addExitFilter((client, reason) => mux.sendToAll(`${client.state.nick} left (${reason})\n`));
   */
  addExitFilter(filter: ExitFilter<S>): this {
    this.exitFilters.push(assertFunction(filter, 'exit filter'));
    return this;
  }

  /**
   * Adds a forward filter: it runs for each receiver of each message, synchronously, after the target
   * (except, rooms) is applied, in registration order, each on the previous one's result. It gets the bytes
   * about to be written (in `line` framing with the terminator), the receiver, and the sender (a local
   * client, a client of another node, or null for server code). `undefined` keeps the shared bytes; a Buffer
   * or string is written to that receiver instead, as given; `null` or `false` skips it.
   * @example
   * mux.addForwardFilter((message, receiver, sender) =>
   *   sender !== null && receiver.state.muted?.has(sender.id) ? null : undefined);
   */
  addForwardFilter(filter: ForwardFilter<S>): this {
    this.forwardFilters.push(assertFunction(filter, 'forward filter'));
    this.hub.enableForwarding();
    return this;
  }

  /**
   * Transforms one message before it is broadcast. The default runs the filters added with `addFilter`;
   * override it in a subclass (and call `super.filter` to keep them). Returns a Promise only when a filter
   * is async.
   */
  filter(data: Buffer, client: Client<S>): FilterResult | Promise<FilterResult> {
    return runDataFilters(this.filters, data, client, (error, input) => this.hub.filterFailed(error, client, input));
  }

  /**
   * Decides whether a new client may join. The default runs the filters added with `addAccessFilter`, in
   * order, stopping at the first denial; override it in a subclass. `-1` or `false` denies.
   */
  accessFilter(client: Client<S>): AccessDecision | Promise<AccessDecision> {
    const filters = this.accessFilters;
    return runChain<AccessDecision>(
      filters.length,
      true,
      (index) => filters[index](client),
      (value) => value === -1 || value === false || value === '-1',
      (error) => {
        throw error; // a throwing access filter denies: the hub decides so
      },
    );
  }

  /**
   * Runs when a client that joined leaves. The default runs the filters added with `addExitFilter` in
   * order, each guarded (errors reported, the chain goes on), awaiting each that returns a Promise; override
   * it in a subclass.
   */
  exitFilter(client: Client<S>, reason: ExitReason): void | Promise<void> {
    const filters = this.exitFilters;
    return runChain<void>(
      filters.length,
      undefined,
      (index) =>
        callGuarded(
          () => filters[index](client, reason),
          (error) => this.report(error, 'exitFilter', client),
        ),
      () => false,
      () => undefined,
    );
  }

  /**
   * Decides what one receiver gets of one message. The default runs the filters added with
   * `addForwardFilter`; a subclass that overrides it is called for every delivery (call `super` to keep the
   * registered chain). Synchronous. See {@link addForwardFilter} for the arguments and results.
   */
  forwardFilter(message: Buffer, receiver: Client<S>, sender: Sender<S>): ForwardResult {
    const filters = this.forwardFilters;
    let current: Buffer = message;
    for (let i = 0; i < filters.length; i += 1) {
      const result = filters[i](current, receiver, sender);
      if (result === undefined) continue;
      if (result === null || result === false) return null;
      current = typeof result === 'string' ? Buffer.from(result) : result;
    }
    return current === message ? undefined : current;
  }

  /**
   * Sends one message from `sender` to its receivers: by default every client in the broadcast, except the
   * sender unless `sendToOrigin` is set. Override it for rooms or private messages, delivering with
   * {@link deliver}. Runs for every message: keep it free of allocations.
   * @param message the bytes to send (the same Buffer goes to every receiver; do not modify it)
   * @param sender the client it came from
   */
  protected broadcast(message: Buffer, sender: Client<S>): void {
    this.hub.deliver(message, this.current.sendToOrigin ? EVERYONE : { except: sender });
  }

  /**
   * The one delivery primitive: `message` goes to `target`'s receivers through this turn's log (the shared
   * slice fast path, rooms, forward filters, the bus). Called from `broadcast()`, the delivery carries that
   * message's sender; elsewhere the sender is server code (null).
   * @param target `except`: a local client that does not get it; `rooms`: absent for everyone, a list for the
   *   members of each of them (once each), empty for nobody; `local`: this node only
   */
  protected deliver(message: Buffer, target: Target<S> = EVERYONE): void {
    this.hub.deliver(message, target);
  }

  // ---------------------------------------------------------------- server code API

  /** The current settings, for subclasses (a `broadcast` override reads `sendToOrigin` here). */
  protected get settings(): Readonly<Settings> {
    return this.current;
  }

  /** The clients in the broadcast, in the order they joined (a read-only, live view). */
  get clients(): ReadonlySet<Client<S>> {
    return this.clientView;
  }

  /**
   * The members of the whole cluster: this node's clients, then the other nodes' clients as their presence
   * told (with the state fields the `presence` option publishes). Without a bus, this node's clients.
   */
  members(): Array<Client<S> | RemoteClient<S>> {
    return this.hub.clusterMembers();
  }

  /** The nodes of the cluster: this one, then the others heard from, whether up, and when last heard. */
  nodes(): Array<{ node: string; up: boolean; lastSeen: number }> {
    const self = { node: this.node, up: true, lastSeen: Date.now() };
    return this.link === null ? [self] : [self, ...this.link.nodes()];
  }

  /** Tells the other nodes that `client`'s published state fields changed (see the `presence` option). */
  publishState(client: Client<S>): void {
    this.hub.publishState(client);
  }

  /** The clients of this node in `room` (read-only; empty when the room has no members). */
  room(room: string): ReadonlySet<Client<S>> {
    return new ClientsView(this.hub.rooms.members(room));
  }

  /**
   * Server code sends `data` to every client in the broadcast (of every node of a cluster), except `except`.
   * Strings are sent as UTF-8; the bytes go as given (no framing is applied).
   */
  sendToAll(data: Buffer | string, except?: Client<S> | SendOptions<S> | null): void {
    this.hub.deliver(toBuffer(data), targetOf(except, undefined));
  }

  /** Server code sends `data` to the members of `room` (or of several rooms), as `sendToAll` does. */
  sendToRoom(
    room: string | readonly string[],
    data: Buffer | string,
    except?: Client<S> | SendOptions<S> | null,
  ): void {
    const rooms = typeof room === 'string' ? [room] : room;
    if (!Array.isArray(rooms) || rooms.some((name) => typeof name !== 'string')) {
      throw invalidArgument(`sendToRoom takes a room name or a list of them; got ${String(room)}`);
    }
    this.hub.deliver(toBuffer(data), targetOf(except, rooms));
  }

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

  private apply<K extends SettingKey>(key: K, value: unknown): void {
    const parsed = parseSetting(key, value);
    this.current[key] = parsed;
    this.log.debug('config %s = %o', key, parsed);
    if (key === 'debugLevel') this.log.level = this.current.debugLevel;
    if (key === 'idleTimeout') {
      for (const session of this.hub.sessions) session.connection.setIdleTimeout(this.current.idleTimeout);
    }
    if (key === 'highWaterMark' || key === 'maxQueuedBytes') this.hub.applyThreshold();
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Starts listening (Tcl `Init port`); may be called several times (TCP, TLS and Unix listeners, or other
   * transports, all feeding one broadcast). Resolves with the bound address once listening; rejects with
   * `code: 'EADDRINUSE'` when the port is taken.
   * @param where a port (0 for a free one), a Unix socket path, {@link ListenOptions} (with `tls` for this
   *   listener; the constructor's `tls` otherwise), or a {@link Transport} such as `websocket(...)`
   */
  listen(port?: number | (ListenOptions & { path?: undefined })): Promise<AddressInfo>;
  listen(path: string | (ListenOptions & { path: string })): Promise<string>;
  listen(where?: number | string | ListenOptions | Transport): Promise<AddressInfo | string>;
  async listen(where: number | string | ListenOptions | Transport = 0): Promise<AddressInfo | string> {
    if (this.destroyed !== null) throw withCode(new Error('this multiplexer was destroyed'), 'ERR_DESTROYED');
    let transport: Transport;
    if (isTransport(where)) {
      transport = where;
    } else {
      const options = listenOptions(where);
      const tlsOptions = options.tls === undefined ? this.tlsOptions : options.tls === false ? undefined : options.tls;
      transport = new StreamTransport(options, tlsOptions ?? null);
    }
    await this.openBus();
    const address = await transport.listen(this.hub);
    if (this.destroyed !== null) {
      await transport.close();
      throw withCode(new Error('destroyed while starting to listen'), 'ERR_DESTROYED');
    }
    this.transports.push(transport);
    this.log.notice('listening on %o', address);
    this.emitGuarded('listening', address);
    return address;
  }

  /** Tcl's `Init port`: same as `listen(port)`. */
  init(port: number): Promise<AddressInfo> {
    return this.listen(port);
  }

  /** The first listener's bound address while listening, else null. */
  address(): AddressInfo | string | null {
    return this.transports[0]?.address() ?? null;
  }

  /** Every listener's bound address, in the order `listen()` was called. */
  addresses(): BoundAddress[] {
    return this.transports.map((transport) => transport.address()).filter((address) => address !== null);
  }

  /**
   * Shuts down: stops accepting, lets healthy clients take what is queued for them (up to `timeout` ms),
   * closes every client (exit filters run with reason `'destroy'`; clients still awaiting access are denied
   * with `'destroyed'`), frees everything. Idempotent: later calls return the same Promise.
   */
  destroy(options: DestroyOptions = {}): Promise<void> {
    if (this.destroyed !== null) return this.destroyed;
    const timeout = options.timeout ?? 5000;
    this.hub.destroyed = true;
    this.destroyed = (async () => {
      const closing = Promise.all(this.transports.map((transport) => transport.close()));
      await this.hub.shutdown(timeout);
      await closing;
      if (this.link !== null) await this.link.close().catch((error: unknown) => this.report(error, 'bus'));
      this.shedLog.flush();
      this.hub.stop();
      this.log.notice('destroyed');
      this.emitGuarded('close');
      this.removeAllListeners();
    })();
    return this.destroyed;
  }

  /** A snapshot of the counters; cheap enough to poll every second. */
  stats(): MultiplexerStats {
    const hub = this.hub;
    let queuedBytes = 0;
    let pausedClients = 0;
    for (const session of hub.sessions) {
      queuedBytes += session.out.backlog;
      if (session.in.pauses !== 0) pausedClients += 1;
    }
    const c = hub.counters;
    return {
      connections: hub.sessions.size,
      clients: hub.members.size,
      messagesIn: c.messagesIn,
      bytesIn: c.bytesIn,
      messagesOut: c.messagesOut,
      bytesOut: c.bytesOut,
      queuedBytes,
      heldBytes: hub.budget.bytes,
      drops: c.drops,
      filtered: c.filtered,
      filterErrors: c.filterErrors,
      hookErrors: c.hookErrors,
      pausedClients,
      disconnects: { ...c.disconnects },
      denials: { ...c.denials },
      limits: { ...c.limits },
      bus: this.link === null ? null : { node: this.node, ...this.link.stats },
    };
  }

  // ---------------------------------------------------------------- listeners are user code too

  override on<T extends EventName<S>>(event: T, fn: EventListener<S, T>, context?: unknown): this {
    return super.on(event, this.guardListener(event, fn), context);
  }

  override addListener<T extends EventName<S>>(event: T, fn: EventListener<S, T>, context?: unknown): this {
    return super.addListener(event, this.guardListener(event, fn), context);
  }

  override once<T extends EventName<S>>(event: T, fn: EventListener<S, T>, context?: unknown): this {
    return super.once(event, this.guardListener(event, fn), context);
  }

  override removeListener<T extends EventName<S>>(
    event: T,
    fn?: EventListener<S, T>,
    context?: unknown,
    once?: boolean,
  ): this {
    return super.removeListener(event, fn === undefined ? fn : this.guard.wrapperOf(event, fn), context, once);
  }

  override off<T extends EventName<S>>(event: T, fn?: EventListener<S, T>, context?: unknown, once?: boolean): this {
    return this.removeListener(event, fn, context, once);
  }

  /** The functions registered for `event`, as given to `on()`. */
  override listeners<T extends EventName<S>>(event: T): EventListener<S, T>[] {
    return super.listeners(event).map((fn) => this.guard.originalOf(fn));
  }

  private guardListener<F>(event: string | symbol, fn: F): F {
    if (typeof fn !== 'function') throw invalidArgument(`listener for ${String(event)} must be a function`);
    return this.guard.wrap(event, fn);
  }

  private listenerFailed(event: string, thrown: unknown): void {
    this.hub.counters.hookErrors += 1;
    const error = toError(thrown);
    this.log.error('%s listener failed: %s', event, error.stack ?? error.message);
    // An error listener that fails is only logged: reporting it again could loop.
    if (event !== 'error') this.emitGuarded('error', error, { source: 'listener' });
  }

  /** Logs and reports user code (or the server) failing. Filters' failures are counted as filterErrors. */
  private report(thrown: unknown, source: ErrorSource, client?: Client<S>): void {
    if (source !== 'filter' && source !== 'forwardFilter') this.hub.counters.hookErrors += 1;
    const error = toError(thrown);
    this.log.error('%s failed: %s', source, error.stack ?? error.message);
    this.emitGuarded('error', error, client === undefined ? { source } : { source, client });
  }

  /** Listeners are guarded when added; this also guards against anything else thrown while emitting. */
  private emitGuarded<T extends EventName<S>>(
    event: T,
    ...args: EventEmitter.EventArgs<MultiplexerEvents<S>, T>
  ): void {
    try {
      this.emit(event, ...args);
    } catch (error) {
      this.log.error('%s listener failed: %s', String(event), toError(error).message);
    }
  }

  /** What the hub calls on this multiplexer: its overridable hooks, bound, and its events. */
  private hubOwner(): HubOwner<S> {
    const filtersOverridden = this.filter !== Multiplexer.prototype.filter;
    const filters = this.filters;
    return {
      node: this.node,
      accessFilter: (client) => this.accessFilter(client),
      filter: (data, client) => this.filter(data, client),
      exitFilter: (client, reason) => this.exitFilter(client, reason),
      forwardFilter: (message, receiver, sender) => this.forwardFilter(message, receiver, sender),
      broadcast: (message, sender) => this.broadcast(message, sender),
      get filtering() {
        return filtersOverridden || filters.length > 0;
      },
      emitConnect: (client) => this.emitGuarded('connect', client),
      emitData: (message, client) => this.emitGuarded('data', message, client),
      emitExit: (client, reason, error) => this.emitGuarded('exit', client, reason, error),
      emitDeny: (client, reason) => this.emitGuarded('deny', client, reason),
      emitLimit: (client, kind) => this.emitGuarded('limit', client, kind),
      emitPresence: (change, member) => this.emitGuarded('presence', change, member),
      emitNode: (state, node) => this.emitGuarded('node', state, node),
      report: (error, source, client) => this.report(error, source, client),
    };
  }
}

/** The target of a broadcast to everyone. */
const EVERYONE: Readonly<Record<string, never>> = Object.freeze({});

function targetOf<S extends object>(
  except: Client<S> | SendOptions<S> | null | undefined,
  rooms: readonly string[] | undefined,
): Target<S> {
  if (except === undefined || except === null) return rooms === undefined ? EVERYONE : { rooms };
  if (except instanceof Client) return { except, rooms };
  return { except: except.except ?? undefined, rooms, local: except.local === true };
}
