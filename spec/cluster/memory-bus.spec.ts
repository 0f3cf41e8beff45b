import { MemoryHub, Multiplexer, type Bus, type BusListener, type MultiplexerOptions } from '../../lib';
import { connectAll, delay, onTeardown, TestClient, waitFor } from '../helpers/net';
import { joined } from '../helpers/serve';

/** Starts `count` multiplexers joined by one in-memory hub, each on its own port. */
async function cluster(
  count: number,
  options: MultiplexerOptions = {},
  hub = new MemoryHub(),
  setup?: (mux: Multiplexer, index: number) => void,
): Promise<Array<{ mux: Multiplexer; port: number }>> {
  const nodes: Array<{ mux: Multiplexer; port: number }> = [];
  for (let i = 0; i < count; i += 1) {
    const mux = new Multiplexer({ debugLevel: 'critical', framing: 'line', node: `n${i}`, bus: hub.bus(), ...options });
    setup?.(mux, i);
    const { port } = await mux.listen({ port: 0, host: '127.0.0.1' });
    onTeardown(() => mux.destroy({ timeout: 200 }));
    nodes.push({ mux, port });
  }
  return nodes;
}

/** Lines received by a client, in order. */
function lines(client: TestClient): string[] {
  return client.text.split('\n').filter((line) => line !== '');
}

describe('three multiplexers joined by the in-memory bus', () => {
  it('gives every member of every node each message once', async () => {
    const nodes = await cluster(3);
    const clients = await Promise.all(nodes.map(({ mux, port }) => connectAll(mux, port, 2)));
    const [sender] = clients[0];
    await sender.write('hello cluster\n');
    for (const client of clients.flat()) {
      if (client === sender) continue;
      await client.waitForText('hello cluster\n');
    }
    await delay(50);
    for (const client of clients.flat()) if (client !== sender) expect(lines(client)).toEqual(['hello cluster']);
    expect(lines(sender)).toEqual([]); // sendToOrigin is off on its node
    for (const { mux } of nodes) expect(mux.stats().bus?.lost).toBe(0);
  });

  it("keeps each origin's order at every receiver, with senders on every node at once", async () => {
    const nodes = await cluster(3);
    const senders = await Promise.all(nodes.map(({ mux, port }) => connectAll(mux, port, 1)));
    const receivers = await Promise.all(nodes.map(({ mux, port }) => connectAll(mux, port, 1)));
    const count = 500;
    await Promise.all(
      senders.map(([client], node) => {
        let text = '';
        for (let i = 0; i < count; i += 1) text += `s${node} ${i}\n`;
        return client.write(text);
      }),
    );
    for (const [receiver] of receivers) {
      await waitFor(() => lines(receiver).length >= 3 * count, 'every line', 10_000);
      const got = lines(receiver);
      expect(got).toHaveLength(3 * count);
      for (let node = 0; node < 3; node += 1) {
        const mine = got.filter((line) => line.startsWith(`s${node} `));
        expect(mine).toEqual(Array.from({ length: count }, (_, i) => `s${node} ${i}`));
      }
    }
  });

  it('decides sendToOrigin on the origin node', async () => {
    const hub = new MemoryHub();
    const [plain] = await cluster(1, {}, hub);
    const [echoing] = await cluster(1, { sendToOrigin: true, node: 'echo' }, hub);
    const [alice] = await connectAll(plain.mux, plain.port, 1);
    const [bob] = await connectAll(echoing.mux, echoing.port, 1);
    await alice.write('from alice\n');
    await bob.write('from bob\n');
    await bob.waitForText('from alice\n');
    await bob.waitForText('from bob\n'); // its own node echoes it
    await alice.waitForText('from bob\n');
    await delay(50);
    expect(lines(alice)).toEqual(['from bob']); // its own node does not
  });

  it('carries rooms in the envelope: only members of the room on any node get it', async () => {
    const nodes = await cluster(2);
    const [a1, a2] = await connectAll(nodes[0].mux, nodes[0].port, 2);
    const [b1, b2] = await connectAll(nodes[1].mux, nodes[1].port, 2);
    (await joined(nodes[0].mux, a1)).join('blue');
    (await joined(nodes[1].mux, b1)).join('blue');
    (await joined(nodes[1].mux, b2)).join('green');
    nodes[0].mux.sendToRoom('blue', 'to blue\n');
    nodes[1].mux.sendToRoom(['green', 'blue'], 'to green or blue\n');
    // Two origins: each node delivers its own first, and there is no total order across origins.
    await waitFor(() => lines(a1).length === 2 && lines(b1).length === 2, 'both messages in blue');
    await b2.waitForText('to green or blue\n');
    await delay(50);
    expect(lines(a1).sort()).toEqual(['to blue', 'to green or blue']);
    expect(lines(b1).sort()).toEqual(['to blue', 'to green or blue']);
    expect(lines(a2)).toEqual([]);
    expect(lines(b2)).toEqual(['to green or blue']);
  });

  it("runs the forward filter on each receiver's node, with the remote sender", async () => {
    const senders: string[] = [];
    const nodes = await cluster(2, {}, new MemoryHub(), (mux, index) => {
      if (index !== 1) return;
      mux.addForwardFilter((message, receiver, sender) => {
        senders.push(`${sender?.node}:${sender?.id}`);
        return receiver.state.muted === true ? null : `[${sender?.node}] ${message.toString()}`;
      });
    });
    const [alice] = await connectAll(nodes[0].mux, nodes[0].port, 1);
    const [bob, carol] = await connectAll(nodes[1].mux, nodes[1].port, 2);
    (await joined(nodes[1].mux, carol)).state.muted = true;
    await alice.write('hi\n');
    await bob.waitForText('[n0] hi\n');
    await delay(50);
    expect(lines(carol)).toEqual([]);
    const aliceId = [...nodes[0].mux.clients][0].id;
    expect(senders).toEqual([`n0:${aliceId}`, `n0:${aliceId}`]);
  });

  it('keeps sendToAll with { local: true } on its node', async () => {
    const nodes = await cluster(2);
    const [here] = await connectAll(nodes[0].mux, nodes[0].port, 1);
    const [there] = await connectAll(nodes[1].mux, nodes[1].port, 1);
    nodes[0].mux.sendToAll('local only\n', { local: true });
    nodes[0].mux.sendToAll('everywhere\n');
    await here.waitForText('local only\neverywhere\n');
    await there.waitForText('everywhere\n');
    await delay(50);
    expect(lines(there)).toEqual(['everywhere']);
  });
});

/** A bus in front of another that drops the frames `drop` picks. */
class LossyBus implements Bus {
  readonly kind = 'lossy';
  private count = 0;

  constructor(
    private readonly inner: Bus,
    private readonly drop: (frame: Buffer, index: number) => boolean,
  ) {}

  get channel(): string {
    return this.inner.channel;
  }

  get maxFrameBytes(): number {
    return this.inner.maxFrameBytes;
  }

  open(listener: BusListener): Promise<void> {
    return this.inner.open(listener);
  }

  publish(frame: Buffer): Promise<void> {
    const index = this.count;
    this.count += 1;
    return this.drop(frame, index) ? Promise.resolve() : this.inner.publish(frame);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('loss across the bus', () => {
  it('is detected and reported with the exact count, and delivery goes on in order', async () => {
    const hub = new MemoryHub();
    const losses: Array<[string, number]> = [];
    const sender = new Multiplexer({
      debugLevel: 'critical',
      framing: 'line',
      node: 'lossy',
      bus: new LossyBus(hub.bus(), (frame) => frame.includes('two\n')),
    });
    await sender.listen({ port: 0, host: '127.0.0.1' });
    onTeardown(() => sender.destroy({ timeout: 200 }));
    const [receiving] = await cluster(1, {}, hub, (mux) => mux.on('loss', (node, count) => losses.push([node, count])));
    const [listener] = await connectAll(receiving.mux, receiving.port, 1);
    // Three turns: one frame each; the second (two messages) is lost on the way.
    sender.sendToAll('one\n');
    await delay(20);
    sender.sendToAll('two\n');
    sender.sendToAll('three\n');
    await delay(20);
    sender.sendToAll('four\n');
    await listener.waitForText('four\n');
    expect(lines(listener)).toEqual(['one', 'four']);
    expect(losses).toEqual([['lossy', 2]]);
    expect(receiving.mux.stats().bus?.lost).toBe(2);
  });
});

describe('presence across the in-memory bus', () => {
  it('tells every node who joins and leaves, with the published state fields, in order with messages', async () => {
    const changes: string[] = [];
    const [a, b] = await cluster(2, { presence: ['nick'] }, new MemoryHub(), (mux, index) => {
      if (index === 1)
        mux.on('presence', (change, member) => changes.push(`${change} ${member.node} ${String(member.state.nick)}`));
      if (index === 0) {
        mux.addFilter((line, client) => {
          if (client.state.nick !== undefined) return undefined;
          client.state.nick = line.toString();
          mux.publishState(client);
          return null;
        });
      }
    });
    const alice = await TestClient.connect(a.port);
    await waitFor(() => b.mux.members().length === 1, 'alice to be known on node 1');
    await alice.write('alice\nhello from alice\n');
    const [bob] = await connectAll(b.mux, b.port, 1);
    await bob.waitForText('hello from alice\n');
    expect(b.mux.members().map((member) => [member.node, member.state.nick])).toEqual([
      ['n1', undefined],
      ['n0', 'alice'],
    ]);
    alice.end();
    await waitFor(() => b.mux.members().length === 1, 'alice to be gone from node 1');
    expect(changes).toEqual(['join n0 undefined', 'update n0 alice', 'leave n0 alice']);
  });

  it('gives a node that joins later the members already there (a snapshot)', async () => {
    const hub = new MemoryHub();
    const [a] = await cluster(1, {}, hub);
    await connectAll(a.mux, a.port, 3);
    const [late] = await cluster(1, { node: 'late' }, hub);
    await waitFor(() => late.mux.members().length === 3, 'the early members to be known');
    expect(late.mux.nodes().map((node) => [node.node, node.up])).toEqual([
      ['late', true],
      ['n0', true],
    ]);
  });

  it('declares a node down after nodeTimeout without a word from it, and forgets its members', async () => {
    const hub = new MemoryHub();
    const events: string[] = [];
    const [a, b] = await cluster(2, { heartbeatInterval: 50, nodeTimeout: 300 }, hub, (mux, index) => {
      if (index === 1) {
        mux.on('node', (state, node) => events.push(`${state} ${node}`));
        mux.on('presence', (change, member) => events.push(`${change} ${member.node}:${member.id}`));
      }
    });
    await connectAll(a.mux, a.port, 1);
    await waitFor(() => b.mux.members().length === 1, 'the member of node 0');
    const id = [...a.mux.clients][0].id;
    // Node 0 goes silent without saying goodbye: its bus is gone, its clients stay connected to it.
    await (a.mux as unknown as { link: { bus: Bus } }).link.bus.close();
    await waitFor(() => events.includes('down n0'), 'node 0 to be down', 3000);
    expect(b.mux.members()).toEqual([]);
    expect(events).toEqual(['up n0', `join n0:${id}`, 'down n0', `leave n0:${id}`]);
  });
});

/** A bus in front of another whose broker confirms publishes only when the test says so. */
class SlowBus implements Bus {
  readonly kind = 'slow';
  private waiting: Array<() => void> = [];
  confirmations = true;

  constructor(private readonly inner: Bus) {}

  get channel(): string {
    return this.inner.channel;
  }

  get maxFrameBytes(): number {
    return this.inner.maxFrameBytes;
  }

  open(listener: BusListener): Promise<void> {
    return this.inner.open(listener);
  }

  publish(frame: Buffer): Promise<void> {
    return this.inner.publish(frame).then(() => {
      if (this.confirmations) return;
      return new Promise<void>((resolve) => this.waiting.push(resolve));
    });
  }

  /** Confirms everything held back, and all later publishes at once. */
  flow(): void {
    this.confirmations = true;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  close(): Promise<void> {
    this.flow();
    return this.inner.close();
  }
}

describe('a slow bus', () => {
  async function slowNode(busOverflow: 'shed' | 'wait') {
    const hub = new MemoryHub();
    const bus = new SlowBus(hub.bus());
    const mux = new Multiplexer({
      debugLevel: 'critical',
      node: 'slow',
      bus,
      busOverflow,
      highWaterMark: 64 * 1024,
      outboxBytes: 1024 * 1024,
      stallTimeout: 200,
    });
    const { port } = await mux.listen({ port: 0, host: '127.0.0.1' });
    onTeardown(() => mux.destroy({ timeout: 200 }));
    const [sender, receiver] = await connectAll(mux, port, 2);
    bus.confirmations = false;
    return { mux, bus, sender, receiver };
  }

  it('holds local senders back while its outbox is above the mark, then sheds its oldest frames (shed)', async () => {
    const { mux, bus, sender, receiver } = await slowNode('shed');
    const chunk = Buffer.alloc(16 * 1024, 'x');
    for (let i = 0; i < 200; i += 1) sender.socket.write(chunk);
    await delay(100);
    const early = receiver.received;
    expect(mux.stats().pausedClients).toBe(1); // the sender waits for the bus
    await waitFor(() => receiver.received >= 200 * chunk.length, 'everything, once the bus is past its budget', 10_000);
    expect(early).toBeLessThan(200 * chunk.length);
    expect(mux.stats().bus?.shedFrames).toBeGreaterThan(0);
    expect(mux.stats().bus?.outboxBytes).toBeLessThanOrEqual(1024 * 1024 + 64 * 1024);
    bus.flow();
  });

  it('keeps local senders waiting until the bus takes its frames (wait)', async () => {
    const { mux, bus, sender, receiver } = await slowNode('wait');
    const chunk = Buffer.alloc(16 * 1024, 'y');
    for (let i = 0; i < 200; i += 1) sender.socket.write(chunk);
    await delay(600);
    expect(receiver.received).toBeLessThan(200 * chunk.length);
    expect(mux.stats().pausedClients).toBe(1);
    bus.flow();
    await receiver.waitForBytes(200 * chunk.length, 10_000);
    expect(mux.stats().bus?.shedFrames).toBe(0);
  });
});
