import type { Cluster as IORedisCluster, Redis as IORedis, RedisOptions as IORedisOptions } from 'ioredis';
import type { RedisClientType, RedisClusterType } from 'redis';
import { invalidArgument } from '../errors';
import { BrokerBus, deadline } from './broker-bus';
import { clusterSlot } from './redis-slot';

/** A node-redis (`redis` 5/6) client as `createClient()` makes it: RESP 3 (the default) or RESP 2. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export type NodeRedisClient = RedisClientType | RedisClientType<{}, {}, {}, 2>;
/** A node-redis Redis Cluster client, as `createCluster()` makes it. */
export type NodeRedisCluster = RedisClusterType;

/** How a {@link RedisBus} reaches Redis: exactly one of `url`, `cluster` or `client`. */
export interface RedisBusOptions {
  /** The channel (exact match: `x` and `x-2` never hear each other). Default `'multiplexer'`. */
  readonly channel?: string;
  /** `redis://[user:pass@]host:port[/db]` (or `rediss://`) of one server: plain pub/sub (PUBLISH/SUBSCRIBE). */
  readonly url?: string;
  /** Seed URLs of a Redis Cluster: sharded pub/sub (SPUBLISH/SSUBSCRIBE), so one shard carries the channel. */
  readonly cluster?: readonly string[];
  /**
   * Your own client, for its connection settings (TLS, auth, Sentinel): a node-redis client or cluster, or an
   * ioredis `Redis` (an ioredis `Cluster` is refused for now: give the seed URLs as `cluster`). The bus duplicates a single-server client twice (a publisher and a
   * subscriber, with the offline queue off and a reconnect delay of at most 600 ms) and leaves yours alone;
   * a node-redis cluster is used as it is (it keeps its own connection per shard for sharded pub/sub).
   * Not closed by {@link RedisBus.close}.
   */
  readonly client?: NodeRedisClient | NodeRedisCluster | IORedis | IORedisCluster;
  /**
   * The largest frame, in bytes. Default 8 MiB. Redis itself takes bulk strings up to 512 MiB
   * (proto-max-bulk-len), but it cuts a subscriber whose output buffer passes `client-output-buffer-limit
   * pubsub` (32 MB at once, or 8 MB for 60 s, by default): a frame of 31 MiB already gets every subscriber
   * cut, and one of 8 MiB stays under the soft limit. Raise both together.
   */
  readonly maxFrameBytes?: number;
}

/** The default largest frame of a {@link RedisBus}. */
export const REDIS_MAX_FRAME_BYTES = 8 * 1024 * 1024;

/** Reconnect delays: 50, 100, 200, 400, then 500 ms, plus up to 100 ms of jitter (node-redis's own cap is 2.2 s). */
function retryDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 10), 500) + Math.floor(Math.random() * 100);
}

/** The cause given with `down()` when a connection closed without an error of its own. */
function lost(role: 'publisher' | 'subscriber', event: string): Error {
  return new Error(`${role} connection ${event === 'end' ? 'ended' : event === 'close' ? 'closed' : 'reconnecting'}`);
}

/** One way of talking to Redis: the clients of one library in one topology. */
interface RedisCarrier {
  connect(): Promise<void>;
  live(): boolean;
  send(frame: Buffer): Promise<void>;
  probe(): Promise<void>;
  disconnect(): Promise<void>;
  /** Drops the connections at once and makes new ones, subscribed again, within `timeout` ms (see BrokerBus). */
  reopen(timeout: number): Promise<void>;
}

/** What a carrier tells its bus. */
interface CarrierEvents {
  frame(frame: Buffer): void;
  changed(error?: unknown): void;
}

/**
 * A {@link Bus} over Redis pub/sub: one server (PUBLISH/SUBSCRIBE), or a Redis Cluster with sharded pub/sub
 * (SPUBLISH/SSUBSCRIBE), on node-redis by default or on an ioredis client you pass. It keeps two connections
 * (a subscribed one receives, the other publishes), both with the client's offline queue off: a frame is
 * either written to a live connection or rejected, never queued in the client for later.
 *
 * `down()` comes as soon as either connection is lost (or a publish fails under the bus); `up()` only once
 * both are back and the broker has confirmed the subscription again. Frames published by others meanwhile
 * are lost (Redis pub/sub keeps nothing); the link counts them from its sequence numbers.
 *
 * @example
 * ```ts
 * import { RedisBus } from 'socket-multiplexer/redis';
 * const bus = new RedisBus({ url: 'redis://127.0.0.1:6379', channel: 'chat' });
 * const cluster = new RedisBus({ cluster: ['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000'], channel: 'chat' });
 * ```
 */
export class RedisBus extends BrokerBus {
  readonly kind = 'redis';
  readonly maxFrameBytes: number;
  /** `'server'` (PUBLISH/SUBSCRIBE) or `'cluster'` (SPUBLISH/SSUBSCRIBE). */
  readonly topology: 'server' | 'cluster';
  private readonly carrier: RedisCarrier;

  constructor(options: RedisBusOptions) {
    super(options.channel ?? 'multiplexer');
    const { url, cluster, client, maxFrameBytes = REDIS_MAX_FRAME_BYTES } = options;
    if ([url, cluster, client].filter((each) => each !== undefined).length !== 1) {
      throw invalidArgument('RedisBus takes exactly one of url, cluster or client');
    }
    if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 1) {
      throw invalidArgument(`maxFrameBytes must be a positive integer, got ${String(maxFrameBytes)}`);
    }
    this.maxFrameBytes = maxFrameBytes;
    const events: CarrierEvents = {
      frame: (frame) => this.deliver(frame),
      changed: (error) => this.refresh(error),
    };
    if (url !== undefined) {
      if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) {
        throw invalidArgument(`url must be redis://HOST:PORT or rediss://HOST:PORT, got ${String(url)}`);
      }
      this.topology = 'server';
      this.carrier = new NodeRedisServerCarrier(this.channel, events, { url });
    } else if (cluster !== undefined) {
      const seeds: readonly unknown[] = Array.isArray(cluster) ? cluster : [];
      if (seeds.length === 0 || !seeds.every((seed) => typeof seed === 'string' && /^rediss?:\/\//.test(seed))) {
        throw invalidArgument('cluster must be a non-empty list of redis://HOST:PORT seed URLs');
      }
      this.topology = 'cluster';
      this.carrier = new NodeRedisClusterCarrier(this.channel, events, { seeds: cluster });
    } else if (client !== undefined && 'isCluster' in client) {
      if (client.isCluster) throw invalidArgument('an ioredis Cluster is not supported yet; pass cluster seed URLs');
      this.topology = 'server';
      this.carrier = new IORedisServerCarrier(this.channel, events, client as IORedis);
    } else if (client !== undefined && 'getSlotMaster' in client) {
      this.topology = 'cluster';
      this.carrier = new NodeRedisClusterCarrier(this.channel, events, { cluster: client });
    } else if (client !== undefined && typeof client === 'object' && 'duplicate' in client) {
      this.topology = 'server';
      this.carrier = new NodeRedisServerCarrier(this.channel, events, { client: client as RedisClientType });
    } else {
      throw invalidArgument('client must be a node-redis client or cluster, or an ioredis client');
    }
  }

  protected connect(): Promise<void> {
    return this.carrier.connect();
  }

  protected live(): boolean {
    return this.carrier.live();
  }

  protected send(frame: Buffer): Promise<void> {
    return this.carrier.send(frame);
  }

  protected probe(): Promise<void> {
    return this.carrier.probe();
  }

  protected disconnect(): Promise<void> {
    return this.carrier.disconnect();
  }

  /**
   * Drops the bus's own connections at once and makes new ones (the duplicates of your single-server client
   * too, never the client itself). With your node-redis cluster the bus subscribes again but leaves its
   * connections alone: they are yours, and serve your other commands.
   */
  protected override reopen(timeout: number): Promise<void> {
    return this.carrier.reopen(timeout);
  }
}

/** Destroys a client at once (no QUIT: the server may not be listening), ignoring one already gone. */
function destroyNow(client: { destroy(): void; on(event: 'error', listener: () => void): unknown }): void {
  client.on('error', () => undefined);
  try {
    client.destroy();
  } catch {
    // Already closed.
  }
}

/** Closes a node-redis client gracefully (what was written gets its reply), or destroys it after `ms`. */
async function closeNodeRedis(client: { isOpen: boolean; close(): Promise<void>; destroy(): void }, ms = 1000) {
  if (!client.isOpen) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([client.close(), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  } catch {
    // Closing a client that is down fails; it is destroyed below all the same.
  } finally {
    clearTimeout(timer);
  }
  try {
    client.destroy();
  } catch {
    // Already gone.
  }
}

/**
 * Makes a node-redis client whose first connection fails at once (so that `open()` rejects when Redis is not
 * there: node-redis would otherwise retry its first connect for ever) and which, once it was ready, reconnects
 * with {@link retryDelay}.
 */
function withFirstConnectFailing(
  make: (strategy: (retries: number) => number | false) => RedisClientType,
): RedisClientType {
  let wasReady = false;
  // `false` rather than the cause: node-redis tests `instanceof Error`, which fails across realms (jest).
  const client = make((retries) => (wasReady ? retryDelay(retries) : false));
  client.once('ready', () => (wasReady = true));
  return client;
}

/** node-redis on one server: two clients (duplicates of the user's, or made from the URL). */
class NodeRedisServerCarrier implements RedisCarrier {
  private publisher: RedisClientType | null = null;
  private subscriber: RedisClientType | null = null;
  private subscribed = false;

  constructor(
    private readonly channel: string,
    private readonly events: CarrierEvents,
    private readonly source: { url: string } | { client: RedisClientType },
  ) {}

  async connect(): Promise<void> {
    const make = await this.factory();
    const publisher = make();
    const subscriber = make();
    this.publisher = publisher;
    this.subscriber = subscriber;
    for (const [role, client] of [
      ['publisher', publisher],
      ['subscriber', subscriber],
    ] as const) {
      // Events of clients a reopen dropped are ignored.
      const current = (): boolean => this.publisher === publisher;
      client.on('error', (error: unknown) => current() && this.events.changed(error));
      client.on('ready', () => current() && this.events.changed());
      for (const event of ['reconnecting', 'end']) {
        client.on(event, () => current() && this.events.changed(lost(role, event)));
      }
    }
    await Promise.all([publisher.connect(), subscriber.connect()]);
    // node-redis resubscribes by itself on every reconnect and only says 'ready' once the SUBSCRIBE was answered.
    await subscriber.subscribe(this.channel, (message: Buffer) => this.events.frame(message), true);
    if (this.subscriber !== subscriber) throw new Error('dropped while connecting');
    this.subscribed = true;
  }

  reopen(timeout: number): Promise<void> {
    return redial(
      () => this.drop(),
      () => this.connect(),
      timeout,
    );
  }

  /** Destroys both clients at once. */
  private drop(): void {
    this.subscribed = false;
    const clients = [this.publisher, this.subscriber];
    this.publisher = null;
    this.subscriber = null;
    for (const client of clients) if (client !== null) destroyNow(client);
  }

  private async factory(): Promise<() => RedisClientType> {
    const overrides = { disableOfflineQueue: true };
    if ('client' in this.source) {
      const base = this.source.client;
      return () =>
        withFirstConnectFailing((reconnectStrategy) =>
          base.duplicate({ ...overrides, socket: { ...base.options?.socket, reconnectStrategy } }),
        );
    }
    const { createClient } = await import('redis');
    const { url } = this.source;
    return () =>
      withFirstConnectFailing((reconnectStrategy) =>
        createClient({ url, ...overrides, socket: { reconnectStrategy } }),
      );
  }

  live(): boolean {
    return this.subscribed && this.publisher?.isReady === true && this.subscriber?.isReady === true;
  }

  async send(frame: Buffer): Promise<void> {
    if (this.publisher === null) throw new Error('not connected');
    await this.publisher.publish(this.channel, frame);
  }

  async probe(): Promise<void> {
    if (this.publisher === null) throw new Error('not connected');
    await this.publisher.ping();
  }

  async disconnect(): Promise<void> {
    this.subscribed = false;
    const clients = [this.publisher, this.subscriber].filter((client) => client !== null);
    await Promise.all(clients.map((client) => closeNodeRedis(client)));
  }
}

/**
 * node-redis on a Redis Cluster, sharded pub/sub: the channel lives in one slot, so one master (its command
 * client publishes, its pub/sub client subscribes). Live when both clients of the slot's current master are
 * ready; node-redis moves the subscription itself when the slot moves.
 */
class NodeRedisClusterCarrier implements RedisCarrier {
  private cluster: RedisClusterType | null = null;
  private readonly slot: number;
  private subscribed = false;
  private readonly owned: boolean;

  constructor(
    private readonly channel: string,
    private readonly events: CarrierEvents,
    private readonly source: { seeds: readonly string[] } | { cluster: RedisClusterType },
  ) {
    this.slot = clusterSlot(channel);
    this.owned = 'seeds' in source;
  }

  private readonly onFrame = (message: Buffer): void => this.events.frame(message);
  private readonly onChange = (): void => this.events.changed();
  private readonly onError = (error: unknown): void => this.events.changed(error);

  async connect(): Promise<void> {
    let cluster: RedisClusterType;
    if ('cluster' in this.source) {
      cluster = this.source.cluster;
    } else {
      const { createCluster } = await import('redis');
      cluster = createCluster({
        rootNodes: this.source.seeds.map((url) => ({ url })),
        defaults: { disableOfflineQueue: true, socket: { reconnectStrategy: retryDelay } },
      });
    }
    this.cluster = cluster;
    cluster.on('error', this.onError);
    cluster.on('node-error', this.onError);
    for (const event of ['node-ready', 'node-reconnecting', 'node-disconnect', 'node-connect', 'disconnect']) {
      cluster.on(event, this.onChange);
    }
    await connectShared(cluster);
    await cluster.sSubscribe(this.channel, this.onFrame, true);
    if (this.cluster !== cluster) throw new Error('dropped while connecting');
    this.subscribed = true;
  }

  async reopen(timeout: number): Promise<void> {
    const cluster = this.cluster;
    if (!this.owned && cluster !== null) {
      // The user's cluster keeps its connections: only the subscription is made again.
      this.subscribed = false;
      const again = async (): Promise<void> => {
        try {
          await cluster.sUnsubscribe(this.channel, this.onFrame, true);
        } catch {
          // Subscribed again below all the same.
        }
        await cluster.sSubscribe(this.channel, this.onFrame, true);
      };
      await deadline(again(), timeout, `redis cluster: no answer within ${timeout} ms`);
      this.subscribed = true;
      return;
    }
    return redial(
      () => this.drop(),
      () => this.connect(),
      timeout,
      'redis cluster',
    );
  }

  /** Destroys the bus's own cluster client at once. */
  private drop(): void {
    const cluster = this.cluster;
    this.cluster = null;
    this.subscribed = false;
    if (cluster === null) return;
    this.unlisten(cluster);
    destroyNow(cluster);
  }

  private unlisten(cluster: RedisClusterType): void {
    cluster.off('error', this.onError);
    cluster.off('node-error', this.onError);
    for (const event of ['node-ready', 'node-reconnecting', 'node-disconnect', 'node-connect', 'disconnect']) {
      cluster.off(event, this.onChange);
    }
  }

  live(): boolean {
    if (!this.subscribed || this.cluster === null || !this.cluster.isReady) return false;
    let master;
    try {
      master = this.cluster.getSlotMaster(this.slot);
    } catch {
      return false;
    }
    const pubSub = master?.pubSub;
    return (
      master?.client?.isReady === true &&
      pubSub !== undefined &&
      pubSub.connectPromise === undefined &&
      pubSub.client.isReady
    );
  }

  async send(frame: Buffer): Promise<void> {
    if (this.cluster === null) throw new Error('not connected');
    await this.cluster.sPublish(this.channel, frame);
  }

  async probe(): Promise<void> {
    if (this.cluster === null) throw new Error('not connected');
    // A keyed command goes to the slot's master and fails with CLUSTERDOWN until the cluster is whole again.
    await this.cluster.exists(this.channel);
  }

  async disconnect(): Promise<void> {
    const cluster = this.cluster;
    this.subscribed = false;
    if (cluster === null) return;
    this.unlisten(cluster);
    if (!this.owned) {
      try {
        await cluster.sUnsubscribe(this.channel, this.onFrame, true);
      } catch {
        // The user's cluster is down; its listener is gone all the same once it is back.
      }
      return;
    }
    cluster.on('error', () => undefined);
    if (cluster.isOpen) {
      try {
        await cluster.close();
      } catch {
        cluster.destroy();
      }
    }
  }
}

/** Connections under way of clusters that several buses share, so that only the first one connects. */
const connecting = new WeakMap<RedisClusterType, Promise<unknown>>();

/** Connects a cluster client unless it is (being) connected; resolves once it is ready. */
async function connectShared(cluster: RedisClusterType): Promise<void> {
  if (cluster.isReady) return;
  let pending = connecting.get(cluster);
  if (pending === undefined) {
    // Opened by its owner but not ready yet: its 'connect' comes once the slots are discovered.
    pending = cluster.isOpen ? new Promise((resolve) => cluster.once('connect', resolve)) : cluster.connect();
    connecting.set(cluster, pending);
    void pending.finally(() => connecting.delete(cluster)).catch(() => undefined);
  }
  await pending;
}

/** ioredis on one server: two duplicates of the user's client, offline queue off, resubscribed by the bus. */
class IORedisServerCarrier implements RedisCarrier {
  private publisher: IORedis | null = null;
  private subscriber: IORedis | null = null;
  /** The subscription was confirmed on the subscriber's current connection. */
  private subscribed = false;
  private closed = false;

  constructor(
    private readonly channel: string,
    private readonly events: CarrierEvents,
    private readonly base: IORedis,
  ) {}

  async connect(): Promise<void> {
    const overrides: IORedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      // Commands written but unanswered when a connection drops are rejected, not resent after the reconnect.
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      retryStrategy: retryDelay,
    };
    const publisher = this.base.duplicate(overrides);
    // ioredis says 'ready' before it resubscribes: the bus subscribes itself and waits for the reply.
    const subscriber = this.base.duplicate({ ...overrides, autoResubscribe: false });
    this.publisher = publisher;
    this.subscriber = subscriber;
    // Events of clients a reopen dropped are ignored.
    const current = (): boolean => this.subscriber === subscriber;
    subscriber.on('close', () => current() && (this.subscribed = false));
    for (const [role, client] of [
      ['publisher', publisher],
      ['subscriber', subscriber],
    ] as const) {
      client.on('error', (error: unknown) => current() && this.events.changed(error));
      client.on('ready', () => current() && this.events.changed());
      for (const event of ['close', 'reconnecting', 'end'])
        client.on(event, () => current() && this.events.changed(lost(role, event)));
    }
    subscriber.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.events.frame(message));
    await Promise.all([publisher.connect(), subscriber.connect()]);
    await subscriber.subscribe(this.channel);
    if (!current()) throw new Error('dropped while connecting');
    this.subscribed = true;
    subscriber.on('ready', () => this.resubscribe(subscriber));
  }

  private resubscribe(subscriber: IORedis): void {
    subscriber.subscribe(this.channel).then(
      () => {
        if (this.closed || this.subscriber !== subscriber || subscriber.status !== 'ready') return;
        this.subscribed = true;
        this.events.changed();
      },
      (error: unknown) => {
        // The connection broke again before the reply: its next 'ready' tries again.
        if (this.subscriber === subscriber) this.events.changed(error);
      },
    );
  }

  reopen(timeout: number): Promise<void> {
    return redial(
      () => this.drop(),
      () => this.connect(),
      timeout,
    );
  }

  /** Disconnects both duplicates at once, for good (they would reconnect by themselves otherwise). */
  private drop(): void {
    this.subscribed = false;
    const clients = [this.publisher, this.subscriber];
    this.publisher = null;
    this.subscriber = null;
    for (const client of clients) {
      if (client === null) continue;
      client.on('error', () => undefined);
      client.disconnect(false);
    }
  }

  live(): boolean {
    return this.subscribed && this.publisher?.status === 'ready' && this.subscriber?.status === 'ready';
  }

  async send(frame: Buffer): Promise<void> {
    if (this.publisher === null) throw new Error('not connected');
    await this.publisher.publish(this.channel, frame);
  }

  async probe(): Promise<void> {
    if (this.publisher === null) throw new Error('not connected');
    await this.publisher.ping();
  }

  async disconnect(): Promise<void> {
    this.closed = true;
    this.subscribed = false;
    for (const client of [this.publisher, this.subscriber]) {
      if (client === null) continue;
      client.on('error', () => undefined);
      client.disconnect(false);
    }
    return Promise.resolve();
  }
}

/** Drops a carrier's clients and connects afresh within `timeout`; what a failed attempt made is dropped too. */
async function redial(drop: () => void, connect: () => Promise<void>, timeout: number, label = 'redis'): Promise<void> {
  drop();
  try {
    await deadline(connect(), timeout, `${label}: no answer within ${timeout} ms`);
  } catch (error) {
    drop();
    throw error;
  }
}
