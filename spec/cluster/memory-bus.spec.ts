import { MemoryHub, Multiplexer, type Bus, type BusListener, type MultiplexerOptions } from '../../lib';
import { connectAll, delay, onTeardown, type TestClient, waitFor } from '../helpers/net';
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
    private readonly drop: (index: number) => boolean,
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
    return this.drop(index) ? Promise.resolve() : this.inner.publish(frame);
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
      bus: new LossyBus(hub.bus(), (index) => index === 1),
    });
    await sender.listen({ port: 0, host: '127.0.0.1' });
    onTeardown(() => sender.destroy({ timeout: 200 }));
    const [receiving] = await cluster(1, {}, hub, (mux) => mux.on('loss', (node, count) => losses.push([node, count])));
    const [listener] = await connectAll(receiving.mux, receiving.port, 1);
    // Three turns: one frame each; the second is lost on the way.
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
