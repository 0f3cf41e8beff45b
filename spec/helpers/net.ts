import * as net from 'node:net';
import * as tls from 'node:tls';
import { Multiplexer, type MultiplexerOptions } from '../../lib';

/** Things to close after each test, newest first. */
const teardowns: Array<() => Promise<void> | void> = [];

/** Registers cleanup to run after the current test. */
export function onTeardown(fn: () => Promise<void> | void): void {
  teardowns.push(fn);
}

afterEach(async () => {
  while (teardowns.length > 0) {
    const fn = teardowns.pop();
    if (fn) await fn();
  }
});

/** Polls `predicate` until it is true; fails with `what` after `timeout` ms. */
export async function waitFor(predicate: () => boolean, what = 'condition', timeout = 5000): Promise<void> {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await delay(5);
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A multiplexer listening on an ephemeral port of 127.0.0.1, destroyed after the test. */
export async function startMux<S extends object = Record<string, unknown>>(
  options: MultiplexerOptions = {},
  setup?: (mux: Multiplexer<S>) => void,
): Promise<{ mux: Multiplexer<S>; port: number }> {
  const mux = new Multiplexer<S>({ debugLevel: 'critical', ...options });
  setup?.(mux);
  const address = await mux.listen({ port: 0, host: '127.0.0.1' });
  onTeardown(() => mux.destroy({ timeout: 200 }));
  if (typeof address === 'string') throw new Error('expected a TCP address');
  return { mux, port: address.port };
}

/** Where {@link TestClient.connect} connects to, and how. */
export interface ConnectOptions {
  host?: string;
  /** The address to connect from (plain TCP only). */
  localAddress?: string;
  /** A Unix socket to connect to instead of host:port. */
  path?: string;
  tls?: tls.ConnectionOptions;
}

/** A real TCP (or TLS) client that records everything it receives. */
export class TestClient {
  readonly chunks: Buffer[] = [];
  received = 0;
  ended = false;
  closed = false;
  error: Error | null = null;
  readonly closedPromise: Promise<void>;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.received += chunk.length;
    });
    socket.on('end', () => {
      this.ended = true;
    });
    socket.on('error', (error) => {
      this.error = error;
    });
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        resolve();
      }),
    );
    onTeardown(() => {
      socket.destroy();
      return this.closedPromise;
    });
  }

  /**
   * Connects to `host` (127.0.0.1 by default):port, from `localAddress` if given (any of 127.0.0.0/8 on
   * Linux), or to the Unix socket `path` instead (the port is then unused), and waits until connected.
   */
  static async connect(port: number, options: ConnectOptions = {}): Promise<TestClient> {
    const { host = '127.0.0.1', localAddress, path, tls: secure } = options;
    const socket =
      path !== undefined
        ? net.connect({ path })
        : secure
          ? tls.connect({ port, host, ...secure })
          : net.connect({ port, host, localAddress });
    const client = new TestClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once(socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect', () => resolve());
      socket.once('error', reject);
    });
    return client;
  }

  /** Everything received so far. */
  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get text(): string {
    return this.data.toString('utf8');
  }

  write(data: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (error) => (error ? reject(error) : resolve())));
  }

  /** Waits until at least `bytes` bytes arrived. */
  waitForBytes(bytes: number, timeout = 5000): Promise<void> {
    return waitFor(() => this.received >= bytes, `${bytes} bytes (have ${this.received})`, timeout);
  }

  /** Waits until the text received contains `needle`. */
  waitForText(needle: string, timeout = 5000): Promise<void> {
    return waitFor(
      () => this.text.includes(needle),
      `text ${JSON.stringify(needle)} (have ${JSON.stringify(this.text.slice(-200))})`,
      timeout,
    );
  }

  /** Waits until the server closed the connection. */
  waitForClose(timeout = 5000): Promise<void> {
    return waitFor(() => this.closed || this.ended, 'the connection to close', timeout);
  }

  end(): void {
    this.socket.end();
  }
}

/** Connects `count` clients and waits until the multiplexer has admitted them all. */
export async function connectAll(mux: Multiplexer<object>, port: number, count: number): Promise<TestClient[]> {
  const before = mux.clients.size;
  const clients = await Promise.all(Array.from({ length: count }, () => TestClient.connect(port)));
  await waitFor(() => mux.clients.size >= before + count, `${count} clients to join`);
  return clients;
}
