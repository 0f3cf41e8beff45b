import type { Client, ListenOptions, Multiplexer } from '../../lib';
import { onTeardown, TestClient, waitFor } from './net';

/**
 * Listens with an already-built multiplexer (a subclass, or one with custom options) on an ephemeral port
 * of 127.0.0.1 by default, and destroys it after the test.
 */
export async function serve<S extends object>(mux: Multiplexer<S>, where: ListenOptions = {}): Promise<number> {
  const address = await mux.listen({ port: 0, host: '127.0.0.1', ...where });
  onTeardown(() => mux.destroy({ timeout: 200 }));
  if (typeof address === 'string') throw new Error('expected a TCP address');
  return address.port;
}

/** A real client of a Unix socket. */
export function connectPath(path: string): Promise<TestClient> {
  return TestClient.connect(0, { path });
}

/** The server's view of a test client (matched by the client's local port), once the server has accepted it. */
export function serverSideOf<S extends object>(mux: Multiplexer<S>, client: TestClient): Client<S> {
  const port = client.socket.localPort;
  for (const candidate of mux.clients) if (candidate.port === port) return candidate;
  throw new Error(`no joined client on port ${String(port)}`);
}

/** Waits until a test client has joined, then returns the server's view of it. */
export async function joined<S extends object>(mux: Multiplexer<S>, client: TestClient): Promise<Client<S>> {
  const port = client.socket.localPort;
  await waitFor(
    () => [...mux.clients].some((candidate) => candidate.port === port),
    `client on port ${String(port)} to join`,
  );
  return serverSideOf(mux, client);
}

/** A promise with its resolve function, for gating async hooks from a test. */
export function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}
