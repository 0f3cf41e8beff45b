import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Multiplexer, type Client, type ExitReason } from '../lib';
import { connectAll, delay, onTeardown, startMux, TestClient, waitFor } from './helpers/net';
import { connectPath, joined, serve, serverSideOf } from './helpers/serve';

/** Records every exit filter call and exit event of a multiplexer, in order. */
function recordExits<S extends object>(
  mux: Multiplexer<S>,
): Array<{ via: 'filter' | 'event'; id: number; reason: ExitReason; error?: Error }> {
  const log: Array<{ via: 'filter' | 'event'; id: number; reason: ExitReason; error?: Error }> = [];
  mux.addExitFilter((client, reason) => {
    log.push({ via: 'filter', id: client.id, reason });
  });
  mux.on('exit', (client, reason, error) => log.push({ via: 'event', id: client.id, reason, error }));
  return log;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mux-spec-'));
  onTeardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('listen', () => {
  it('resolves with the bound address when listening on port 0', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => mux.destroy());
    const address = await mux.listen({ port: 0, host: '127.0.0.1' });
    expect(address.address).toBe('127.0.0.1');
    expect(address.port).toBeGreaterThan(0);
    expect(mux.address()).toEqual(address);
    const client = await TestClient.connect(address.port);
    await joined(mux, client);
  });

  it('takes a port number', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => mux.destroy());
    const address = await mux.listen(0);
    expect(address.port).toBeGreaterThan(0);
  });

  it('rejects with code EADDRINUSE and a clear message when the port is taken', async () => {
    const { port } = await startMux();
    const second = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => second.destroy());
    const error = (await second
      .listen({ port, host: '127.0.0.1' })
      .catch((caught: unknown) => caught)) as NodeJS.ErrnoException;
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe('EADDRINUSE');
    expect(error.message).toContain(String(port));
    expect(error.message).toMatch(/in use/);
  });

  it('can listen elsewhere after a failed attempt', async () => {
    const { port } = await startMux();
    const second = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => second.destroy());
    await expect(second.listen({ port, host: '127.0.0.1' })).rejects.toThrow();
    const address = await second.listen({ port: 0, host: '127.0.0.1' });
    expect(address.port).not.toBe(port);
  });

  it('listens again on another port, both listeners feeding one broadcast', async () => {
    const { mux, port } = await startMux();
    const second = await mux.listen({ port: 0, host: '127.0.0.1' });
    expect(mux.addresses()).toEqual([mux.address(), second]);
    const alice = await TestClient.connect(port);
    const bob = await TestClient.connect(second.port);
    await waitFor(() => mux.clients.size === 2, 'both to join');
    await alice.write('over the first');
    await bob.waitForText('over the first');
    await bob.write('over the second');
    await alice.waitForText('over the second');
  });

  it('rejects a port out of range with a TypeError', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    await expect(mux.listen(70000)).rejects.toBeInstanceOf(TypeError);
    await expect(mux.listen(-1)).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    await mux.destroy();
  });

  it('listens on a Unix socket path, and removes it on destroy', async () => {
    const path = join(tempDir(), 'mux.sock');
    const mux = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => mux.destroy());
    await expect(mux.listen(path)).resolves.toBe(path);
    const [alice, bob] = await Promise.all([connectPath(path), connectPath(path)]);
    await waitFor(() => mux.clients.size === 2, 'both clients to join');
    const onServer = [...mux.clients][0];
    expect(onServer.address).toBe('local');
    expect(onServer.port).toBe(0);
    await alice.write('over unix');
    await bob.waitForText('over unix');
    await mux.destroy();
    expect(existsSync(path)).toBe(false);
  });

  it('listens on a Unix socket path given as { path }', async () => {
    const path = join(tempDir(), 'opts.sock');
    const mux = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => mux.destroy());
    await expect(mux.listen({ path })).resolves.toBe(path);
    await connectPath(path);
    await waitFor(() => mux.clients.size === 1, 'the client to join');
  });

  it('leaves nothing listening when destroy() is called while listen() is still pending', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => {
      // Only reached when this test fails: close the server the multiplexer left open, so jest can exit.
      const internals = mux as unknown as { server: net.Server | null };
      return new Promise<void>((resolve) =>
        internals.server?.listening === true ? internals.server.close(() => resolve()) : resolve(),
      );
    });
    const listening = mux.listen({ port: 0, host: '127.0.0.1' }).then(
      (address) => address,
      () => null,
    );
    await mux.destroy();
    const address = await listening;
    expect(mux.address()).toBeNull();
    if (address !== null && typeof address !== 'string') {
      await expect(TestClient.connect(address.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    }
  });

  it('rejects after destroy with ERR_DESTROYED', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    await mux.destroy();
    await expect(mux.listen(0)).rejects.toMatchObject({ code: 'ERR_DESTROYED' });
  });
});

describe('init', () => {
  it('is the Tcl name of listen(port)', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => mux.destroy());
    const address = await mux.init(0);
    expect(address.port).toBeGreaterThan(0);
    const [alice, bob] = await connectAll(mux, address.port, 2);
    await alice.write('via init');
    await bob.waitForText('via init');
  });
});

describe('two instances', () => {
  it('run side by side, fully isolated', async () => {
    const first = await startMux({ framing: 'line' }, (m) => m.addFilter((line) => `first:${line.toString()}`));
    const second = await startMux({ framing: 'line' });
    first.mux.config('sendtoorigin', 1);
    expect(second.mux.config('sendtoorigin')).toBe(false);
    expect(first.mux.name).not.toBe(second.mux.name);
    const [a1, a2] = await connectAll(first.mux, first.port, 2);
    const [b1, b2] = await connectAll(second.mux, second.port, 2);
    await a1.write('one\n');
    await b1.write('two\n');
    await a2.waitForText('first:one\n');
    await a1.waitForText('first:one\n');
    await b2.waitForText('two\n');
    await delay(30);
    expect(a2.text).toBe('first:one\n');
    expect(b2.text).toBe('two\n');
    expect(b1.received).toBe(0);
    expect(first.mux.stats().messagesIn).toBe(1);
    expect(second.mux.stats().messagesIn).toBe(1);
    await first.mux.destroy();
    await b1.write('still\n');
    await b2.waitForText('still\n');
  });
});

describe('leaving', () => {
  it("runs exit filters then the exit event once, with 'eof', when a client closes its side", async () => {
    const { mux, port } = await startMux();
    const exits = recordExits(mux);
    const [alice] = await connectAll(mux, port, 2);
    const id = (await joined(mux, alice)).id;
    alice.end();
    await waitFor(() => exits.length === 2, 'exit filter and event');
    await delay(30);
    expect(exits).toEqual([
      { via: 'filter', id, reason: 'eof' },
      { via: 'event', id, reason: 'eof', error: undefined },
    ]);
    expect(mux.clients.size).toBe(1);
  });

  it("runs them once, with 'reset' and the socket error, when a client resets the connection", async () => {
    const { mux, port } = await startMux();
    const exits = recordExits(mux);
    const [alice] = await connectAll(mux, port, 2);
    const id = (await joined(mux, alice)).id;
    alice.socket.resetAndDestroy();
    await waitFor(() => exits.length === 2, 'exit filter and event');
    await delay(30);
    expect(exits.map(({ via, reason }) => [via, reason])).toEqual([
      ['filter', 'reset'],
      ['event', 'reset'],
    ]);
    expect(exits[1].id).toBe(id);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- needed by tsc (jest types)
    expect((exits[1].error as NodeJS.ErrnoException | undefined)?.code).toBe('ECONNRESET');
  });

  it("runs them once, with 'kicked', when server code disconnects a client, after sending it what was queued", async () => {
    const { mux, port } = await startMux();
    const exits = recordExits(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = await joined(mux, alice);
    mux.sendTo(aliceOnServer, 'goodbye');
    aliceOnServer.disconnect();
    await alice.waitForClose();
    expect(alice.text).toBe('goodbye');
    await waitFor(() => exits.length === 2, 'exit filter and event');
    expect(exits.map(({ via, reason }) => [via, reason])).toEqual([
      ['filter', 'kicked'],
      ['event', 'kicked'],
    ]);
    await bob.write('after');
    await delay(30);
    expect(alice.text).toBe('goodbye');
  });

  it("runs them with 'kicked' for mux.disconnect(client), and only once when destroy() follows", async () => {
    const { mux, port } = await startMux();
    const exits = recordExits(mux);
    const [alice] = await connectAll(mux, port, 1);
    mux.disconnect(await joined(mux, alice));
    await mux.destroy();
    await delay(30);
    expect(exits.map(({ via, reason }) => [via, reason])).toEqual([
      ['filter', 'kicked'],
      ['event', 'kicked'],
    ]);
  });

  it("runs them once per client, with 'destroy', when the multiplexer is destroyed", async () => {
    const { mux, port } = await startMux();
    const exits = recordExits(mux);
    const clients = await connectAll(mux, port, 3);
    await mux.destroy();
    await Promise.all(clients.map((client) => client.waitForClose()));
    expect(exits.filter(({ via }) => via === 'filter').map(({ reason }) => reason)).toEqual([
      'destroy',
      'destroy',
      'destroy',
    ]);
    expect(exits.filter(({ via }) => via === 'event')).toHaveLength(3);
    expect(new Set(exits.map(({ id }) => id)).size).toBe(3);
    expect(mux.stats().disconnects.destroy).toBe(3);
  });

  it('closes a client still awaiting its access decision on destroy(), without exit hooks for it', async () => {
    const { mux, port } = await startMux({}, (m) => m.addAccessFilter(() => new Promise<boolean>(() => undefined)));
    const exits = recordExits(mux);
    const client = await TestClient.connect(port);
    await waitFor(() => mux.stats().connections === 1, 'the connection');
    await mux.destroy();
    await client.waitForClose();
    expect(exits).toEqual([]);
  });

  it("runs them once, with 'idle', when a client stays idle past idleTimeout", async () => {
    const { mux, port } = await startMux({ idleTimeout: 150 });
    const exits = recordExits(mux);
    const [alice] = await connectAll(mux, port, 1);
    await alice.waitForClose(5000);
    await waitFor(() => exits.length === 2, 'exit filter and event');
    await delay(30);
    expect(exits.map(({ via, reason }) => [via, reason])).toEqual([
      ['filter', 'idle'],
      ['event', 'idle'],
    ]);
  });

  it('applies an idleTimeout set with config() to clients already connected', async () => {
    const { mux, port } = await startMux();
    const exits = recordExits(mux);
    const [alice] = await connectAll(mux, port, 1);
    mux.config('idletimeout', 100);
    await alice.waitForClose(5000);
    await waitFor(() => exits.length === 2, 'exit filter and event');
    expect(exits[0].reason).toBe('idle');
  });

  it('does not disconnect a client that keeps sending before idleTimeout passes', async () => {
    const { mux, port } = await startMux({ idleTimeout: 300 });
    const exits = recordExits(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    for (let i = 0; i < 8; i += 1) {
      await alice.write('.');
      await bob.write('.');
      await delay(60);
    }
    expect(exits).toEqual([]);
    expect(mux.clients.size).toBe(2);
  });

  it('passes exit filters the client and the reason, after it left the broadcast', async () => {
    const seen: Array<[Client, ExitReason, boolean]> = [];
    const { mux, port } = await startMux({}, (m) =>
      m.addExitFilter((client, reason) => seen.push([client, reason, m.clients.has(client)])),
    );
    const [alice] = await connectAll(mux, port, 1);
    const aliceOnServer = await joined(mux, alice);
    alice.end();
    await waitFor(() => seen.length === 1, 'the exit filter');
    expect(seen[0]).toEqual([aliceOnServer, 'eof', false]);
  });

  it('logs and ignores an exit filter that throws or rejects; later exit filters still run', async () => {
    const ran: string[] = [];
    const errors: Array<[string, string]> = [];
    const { mux, port } = await startMux({}, (m) => {
      m.addExitFilter(() => {
        ran.push('first');
        throw new Error('exit failed');
      });
      m.addExitFilter(() => {
        ran.push('second');
        return Promise.reject(new Error('async exit failed'));
      });
      m.addExitFilter(() => {
        ran.push('third');
      });
      m.on('error', (error, context) => errors.push([error.message, context.source]));
    });
    const exitEvents: ExitReason[] = [];
    mux.on('exit', (_client, reason) => exitEvents.push(reason));
    const [alice, bob] = await connectAll(mux, port, 2);
    alice.end();
    await waitFor(() => errors.length === 2, 'both errors to be reported');
    expect(ran).toEqual(['first', 'second', 'third']);
    expect(exitEvents).toEqual(['eof']);
    expect(errors).toEqual([
      ['exit failed', 'exitFilter'],
      ['async exit failed', 'exitFilter'],
    ]);
    expect(mux.stats().hookErrors).toBe(2);
    await connectAll(mux, port, 1).then(([carol]) => carol.write('server still up'));
    await bob.waitForText('server still up');
  });

  it('can be observed through exitFilter() overridden in a subclass calling super', async () => {
    const order: string[] = [];
    class Leaving extends Multiplexer {
      override exitFilter(client: Client, reason: ExitReason): void | Promise<void> {
        order.push(`override:${reason}`);
        return super.exitFilter(client, reason);
      }
    }
    const mux = new Leaving({ debugLevel: 'critical' });
    mux.addExitFilter(() => {
      order.push('registered');
    });
    const port = await serve(mux);
    const [alice] = await connectAll(mux, port, 1);
    alice.end();
    await waitFor(() => order.length === 2, 'the exit hooks');
    expect(order).toEqual(['override:eof', 'registered']);
  });
});

describe('destroy', () => {
  it("closes the listener and every client, emits 'close' once, and resolves", async () => {
    const { mux, port } = await startMux();
    const clients = await connectAll(mux, port, 3);
    let closes = 0;
    mux.on('close', () => {
      closes += 1;
    });
    await mux.destroy();
    await Promise.all(clients.map((client) => client.waitForClose()));
    expect(closes).toBe(1);
    expect(mux.address()).toBeNull();
    expect(mux.stats().connections).toBe(0);
    await expect(TestClient.connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('is idempotent: later calls return the same Promise', async () => {
    const { mux, port } = await startMux();
    await connectAll(mux, port, 1);
    const first = mux.destroy();
    const second = mux.destroy();
    expect(first).toBeInstanceOf(Promise);
    expect(second).toBe(first);
    await first;
    await expect(mux.destroy()).resolves.toBeUndefined();
  });

  it('resolves for a multiplexer that never listened', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    let closed = false;
    mux.on('close', () => {
      closed = true;
    });
    await mux.destroy();
    expect(closed).toBe(true);
  });

  it('frees the port, so another instance can listen on it', async () => {
    const { mux, port } = await startMux();
    await connectAll(mux, port, 2);
    await mux.destroy();
    const next = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => next.destroy());
    await expect(next.listen({ port, host: '127.0.0.1' })).resolves.toMatchObject({ port });
  });

  it('lets clients take what is queued for them before closing', async () => {
    const { mux, port } = await startMux();
    const [alice] = await connectAll(mux, port, 1);
    mux.sendToAll('last words');
    await mux.destroy();
    await alice.waitForClose();
    expect(alice.text).toBe('last words');
  });
});

describe('half-close', () => {
  it('delivers what a client sent before its EOF to the others', async () => {
    const { mux, port } = await startMux();
    const exits = recordExits(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    alice.socket.end('parting words');
    await bob.waitForText('parting words');
    await waitFor(() => exits.length === 2, 'the exit hooks');
    expect(exits[0].reason).toBe('eof');
  });

  it('delivers a last line without its newline at EOF, with the newline added, in line framing', async () => {
    const { mux, port } = await startMux({ framing: 'line' });
    const [alice, bob] = await connectAll(mux, port, 2);
    alice.socket.end('no newline');
    await bob.waitForText('no newline\n');
  });

  it('takes a client that sent EOF out of the broadcast by default, as Tcl does', async () => {
    const { mux, port } = await startMux();
    const [alice, bob] = await connectAll(mux, port, 2);
    alice.end();
    await alice.waitForClose();
    await waitFor(() => mux.clients.size === 1, 'alice to leave');
    await bob.write('anyone?');
    await delay(30);
    expect(alice.received).toBe(0);
  });

  it('keeps a client that sent EOF as a receiver with allowHalfOpen', async () => {
    const { mux, port } = await startMux({ allowHalfOpen: true });
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = await joined(mux, alice);
    alice.socket.end('bye for now');
    await bob.waitForText('bye for now');
    await waitFor(() => aliceOnServer.socket.readableEnded, 'the server to read the EOF');
    await bob.write('still listening?');
    await alice.waitForText('still listening?');
    expect(mux.clients.has(aliceOnServer)).toBe(true);
  });
});

describe('server code', () => {
  interface Chat {
    nick: string;
  }

  it('keeps per-client state on client.state, starting empty', async () => {
    const mux = new Multiplexer<Chat>({ framing: 'line', debugLevel: 'critical' });
    const initial: Array<Partial<Chat>> = [];
    mux.on('connect', (client) => {
      initial.push({ ...client.state });
      client.state.nick = `user${client.id}`;
    });
    mux.addFilter((line, client) => `${client.state.nick ?? '?'}: ${line.toString()}`);
    const port = await serve(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = await joined(mux, alice);
    const bobOnServer = await joined(mux, bob);
    expect(initial).toEqual([{}, {}]);
    expect(aliceOnServer.id).not.toBe(bobOnServer.id);
    await alice.write('hi\n');
    await bob.write('hello\n');
    await bob.waitForText(`user${aliceOnServer.id}: hi\n`);
    await alice.waitForText(`user${bobOnServer.id}: hello\n`);
  });

  it('sends to everyone with sendToAll, except the client given', async () => {
    const { mux, port } = await startMux();
    const [alice, bob, carol] = await connectAll(mux, port, 3);
    mux.sendToAll('to all');
    await Promise.all([alice, bob, carol].map((client) => client.waitForText('to all')));
    mux.sendToAll(Buffer.from(' but bob'), serverSideOf(mux, bob));
    await alice.waitForText('to all but bob');
    await carol.waitForText('to all but bob');
    await delay(30);
    expect(bob.text).toBe('to all');
  });

  it('sends to one client with sendTo or client.send', async () => {
    const { mux, port } = await startMux();
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = serverSideOf(mux, alice);
    expect(mux.sendTo(aliceOnServer, 'just you')).toBe(true);
    expect(aliceOnServer.send(Buffer.from(', again'))).toBe(true);
    await alice.waitForText('just you, again');
    await delay(30);
    expect(bob.received).toBe(0);
  });

  it('refuses to send to a client that is leaving', async () => {
    const { mux, port } = await startMux();
    const [alice] = await connectAll(mux, port, 1);
    const aliceOnServer = serverSideOf(mux, alice);
    mux.disconnect(aliceOnServer);
    expect(mux.sendTo(aliceOnServer, 'too late')).toBe(false);
    expect(aliceOnServer.active).toBe(false);
    await alice.waitForClose();
    expect(alice.received).toBe(0);
  });

  it('lists the joined clients in the order they joined', async () => {
    const { mux, port } = await startMux();
    const [alice] = await connectAll(mux, port, 1);
    const [bob] = await connectAll(mux, port, 1);
    expect([...mux.clients].map((client) => client.port)).toEqual([alice.socket.localPort, bob.socket.localPort]);
  });
});

describe('stats', () => {
  it('counts connections, messages and bytes in and out, and departures by reason', async () => {
    const { mux, port } = await startMux({ framing: 'line' });
    const [alice, bob, carol] = await connectAll(mux, port, 3);
    expect(mux.stats()).toMatchObject({
      connections: 3,
      clients: 3,
      messagesIn: 0,
      bytesIn: 0,
      messagesOut: 0,
      bytesOut: 0,
    });
    await alice.write('hello\nworld\n');
    await bob.waitForText('world\n');
    await carol.waitForText('world\n');
    expect(mux.stats()).toMatchObject({ messagesIn: 2, bytesIn: 12, messagesOut: 4, bytesOut: 24, queuedBytes: 0 });
    alice.end();
    await waitFor(() => mux.stats().clients === 2, 'alice to leave');
    const stats = mux.stats();
    expect(stats.connections).toBe(2);
    expect(stats.disconnects.eof).toBe(1);
    expect(stats.disconnects.kicked).toBe(0);
  });

  it('returns a snapshot that later activity does not change', async () => {
    const { mux, port } = await startMux();
    const [alice, bob] = await connectAll(mux, port, 2);
    const before = mux.stats();
    await alice.write('x');
    await bob.waitForText('x');
    expect(before.messagesIn).toBe(0);
    before.disconnects.eof = 99;
    expect(mux.stats().disconnects.eof).toBe(0);
  });

  it('counts clients awaiting an access decision as connections but not as clients', async () => {
    const { mux, port } = await startMux({}, (m) => m.addAccessFilter(() => new Promise<boolean>(() => undefined)));
    const socket = net.connect({ port, host: '127.0.0.1' });
    onTeardown(() => {
      socket.destroy();
    });
    socket.on('error', () => undefined);
    await waitFor(() => mux.stats().connections === 1, 'the connection');
    expect(mux.stats().clients).toBe(0);
  });
});
