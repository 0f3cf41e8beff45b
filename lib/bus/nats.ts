import type { NatsConnection, NodeConnectionOptions, Subscription } from '@nats-io/transport-node';
import { invalidArgument } from '../errors';
import { BrokerBus, deadline } from './broker-bus';

/** How a {@link NatsBus} reaches NATS: `servers` or your own `connection`. */
export interface NatsBusOptions {
  /** The subject (exact: no `*` or `>` wildcards, so `x` and `x-2` never hear each other). Default `'multiplexer'`. */
  readonly channel?: string;
  /** `nats://host:port`, or several servers of one cluster (the client picks one and fails over to the others). */
  readonly servers?: string | readonly string[];
  /**
   * More options for the connection the bus makes from `servers` (auth, TLS, name). The bus sets
   * `maxReconnectAttempts: -1` (forever), `reconnectTimeWait: 250` and `reconnectJitter: 100` unless given here.
   */
  readonly connectOptions?: Omit<NodeConnectionOptions, 'servers'>;
  /** Your own connection from `@nats-io/transport-node`'s `connect()`: used as it is, and not closed by the bus. */
  readonly connection?: NatsConnection;
  /** At most this many bytes per frame, below the server's max_payload (which always applies). */
  readonly maxFrameBytes?: number;
}

/** NATS's default max_payload, used until the server's INFO says otherwise. */
const NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** A subject of one or more dot-separated tokens with no wildcards and no whitespace. */
const SUBJECT = /^[^\s.*>]+(\.[^\s.*>]+)*$/;

/**
 * A {@link Bus} over NATS core pub/sub (`@nats-io/transport-node`) on one subject.
 *
 * The client has no offline queue to turn off, but it buffers what is published while it reconnects and
 * drops that buffer on every reconnect attempt: so this bus rejects publishes unless it is up. `down()` comes
 * with the connection's `disconnect` status, `up()` after `reconnect` and a flush (a PING answered after the
 * client's resent SUB, so the server has the subscription again). `maxFrameBytes` is the connected server's
 * max_payload (1 MiB by default, at most 64 MiB), read from its INFO at `open()`.
 *
 * @example
 * ```ts
 * import { NatsBus } from 'socket-multiplexer/nats';
 * const bus = new NatsBus({ servers: ['nats://10.0.0.1:4222', 'nats://10.0.0.2:4222'], channel: 'chat' });
 * ```
 */
export class NatsBus extends BrokerBus {
  readonly kind = 'nats';
  private connection: NatsConnection | null = null;
  private subscription: Subscription | null = null;
  /** Connected, per the last status seen. */
  private connected = false;
  /** A flush answered since the last (re)connect: the server has our SUB. */
  private confirmed = false;
  private readonly owned: boolean;
  private readonly limit: number | undefined;
  private serverMaxPayload = NATS_DEFAULT_MAX_PAYLOAD;
  /** Bumped whenever the connection is dropped: a connect that finishes afterwards closes what it made. */
  private generation = 0;

  constructor(private readonly options: NatsBusOptions) {
    const channel = options.channel ?? 'multiplexer';
    super(channel);
    if (!SUBJECT.test(channel)) {
      throw invalidArgument(`channel must be a NATS subject without wildcards or spaces, got ${channel}`);
    }
    if ((options.servers === undefined) === (options.connection === undefined)) {
      throw invalidArgument('NatsBus takes exactly one of servers or connection');
    }
    const servers: readonly unknown[] =
      options.servers === undefined ? [] : Array.isArray(options.servers) ? options.servers : [options.servers];
    if (options.servers !== undefined && (servers.length === 0 || !servers.every((url) => typeof url === 'string'))) {
      throw invalidArgument('servers must be a nats://HOST:PORT URL or a non-empty list of them');
    }
    const { maxFrameBytes } = options;
    if (maxFrameBytes !== undefined && (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1)) {
      throw invalidArgument(`maxFrameBytes must be a positive integer, got ${String(maxFrameBytes)}`);
    }
    this.limit = maxFrameBytes;
    this.owned = options.connection === undefined;
  }

  /** The smaller of the server's max_payload (from its INFO; 1 MiB before `open()`) and `maxFrameBytes`. */
  get maxFrameBytes(): number {
    return Math.min(this.serverMaxPayload, this.limit ?? Infinity);
  }

  /**
   * Connects (or takes the user's connection) and subscribes.
   * @param handshake how long the client may wait for a server's handshake (its `timeout`), unless the
   * connect options say; the client's default (20 s) when not given
   */
  protected async connect(handshake?: number): Promise<void> {
    const generation = this.generation;
    let connection = this.options.connection;
    if (connection === undefined) {
      const { connect } = await import('@nats-io/transport-node');
      const servers = this.options.servers ?? [];
      connection = await connect({
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        reconnectJitter: 100,
        ...(handshake === undefined ? {} : { timeout: handshake }),
        ...this.options.connectOptions,
        servers: typeof servers === 'string' ? servers : [...servers],
      });
      if (generation !== this.generation) {
        await connection.close().catch(() => undefined);
        throw new Error('dropped while connecting');
      }
    }
    this.connection = connection;
    void this.watch(connection);
    this.connected = !connection.isClosed();
    this.readInfo();
    this.subscription = connection.subscribe(this.channel, {
      callback: (error, message) => {
        if (error === null) {
          const data = message.data;
          this.deliver(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
        }
      },
    });
    await connection.flush();
    if (generation !== this.generation) throw new Error('dropped while connecting');
    this.confirmed = true;
  }

  /**
   * One attempt of {@link reconnect}. A connection of the bus's own is closed at once and a new one made, whose
   * handshakes may take `timeout` ms (unless `connectOptions.timeout` says otherwise), also in its own later
   * reconnects. Your own connection is not replaced: it is asked to reconnect (its `reconnect()`, which resends
   * every subscription of yours too), and the bus waits until it is back and the subscription confirmed.
   */
  protected override async reopen(timeout: number): Promise<void> {
    const connection = this.connection;
    if (!this.owned && connection !== null) {
      this.connected = false;
      this.confirmed = false;
      const end = Date.now() + timeout;
      await deadline(connection.reconnect(), timeout, `nats: no reconnect within ${timeout} ms`);
      while (!this.live() && Date.now() < end && connection === this.connection && !connection.isClosed()) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      if (!this.live()) throw new Error(`nats: not back within ${timeout} ms`);
      return;
    }
    await this.disconnect();
    try {
      await deadline(this.connect(timeout), timeout + 100, `nats: no answer within ${timeout} ms`);
    } catch (error) {
      await this.disconnect();
      throw error;
    }
  }

  /** Follows the connection's status stream for as long as it lives. */
  private async watch(connection: NatsConnection): Promise<void> {
    for await (const status of connection.status()) {
      if (connection !== this.connection) return;
      switch (status.type) {
        case 'disconnect':
        case 'reconnecting':
        case 'staleConnection':
        case 'forceReconnect':
        case 'close':
          this.connected = false;
          this.confirmed = false;
          this.refresh(new Error(`nats ${status.type}`));
          break;
        case 'reconnect':
          this.connected = true;
          this.confirmed = false;
          this.readInfo();
          this.confirm(connection);
          break;
        case 'error':
          this.refresh(status.error);
          break;
        default:
          break;
      }
    }
  }

  /** Flushes after a reconnect: the PONG comes after the resent SUB, so the subscription is live again. */
  private confirm(connection: NatsConnection): void {
    connection.flush().then(
      () => {
        if (connection !== this.connection || !this.connected) return;
        this.confirmed = true;
        this.refresh();
      },
      (error: unknown) => this.refresh(error),
    );
  }

  private readInfo(): void {
    const maxPayload = this.connection?.info?.max_payload;
    if (typeof maxPayload === 'number' && maxPayload > 0) this.serverMaxPayload = maxPayload;
  }

  protected live(): boolean {
    return this.connected && this.confirmed && this.connection !== null && !this.connection.isClosed();
  }

  protected send(frame: Buffer): Promise<void> {
    if (this.connection === null) return Promise.reject(new Error('not connected'));
    // nats.js buffers without bound and says nothing when it drops that buffer on a reconnect: resolve only
    // once the server answered a PING sent after the frame, so a resolved publish reached the server, and a
    // caller that waits for it cannot outrun the connection.
    this.connection.publish(this.channel, frame);
    return this.connection.flush();
  }

  protected probe(): Promise<void> {
    return this.connection === null ? Promise.reject(new Error('not connected')) : this.connection.flush();
  }

  protected async disconnect(): Promise<void> {
    const connection = this.connection;
    const subscription = this.subscription;
    this.generation += 1;
    this.connection = null;
    this.subscription = null;
    this.connected = false;
    if (connection === null) return;
    try {
      subscription?.unsubscribe();
      if (this.owned) await connection.close();
    } catch {
      // Already closed.
    }
  }
}
