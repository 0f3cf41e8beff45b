import { accessList, Multiplexer, type AccessDecision, type Client, type DenyReason, type ErrorContext } from '../lib';
import { connectAll, delay, startMux, TestClient, waitFor } from './helpers/net';
import { gate, joined, serve } from './helpers/serve';

/** Records the deny, connect and exit events of a multiplexer. */
function watch(mux: Multiplexer): {
  denies: DenyReason[];
  connects: Client[];
  exits: string[];
  errors: Array<[Error, ErrorContext]>;
} {
  const seen = {
    denies: [] as DenyReason[],
    connects: [] as Client[],
    exits: [] as string[],
    errors: [] as Array<[Error, ErrorContext]>,
  };
  mux.on('deny', (_client, reason) => seen.denies.push(reason));
  mux.on('connect', (client) => seen.connects.push(client));
  mux.on('exit', (_client, reason) => seen.exits.push(reason));
  mux.on('error', (error, context) => seen.errors.push([error, context]));
  return seen;
}

describe('addAccessFilter', () => {
  it('runs access filters in registration order, each with the new client', async () => {
    const calls: Array<[string, Client]> = [];
    const { mux, port } = await startMux({}, (m) => {
      m.addAccessFilter((client) => {
        calls.push(['first', client]);
      });
      m.addAccessFilter((client) => {
        calls.push(['second', client]);
        return true;
      });
    });
    const [alice] = await connectAll(mux, port, 1);
    const aliceOnServer = await joined(mux, alice);
    expect(calls.map(([name]) => name)).toEqual(['first', 'second']);
    expect(calls[0][1]).toBe(aliceOnServer);
    expect(aliceOnServer.address).toBe('127.0.0.1');
    expect(aliceOnServer.port).toBe(alice.socket.localPort);
  });

  it.each([
    ['-1', -1],
    ['"-1"', '-1'],
    ['false', false],
  ] as const)('denies on %s: closes the socket at once and emits deny with the reason', async (_name, decision) => {
    const later = jest.fn(() => true);
    const { mux, port } = await startMux({}, (m) => {
      m.addAccessFilter(() => decision);
      m.addAccessFilter(later);
    });
    const seen = watch(mux);
    const client = await TestClient.connect(port);
    await client.waitForClose();
    await waitFor(() => seen.denies.length === 1, 'the deny event');
    expect(seen.denies).toEqual(['access-filter']);
    expect(later).not.toHaveBeenCalled();
    expect(mux.stats().denials['access-filter']).toBe(1);
    expect(mux.clients.size).toBe(0);
    expect(seen.connects).toEqual([]);
  });

  it.each([
    ['true', true],
    ['1', 1],
    ['0', 0],
    ['undefined', undefined],
    ['a string', 'ok'],
  ] as const)('grants on %s', async (_name, decision) => {
    const { mux, port } = await startMux({}, (m) => m.addAccessFilter(() => decision));
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('in');
    await bob.waitForText('in');
  });

  it('does not run exit filters or the exit event for a denied client, which never joined', async () => {
    const exitFilter = jest.fn();
    const { mux, port } = await startMux({}, (m) => {
      m.addAccessFilter(() => -1);
      m.addExitFilter(exitFilter);
    });
    const seen = watch(mux);
    const client = await TestClient.connect(port);
    await client.waitForClose();
    await waitFor(() => mux.stats().connections === 0, 'the connection to be released');
    expect(exitFilter).not.toHaveBeenCalled();
    expect(seen.exits).toEqual([]);
  });

  it('never delivers what a denied client sent', async () => {
    const { mux, port } = await startMux({}, (m) =>
      m.addAccessFilter((client) => (client.id === 0 ? true : delay(30).then(() => -1))),
    );
    const seen = watch(mux);
    const [alice] = await connectAll(mux, port, 1);
    const mallory = await TestClient.connect(port);
    await mallory.write('spam').catch(() => undefined);
    await mallory.waitForClose();
    await waitFor(() => seen.denies.length === 1, 'the deny event');
    await delay(30);
    expect(alice.received).toBe(0);
  });

  describe('a filter that throws or rejects', () => {
    it.each([
      [
        'throws',
        (): AccessDecision => {
          throw new Error('lookup failed');
        },
      ],
      ['rejects', (): Promise<AccessDecision> => delay(5).then(() => Promise.reject(new Error('lookup failed')))],
    ])('denies when it %s (fail closed), with an error event and the access-error reason', async (_name, filter) => {
      const { mux, port } = await startMux({}, (m) => m.addAccessFilter(filter));
      const seen = watch(mux);
      const client = await TestClient.connect(port);
      await client.waitForClose();
      await waitFor(() => seen.denies.length === 1, 'the deny event');
      expect(seen.denies).toEqual(['access-error']);
      expect(seen.errors).toHaveLength(1);
      expect(seen.errors[0][0].message).toBe('lookup failed');
      expect(seen.errors[0][1].source).toBe('accessFilter');
      expect(mux.stats().denials['access-error']).toBe(1);
      expect(mux.stats().hookErrors).toBe(1);
      expect(mux.clients.size).toBe(0);
    });

    it('denies when a later filter in the chain throws after an async one granted', async () => {
      const { mux, port } = await startMux({}, (m) => {
        m.addAccessFilter(() => delay(5).then(() => true));
        m.addAccessFilter(() => {
          throw new Error('second failed');
        });
      });
      const seen = watch(mux);
      const client = await TestClient.connect(port);
      await client.waitForClose();
      await waitFor(() => seen.denies.length === 1, 'the deny event');
      expect(seen.denies).toEqual(['access-error']);
    });
  });

  describe('an async access filter', () => {
    it('admits the client once it resolves, and only then emits connect', async () => {
      const decision = gate<AccessDecision>();
      const { mux, port } = await startMux({}, (m) => m.addAccessFilter(() => decision.promise));
      const seen = watch(mux);
      await TestClient.connect(port);
      await waitFor(() => mux.stats().connections === 1, 'the connection');
      await delay(20);
      expect(mux.clients.size).toBe(0);
      expect(seen.connects).toEqual([]);
      decision.open(true);
      await waitFor(() => mux.clients.size === 1, 'the client to join');
      expect(seen.connects).toHaveLength(1);
    });

    it('delivers what the client sent before admission after it is admitted, in order, not lost', async () => {
      const decision = gate<AccessDecision>();
      const { mux, port } = await startMux({ framing: 'line' }, (m) =>
        m.addAccessFilter((client) => (client.id === 0 ? true : decision.promise)),
      );
      const [alice] = await connectAll(mux, port, 1);
      const bob = await TestClient.connect(port);
      await waitFor(() => mux.stats().connections === 2, 'the second connection');
      await bob.write('early 1\nearly 2\n');
      await waitFor(() => mux.stats().bytesIn >= 16, 'the early data to be read');
      await delay(20);
      expect(alice.received).toBe(0);
      decision.open(true);
      await alice.waitForText('early 2\n');
      await bob.write('later\n');
      await alice.waitForText('later\n');
      expect(alice.text).toBe('early 1\nearly 2\nlater\n');
    });

    it('loses nothing when the client sends more than maxPendingBytes before admission', async () => {
      const decision = gate<AccessDecision>();
      const { mux, port } = await startMux({ maxPendingBytes: 4096 }, (m) =>
        m.addAccessFilter((client) => (client.id === 0 ? true : decision.promise)),
      );
      const [alice] = await connectAll(mux, port, 1);
      const bob = await TestClient.connect(port);
      const payload = Buffer.alloc(256 * 1024);
      for (let i = 0; i < payload.length; i += 1) payload[i] = (i * 7) & 0xff;
      void bob.write(payload);
      await waitFor(() => mux.stats().bytesIn >= 4096, 'some early data to be read');
      await delay(50);
      decision.open(true);
      await alice.waitForBytes(payload.length, 10_000);
      expect(alice.data.equals(payload)).toBe(true);
    });

    it('sends the client nothing before admission: neither broadcasts nor sendToAll', async () => {
      const decision = gate<AccessDecision>();
      const { mux, port } = await startMux({}, (m) =>
        m.addAccessFilter((client) => (client.id === 0 ? true : decision.promise)),
      );
      const [alice] = await connectAll(mux, port, 1);
      const bob = await TestClient.connect(port);
      await waitFor(() => mux.stats().connections === 2, 'the second connection');
      await alice.write('before');
      mux.sendToAll('announcement');
      await waitFor(() => mux.stats().messagesIn === 1, 'the broadcast');
      await delay(50);
      expect(bob.received).toBe(0);
      decision.open(true);
      await waitFor(() => mux.clients.size === 2, 'bob to join');
      await alice.write('after');
      await bob.waitForText('after');
      expect(bob.text).toBe('after');
    });

    it('admits a client that sent its data and EOF before the decision, broadcasts the data, then lets it go', async () => {
      const decision = gate<AccessDecision>();
      const exitFilter = jest.fn();
      const { mux, port } = await startMux({}, (m) => {
        m.addAccessFilter((client) => (client.id === 0 ? true : decision.promise));
        m.addExitFilter(exitFilter);
      });
      const seen = watch(mux);
      const receiver = await TestClient.connect(port);
      await waitFor(() => mux.clients.size === 1, 'the receiver to join');
      const oneShot = await TestClient.connect(port);
      await waitFor(() => mux.stats().connections === 2, 'the connection');
      oneShot.socket.end('hello\n');
      await delay(50);
      expect(receiver.received).toBe(0);
      decision.open(true);
      await receiver.waitForText('hello\n');
      await oneShot.waitForClose();
      await waitFor(() => seen.exits.length === 1, 'its exit');
      expect(seen.exits).toEqual(['eof']);
      expect(exitFilter).toHaveBeenCalledTimes(1);
    });

    it('does not admit, nor run exit filters for, a client whose connection was reset before the decision', async () => {
      const decision = gate<AccessDecision>();
      const exitFilter = jest.fn();
      const { mux, port } = await startMux({}, (m) => {
        m.addAccessFilter(() => decision.promise);
        m.addExitFilter(exitFilter);
      });
      const seen = watch(mux);
      const client = await TestClient.connect(port);
      await waitFor(() => mux.stats().connections === 1, 'the connection');
      client.socket.resetAndDestroy();
      await waitFor(() => mux.stats().connections === 0, 'the connection to be released');
      decision.open(true);
      await delay(20);
      expect(mux.clients.size).toBe(0);
      expect(seen.connects).toEqual([]);
      expect(exitFilter).not.toHaveBeenCalled();
      expect(seen.exits).toEqual([]);
    });
  });
});

describe('accessFilter()', () => {
  it('can be overridden in a subclass that calls super.accessFilter', async () => {
    class OnlyFirst extends Multiplexer {
      override accessFilter(client: Client): AccessDecision | Promise<AccessDecision> {
        if (client.id > 0) return -1;
        return super.accessFilter(client);
      }
    }
    const mux = new OnlyFirst({ debugLevel: 'critical' });
    const registered = jest.fn(() => true);
    mux.addAccessFilter(registered);
    const seen = watch(mux);
    const port = await serve(mux);
    await connectAll(mux, port, 1);
    const second = await TestClient.connect(port);
    await second.waitForClose();
    await waitFor(() => seen.denies.length === 1, 'the deny event');
    expect(registered).toHaveBeenCalledTimes(1);
    expect(mux.clients.size).toBe(1);
  });
});

describe('accessList', () => {
  async function admitted(mux: Multiplexer, client: TestClient): Promise<boolean> {
    await waitFor(() => mux.stats().connections === 0 || mux.clients.size > 0 || client.closed, 'an access decision');
    await waitFor(
      () => client.closed || [...mux.clients].some((c) => c.port === client.socket.localPort),
      'an access decision',
    );
    return !client.closed;
  }

  async function tryFrom(options: Parameters<typeof accessList>[0], localAddress: string): Promise<boolean> {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    mux.addAccessFilter(accessList(options));
    const port = await serve(mux);
    const client = await TestClient.connect(port, { localAddress });
    return admitted(mux, client);
  }

  it('admits everyone when both lists are empty', async () => {
    await expect(tryFrom({}, '127.0.0.1')).resolves.toBe(true);
    await expect(tryFrom({ allow: [], deny: [] }, '127.0.0.1')).resolves.toBe(true);
  });

  it('admits an IPv4 address on the allow list and denies one that is not on it', async () => {
    await expect(tryFrom({ allow: ['127.0.0.1'] }, '127.0.0.1')).resolves.toBe(true);
    await expect(tryFrom({ allow: ['127.0.0.1'] }, '127.0.0.2')).resolves.toBe(false);
  });

  it('admits addresses inside an allowed CIDR range and denies those outside it', async () => {
    await expect(tryFrom({ allow: ['127.0.0.0/30'] }, '127.0.0.2')).resolves.toBe(true);
    await expect(tryFrom({ allow: ['127.0.0.0/30'] }, '127.0.0.5')).resolves.toBe(false);
    await expect(tryFrom({ allow: ['10.0.0.0/8'] }, '127.0.0.1')).resolves.toBe(false);
  });

  it('denies addresses on the deny list, single or CIDR', async () => {
    await expect(tryFrom({ deny: ['127.0.0.2'] }, '127.0.0.2')).resolves.toBe(false);
    await expect(tryFrom({ deny: ['127.0.0.2'] }, '127.0.0.1')).resolves.toBe(true);
    await expect(tryFrom({ deny: ['127.0.0.0/8'] }, '127.0.0.1')).resolves.toBe(false);
  });

  it('lets the deny list win over the allow list', async () => {
    await expect(tryFrom({ allow: ['127.0.0.0/8'], deny: ['127.0.0.3'] }, '127.0.0.3')).resolves.toBe(false);
    await expect(tryFrom({ allow: ['127.0.0.0/8'], deny: ['127.0.0.3'] }, '127.0.0.4')).resolves.toBe(true);
  });

  it("reports the denial through the deny event with reason 'access-filter'", async () => {
    const mux = new Multiplexer({ debugLevel: 'critical' });
    mux.addAccessFilter(accessList({ allow: ['10.0.0.0/8'] }));
    const seen = watch(mux);
    const port = await serve(mux);
    const client = await TestClient.connect(port);
    await client.waitForClose();
    await waitFor(() => seen.denies.length === 1, 'the deny event');
    expect(seen.denies).toEqual(['access-filter']);
  });

  describe('IPv6', () => {
    async function tryIPv6(options: Parameters<typeof accessList>[0]): Promise<boolean> {
      const mux = new Multiplexer({ debugLevel: 'critical' });
      mux.addAccessFilter(accessList(options));
      const port = await serve(mux, { host: '::1' });
      const client = await TestClient.connect(port, { host: '::1' });
      return admitted(mux, client);
    }

    it('reports a client of ::1 with the address ::1', async () => {
      const mux = new Multiplexer({ debugLevel: 'critical' });
      const port = await serve(mux, { host: '::1' });
      const client = await TestClient.connect(port, { host: '::1' });
      expect((await joined(mux, client)).address).toBe('::1');
    });

    it('admits an IPv6 address on the allow list, single or CIDR', async () => {
      await expect(tryIPv6({ allow: ['::1'] })).resolves.toBe(true);
      await expect(tryIPv6({ allow: ['::/64'] })).resolves.toBe(true);
      await expect(tryIPv6({ allow: ['fe80::/10'] })).resolves.toBe(false);
      await expect(tryIPv6({ allow: ['127.0.0.1'] })).resolves.toBe(false);
    });

    it('denies an IPv6 address on the deny list', async () => {
      await expect(tryIPv6({ deny: ['::1/128'] })).resolves.toBe(false);
      await expect(tryIPv6({ deny: ['127.0.0.0/8'] })).resolves.toBe(true);
    });

    it('matches an IPv4 client of a dual-stack listener against IPv4 entries', async () => {
      const mux = new Multiplexer({ debugLevel: 'critical' });
      mux.addAccessFilter(accessList({ allow: ['127.0.0.1'] }));
      const port = await serve(mux, { host: '::' });
      const client = await TestClient.connect(port, { host: '127.0.0.1' });
      const onServer = await joined(mux, client);
      expect(onServer.address).toBe('127.0.0.1');
    });
  });

  it.each(['not-an-ip', '10.0.0.0/33', '::1/129', '10.0.0.0/8/1', '10.0.0.0/', '10.0.0.0/x', '1.2.3', ''])(
    'throws a TypeError with code ERR_INVALID_OPTION for the entry %p',
    (entry) => {
      for (const options of [{ allow: [entry] }, { deny: [entry] }]) {
        let error: unknown;
        try {
          accessList(options);
        } catch (caught) {
          error = caught;
        }
        expect(error).toBeInstanceOf(TypeError);
        expect((error as { code?: string }).code).toBe('ERR_INVALID_OPTION');
        expect((error as Error).message).toContain(JSON.stringify(entry));
      }
    },
  );
});
