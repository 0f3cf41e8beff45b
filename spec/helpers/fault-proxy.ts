/**
 * A real TCP proxy for partition tests: listens on a free loopback port and forwards every connection to a
 * target, and on command cuts, blackholes, delays or throttles the traffic, counting the bytes both ways.
 */
import * as net from 'node:net';
import { onTeardown } from './net';

/** How much a direction may hold before its source is paused: backpressure reaches the sender's kernel. */
const HIGH_WATER = 64 * 1024;

type Mode = 'forward' | 'cut' | 'blackhole';

/** One direction of one proxied connection: reads `from`, writes `to`, as the proxy's mode allows. */
class Pipe {
  private readonly queue: Array<{ chunk: Buffer; due: number }> = [];
  private queued = 0;
  private timer: NodeJS.Timeout | null = null;
  private waitingForDrain = false;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly count: (bytes: number) => void,
  ) {
    from.on('data', (chunk: Buffer) => {
      this.count(chunk.length);
      if (this.proxy.mode === 'blackhole') return;
      this.queue.push({ chunk, due: Date.now() + this.proxy.delayMs });
      this.queued += chunk.length;
      if (this.queued >= HIGH_WATER) from.pause();
      this.pump();
    });
    to.on('drain', () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }

  /** Writes what is due, as fast as the throttle allows. */
  pump(): void {
    if (this.timer !== null || this.waitingForDrain || this.to.destroyed) return;
    while (this.queue.length > 0) {
      if (this.proxy.mode === 'blackhole') return;
      const head = this.queue[0];
      const now = Date.now();
      if (head.due > now) return this.schedule(head.due - now);
      let piece = head.chunk;
      const allowance = this.proxy.takeAllowance(piece.length);
      if (allowance === 0) return this.schedule(10);
      if (allowance < piece.length) {
        head.chunk = piece.subarray(allowance);
        piece = piece.subarray(0, allowance);
      } else {
        this.queue.shift();
      }
      this.queued -= piece.length;
      const flushed = this.to.write(piece);
      if (this.queued < HIGH_WATER / 2) this.from.resume();
      if (!flushed) {
        this.waitingForDrain = true;
        return;
      }
    }
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, ms);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
  }
}

/** A TCP proxy between the code under test and a broker. */
export class FaultProxy {
  /** Bytes read from clients (towards the target) and from the target (towards clients). */
  bytesUp = 0;
  bytesDown = 0;
  /** Connections accepted so far. */
  accepted = 0;
  /** @internal */
  mode: Mode = 'forward';
  /** @internal */
  delayMs = 0;
  private bytesPerSecond = 0;
  private tokens = 0;
  private refilledAt = Date.now();
  private readonly connections = new Set<{ client: net.Socket; upstream: net.Socket | null; pipes: Pipe[] }>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    readonly targetPort: number,
    readonly targetHost: string,
  ) {}

  /** Starts a proxy on an ephemeral port of 127.0.0.1 to `targetHost:targetPort`, closed after the test. */
  static async start(targetPort: number, targetHost = '127.0.0.1', { teardown = true } = {}): Promise<FaultProxy> {
    let proxy: FaultProxy | null = null;
    const server = net.createServer((client) => proxy?.adopt(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: 0, host: '127.0.0.1' }, () => resolve());
    });
    const address = server.address() as net.AddressInfo;
    proxy = new FaultProxy(server, address.port, targetPort, targetHost);
    if (teardown) onTeardown(() => proxy.close());
    return proxy;
  }

  /** `redis://` or `nats://` URL of the proxy. */
  url(scheme: string): string {
    return `${scheme}://127.0.0.1:${this.port}`;
  }

  /** Number of proxied connections now open. */
  get open(): number {
    return this.connections.size;
  }

  /** Resets every connection and refuses (resets) new ones until {@link heal}. */
  cut(): void {
    this.mode = 'cut';
    for (const connection of this.connections) this.drop(connection);
  }

  /** Accepts and reads, but forwards nothing in either direction until {@link heal}. */
  blackhole(): void {
    this.mode = 'blackhole';
  }

  /** Holds every chunk `ms` before forwarding it (0 to stop delaying). */
  delay(ms: number): void {
    this.delayMs = ms;
  }

  /** Forwards at most `bytesPerSecond` in total, both directions together (0 for no limit). */
  throttle(bytesPerSecond: number): void {
    this.bytesPerSecond = bytesPerSecond;
    this.tokens = 0;
    this.refilledAt = Date.now();
  }

  /** Back to plain forwarding: no cut, no blackhole, no delay, no throttle. */
  heal(): void {
    this.mode = 'forward';
    this.delayMs = 0;
    this.bytesPerSecond = 0;
    for (const connection of this.connections) for (const pipe of connection.pipes) pipe.pump();
  }

  /** Closes the listener and every connection. */
  async close(): Promise<void> {
    for (const connection of this.connections) this.drop(connection);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** @internal How many of `wanted` bytes may go now under the throttle. */
  takeAllowance(wanted: number): number {
    if (this.bytesPerSecond === 0) return wanted;
    const now = Date.now();
    // At most a tenth of a second's worth saved up, so the rate holds over short windows too.
    this.tokens = Math.min(
      this.tokens + ((now - this.refilledAt) * this.bytesPerSecond) / 1000,
      Math.max(1, this.bytesPerSecond / 10),
    );
    this.refilledAt = now;
    const allowed = Math.min(wanted, Math.floor(this.tokens));
    this.tokens -= allowed;
    return allowed;
  }

  private adopt(client: net.Socket): void {
    this.accepted += 1;
    client.on('error', () => undefined);
    if (this.mode === 'cut') {
      reset(client);
      return;
    }
    const connection = { client, upstream: null as net.Socket | null, pipes: [] as Pipe[] };
    this.connections.add(connection);
    client.on('close', () => this.drop(connection));
    if (this.mode === 'blackhole') {
      // Accepted and read, never forwarded: a connect that seems to work and then hears nothing.
      client.on('data', (chunk: Buffer) => (this.bytesUp += chunk.length));
      return;
    }
    const upstream = net.connect({ port: this.targetPort, host: this.targetHost });
    connection.upstream = upstream;
    upstream.on('error', () => undefined);
    upstream.on('close', () => this.drop(connection));
    client.pause();
    upstream.once('connect', () => {
      connection.pipes.push(
        new Pipe(this, client, upstream, (bytes) => (this.bytesUp += bytes)),
        new Pipe(this, upstream, client, (bytes) => (this.bytesDown += bytes)),
      );
      client.resume();
    });
  }

  private drop(connection: { client: net.Socket; upstream: net.Socket | null; pipes: Pipe[] }): void {
    if (!this.connections.delete(connection)) return;
    for (const pipe of connection.pipes) pipe.stop();
    reset(connection.client);
    if (connection.upstream !== null) reset(connection.upstream);
  }
}

/**
 * Resets a socket (RST), or destroys it when it cannot be reset: one that is ending (a reset after the
 * shutdown fails in libuv, and Node then never closes the handle, which keeps the process alive) or still
 * connecting (Node would wait for a connect that may never come).
 */
function reset(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting || socket.readableEnded || socket.writableEnded) socket.destroy();
  else socket.resetAndDestroy();
}
