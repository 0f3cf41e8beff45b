import * as net from 'node:net';
import { onTeardown, TestClient, waitFor } from './net';
import { type PatternStream, PatternVerifier } from './pattern';

export { randomBytes, sendPattern } from './pattern';

/** Connects a plain TCP socket to 127.0.0.1:port (from `localAddress` if given); destroyed after the test. Socket errors are ignored unless listened for. */
export function connectSocket(port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    // Resets are expected in these specs; whoever needs the error listens for it too.
    socket.on('error', () => undefined);
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    onTeardown(() => {
      socket.destroy();
      return closed;
    });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** A receiver that checks everything it gets against a {@link PatternStream}, without keeping it. */
export class PatternReceiver {
  readonly verifier: PatternVerifier;
  closed = false;
  error: NodeJS.ErrnoException | null = null;

  constructor(
    readonly socket: net.Socket,
    pattern: PatternStream,
  ) {
    this.verifier = new PatternVerifier(pattern);
    socket.on('data', (chunk: Buffer) => this.verifier.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => (this.error = error));
    socket.on('close', () => (this.closed = true));
  }

  static async connect(port: number, pattern: PatternStream): Promise<PatternReceiver> {
    return new PatternReceiver(await connectSocket(port), pattern);
  }

  get received(): number {
    return this.verifier.offset;
  }

  /** Waits until `bytes` arrived intact; fails at once on a wrong byte or a closed connection. */
  async waitForBytes(bytes: number, timeout = 30_000): Promise<void> {
    await waitFor(
      () => this.verifier.offset >= bytes || this.verifier.errorAt !== null || this.closed,
      `${bytes} bytes (have ${this.verifier.offset})`,
      timeout,
    );
    expect({ errorAt: this.verifier.errorAt, closed: this.closed }).toEqual({ errorAt: null, closed: false });
  }
}

/** Resolves when `socket` has closed. */
export function closed(socket: net.Socket): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** A {@link TestClient} connected from a given local address (127.0.0.2, ...), for per-address rules. */
export function connectFrom(port: number, localAddress: string): Promise<TestClient> {
  return TestClient.connect(port, { localAddress });
}

/**
 * For servers whose joins cannot be observed (the CLI): `sender` writes `probe\n` every 50 ms until every
 * receiver got one, so that later messages are known to reach them all. Returns how many it wrote.
 */
export async function untilEveryoneHears(
  sender: TestClient,
  receivers: readonly TestClient[],
  timeout = 5000,
): Promise<number> {
  let probes = 0;
  const heard = (): boolean => receivers.every((receiver) => receiver.text.includes('probe\n'));
  const start = Date.now();
  while (!heard()) {
    if (Date.now() - start > timeout) throw new Error('the receivers never heard the probe');
    await sender.write('probe\n');
    probes += 1;
    await waitFor(heard, 'the probe', 50).catch(() => undefined);
  }
  await new Promise((resolve) => setTimeout(resolve, 60));
  return probes;
}

/** What a client received after the probes of {@link untilEveryoneHears}. */
export function afterProbes(client: TestClient): string {
  return client.text.replace(/^(probe\n)+/, '');
}

/** Settles with what `promise` gives, or with `late` after `ms` if it has not by then (its timer is cleared). */
export function within<T, L>(promise: Promise<T>, ms: number, late: L): Promise<T | L> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<L>((resolve) => {
    timer = setTimeout(() => resolve(late), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
