import type { AddressInfo } from 'node:net';
import { Multiplexer, type Client, type DenyReason, type ErrorContext, type ExitReason, type LimitKind } from '../lib';
import { connectAll, delay, onTeardown, startMux, TestClient, waitFor } from './helpers/net';
import { joined, serve } from './helpers/serve';

describe('events', () => {
  it("emits 'listening' with the bound address", async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    const seen: Array<AddressInfo | string> = [];
    mux.on('listening', (address) => seen.push(address));
    const port = await serve(mux);
    expect(seen).toEqual([{ address: '127.0.0.1', family: 'IPv4', port }]);
  });

  it("emits 'connect' with the client once it joined", async () => {
    const connected: Array<[Client, boolean]> = [];
    const { mux, port } = await startMux({}, (m) =>
      m.on('connect', (client) => connected.push([client, m.clients.has(client)])),
    );
    const [alice] = await connectAll(mux, port, 1);
    const aliceOnServer = await joined(mux, alice);
    await waitFor(() => connected.length === 1, 'the connect event');
    expect(connected).toEqual([[aliceOnServer, true]]);
  });

  it("emits 'data' with the filtered message and its sender", async () => {
    const seen: Array<[string, Client]> = [];
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter((line) => line.toString().toUpperCase());
      m.on('data', (message, client) => seen.push([message.toString(), client]));
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = await joined(mux, alice);
    await alice.write('quiet\n');
    await bob.waitForText('QUIET\n');
    expect(seen).toEqual([['QUIET\n', aliceOnServer]]);
  });

  it("does not emit 'data' for a message a filter dropped", async () => {
    const seen: string[] = [];
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter((line) => (line.toString() === 'drop' ? null : undefined));
      m.on('data', (message) => seen.push(message.toString()));
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('drop\nkeep\n');
    await bob.waitForText('keep\n');
    expect(seen).toEqual(['keep\n']);
  });

  it("emits 'exit' with the client and the reason", async () => {
    const exits: Array<[Client, ExitReason]> = [];
    const { mux, port } = await startMux({}, (m) => m.on('exit', (client, reason) => exits.push([client, reason])));
    const [alice] = await connectAll(mux, port, 1);
    const aliceOnServer = await joined(mux, alice);
    alice.end();
    await waitFor(() => exits.length === 1, 'the exit event');
    expect(exits).toEqual([[aliceOnServer, 'eof']]);
  });

  it("emits 'deny' with the refused client and the reason", async () => {
    const denies: Array<[number, DenyReason]> = [];
    const { port } = await startMux({}, (m) => {
      m.addAccessFilter(() => false);
      m.on('deny', (client, reason) => denies.push([client.port, reason]));
    });
    const client = await TestClient.connect(port);
    await waitFor(() => denies.length === 1, 'the deny event');
    expect(denies).toEqual([[client.socket.localPort, 'access-filter']]);
  });

  it("emits 'limit' when a limit acts on a client that stays connected", async () => {
    const limits: Array<[Client, LimitKind]> = [];
    const { mux, port } = await startMux({ framing: 'line', maxMessageBytes: 8, lineOverflow: 'discard' }, (m) =>
      m.on('limit', (client, kind) => limits.push([client, kind])),
    );
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = await joined(mux, alice);
    await alice.write('far too long for the limit\nok\n');
    await bob.waitForText('ok\n');
    expect(limits).toEqual([[aliceOnServer, 'line-too-long']]);
    expect(bob.text).toBe('ok\n');
    expect(mux.clients.has(aliceOnServer)).toBe(true);
  });

  it("emits 'error' with the error and where it came from", async () => {
    const errors: Array<[Error, ErrorContext]> = [];
    const { mux, port } = await startMux({}, (m) => {
      m.addFilter(() => {
        throw new RangeError('filter broke');
      });
      m.on('error', (error, context) => errors.push([error, context]));
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    const aliceOnServer = await joined(mux, alice);
    await alice.write('x');
    await bob.waitForText('x');
    expect(errors).toHaveLength(1);
    expect(errors[0][0]).toBeInstanceOf(RangeError);
    expect(errors[0][1]).toEqual({ source: 'filter', client: aliceOnServer });
  });

  it("emits 'close' once, when destroy() finished", async () => {
    const { mux, port } = await startMux();
    const clients = await connectAll(mux, port, 2);
    let closes = 0;
    let clientsClosedFirst = false;
    mux.on('close', () => {
      closes += 1;
      clientsClosedFirst = mux.stats().connections === 0;
    });
    await Promise.all([mux.destroy(), mux.destroy()]);
    expect(closes).toBe(1);
    expect(clientsClosedFirst).toBe(true);
    await Promise.all(clients.map((client) => client.waitForClose()));
  });

  it('types listener arguments by event name', () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    // Compile-time checks: ts-jest fails this file if the event map stops typing these.
    const typed = (): void => {
      mux.on('exit', (client: Client, reason: ExitReason, error?: Error) => [client.id, reason, error?.message]);
      mux.on('deny', (_client, reason) => {
        const known: DenyReason = reason;
        return known;
      });
      // @ts-expect-error 'nonsense' is not an event of a Multiplexer
      mux.on('nonsense', () => undefined);
      // @ts-expect-error 'data' listeners get a Buffer, not a number
      mux.on('data', (message: number) => message);
    };
    expect(typeof typed).toBe('function');
    expect(mux.listenerCount('exit')).toBe(0);
  });
});

describe('event listeners', () => {
  it.each([
    [
      'throws',
      (): void => {
        throw new Error('listener broke');
      },
    ],
    ['returns a rejected promise', (): Promise<void> => Promise.reject(new Error('listener broke'))],
  ])("that %s do not crash the server or stop delivery, and are reported through 'error'", async (_name, listener) => {
    const errors: Array<[string, ErrorContext['source']]> = [];
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.on('connect', listener);
      m.on('data', listener);
      m.on('error', (error, context) => errors.push([error.message, context.source]));
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('one\n');
    await bob.write('two\n');
    await bob.waitForText('one\n');
    await alice.waitForText('two\n');
    await waitFor(() => errors.length === 4, 'four reported errors');
    expect(errors).toEqual(Array.from({ length: 4 }, () => ['listener broke', 'listener']));
    expect(mux.stats().hookErrors).toBe(4);
    expect(mux.clients.size).toBe(2);
  });

  it('still calls the other listeners of the event when one throws', async () => {
    const calls: string[] = [];
    const { mux, port } = await startMux({}, (m) => {
      m.on('data', () => {
        throw new Error('first broke');
      });
      m.on('data', (message) => {
        calls.push(message.toString());
      });
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('msg');
    await bob.waitForText('msg');
    expect(calls).toEqual(['msg']);
  });

  it("contains an 'error' listener that throws, without looping", async () => {
    let errorCalls = 0;
    const { mux, port } = await startMux({}, (m) => {
      m.addFilter(() => {
        throw new Error('filter broke');
      });
      m.on('error', () => {
        errorCalls += 1;
        throw new Error('error listener broke');
      });
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('a');
    await bob.waitForText('a');
    await alice.write('b');
    await bob.waitForText('ab');
    await delay(20);
    expect(errorCalls).toBe(2);
    expect(mux.stats().hookErrors).toBe(2);
  });

  it("reports a throwing 'exit' listener and still closes cleanly", async () => {
    const errors: string[] = [];
    const { mux, port } = await startMux({}, (m) => {
      m.on('exit', () => {
        throw new Error('exit listener broke');
      });
      m.on('error', (error) => errors.push(error.message));
    });
    const [alice] = await connectAll(mux, port, 1);
    alice.end();
    await waitFor(() => errors.length === 1, 'the reported error');
    await waitFor(() => mux.stats().connections === 0, 'the client to be released');
    expect(errors).toEqual(['exit listener broke']);
  });

  it('are removed with off()', async () => {
    const listener = jest.fn();
    const { mux, port } = await startMux({}, (m) => {
      m.on('data', listener);
      m.off('data', listener);
    });
    expect(mux.listenerCount('data')).toBe(0);
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('unheard');
    await bob.waitForText('unheard');
    expect(listener).not.toHaveBeenCalled();
  });

  it('are removed with removeListener(), only for the event named', async () => {
    const listener = jest.fn();
    const { mux, port } = await startMux({}, (m) => {
      m.on('data', listener);
      m.on('connect', listener);
      m.removeListener('data', listener);
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('x');
    await bob.waitForText('x');
    expect(listener).toHaveBeenCalledTimes(2);
    expect(listener.mock.calls.every(([client]) => (client as Client).id >= 0)).toBe(true);
  });

  it('added with once() fire once and can be removed with off() before they fire', async () => {
    const once = jest.fn();
    const removed = jest.fn();
    const { mux, port } = await startMux({}, (m) => {
      m.once('data', once);
      m.once('data', removed);
      m.off('data', removed);
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('1');
    await bob.waitForText('1');
    await alice.write('2');
    await bob.waitForText('12');
    expect(once).toHaveBeenCalledTimes(1);
    expect(removed).not.toHaveBeenCalled();
  });

  it('are called with the context given to on()', async () => {
    const context = { seen: [] as string[] };
    function record(this: typeof context, message: Buffer): void {
      this.seen.push(message.toString());
    }
    const mux = new Multiplexer({ debugLevel: 'critical' });
    mux.on('data', record, context);
    const port = await serve(mux);
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('ctx');
    await bob.waitForText('ctx');
    expect(context.seen).toEqual(['ctx']);
  });

  it('are all removed by destroy()', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    mux.on('data', () => undefined);
    mux.on('connect', () => undefined);
    onTeardown(() => mux.destroy());
    await serve(mux);
    await mux.destroy();
    expect(mux.eventNames()).toEqual([]);
  });
});
