/**
 * The CLI end to end over real private nats-servers: two or three `multiplexer --bus nats://...` processes,
 * TCP clients on each, and faults of the broker (SIGKILL and restart, a server of a cluster lost) and of a
 * node (SIGKILL and restart under the same --node-id). Every figure is exact: what a remote receiver misses
 * is what its node logged as lost, and nothing is ever delivered twice or out of its origin's order.
 */
import { NatsCluster, NatsServer } from '../helpers/brokers';
import {
  account,
  channelName,
  expectExactStreams,
  linesOf,
  meet,
  natsConnections,
  sendNumbered,
  settleStreams,
  startNode,
  waitMeshed,
  type CliNode,
  type Receiver,
  type Sender,
} from '../helpers/cluster-nats';
import { delay, onTeardown, waitFor } from '../helpers/net';

jest.setTimeout(60_000);

/** Quick liveness: heartbeats every 250 ms, a node is down after 3 s without news. */
const LIVENESS = ['--heartbeat-interval', '250', '--node-timeout', '3000'];
/** The brief's bound on how soon after the broker is back the subscription is live again. */
const LIVE_AGAIN_MS = 2000;

async function privateNats(): Promise<NatsServer> {
  const server = await NatsServer.start();
  onTeardown(() => server.kill('SIGKILL'));
  return server;
}

describe('the CLI joined over a private nats-server', () => {
  it('gives a line to every client of every node once, and not to its sender', async () => {
    const server = await privateNats();
    const channel = channelName('cli-nats');
    const nodes = [];
    for (const id of ['a', 'b', 'c']) nodes.push(await startNode(id, server.url, channel, LIVENESS));
    await waitMeshed(nodes);
    const clients = await Promise.all(nodes.map((node) => node.connect(2)));
    await meet(clients.flat());
    const [sender] = clients[0];
    await sender.write('hello cluster\n');
    for (const client of clients.flat()) if (client !== sender) await client.waitForText('hello cluster\n', 10_000);
    await delay(500);
    for (const client of clients.flat()) {
      expect(linesOf(client)).toEqual(client === sender ? [] : ['hello cluster']);
    }
    for (const node of nodes) expect(node.lostLines()).toEqual([]);
  });

  it("keeps each origin's order with two senders on every node at once: none missing, none twice", async () => {
    const server = await privateNats();
    const channel = channelName('cli-nats');
    const nodes = [];
    for (const id of ['a', 'b', 'c']) nodes.push(await startNode(id, server.url, channel, LIVENESS));
    await waitMeshed(nodes);
    const senders: Sender[] = [];
    const receivers: Receiver[] = [];
    for (const node of nodes) {
      const [one, two, receiver] = await node.connect(3);
      senders.push({ node, client: one, tag: `${node.id}1` }, { node, client: two, tag: `${node.id}2` });
      receivers.push({ node, client: receiver });
    }
    await meet([...senders, ...receivers].map(({ client }) => client));
    const count = 1000;
    await Promise.all(senders.map(({ client, tag }) => sendNumbered(client, tag, count, 50, 5)));
    const everyone = [...receivers, ...senders.map(({ node, client }) => ({ node, client }))];
    await settleStreams(everyone, senders, count);
    for (const { client } of everyone) {
      const lines = linesOf(client);
      for (const sender of senders) {
        const expected = sender.client === client ? 0 : count;
        expect({ tag: sender.tag, ...account(lines, sender.tag, count) }).toEqual({
          tag: sender.tag,
          received: expected,
          missing: count - expected,
          duplicates: 0,
          reordered: 0,
          foreign: 0,
        });
      }
      expect(lines).toHaveLength((senders.length - (senders.some((s) => s.client === client) ? 1 : 0)) * count);
    }
    for (const node of nodes) expect(node.lostLines()).toEqual([]);
  });

  it('survives a SIGKILL of nats-server mid-stream: local delivery whole, remote losses exactly as reported', async () => {
    const server = await privateNats();
    const channel = channelName('cli-nats');
    const nodes = [
      await startNode('a', server.url, channel, LIVENESS),
      await startNode('b', server.url, channel, LIVENESS),
    ];
    await waitMeshed(nodes);
    const senders: Sender[] = [];
    const receivers: Receiver[] = [];
    for (const node of nodes) {
      const [one, two, receiver] = await node.connect(3);
      senders.push({ node, client: one, tag: `${node.id}1` }, { node, client: two, tag: `${node.id}2` });
      receivers.push({ node, client: receiver });
    }
    await meet([...senders, ...receivers].map(({ client }) => client));
    const count = 2000;
    // 10 lines every 10 ms per sender: about 2.5 s of stream, with the server gone for 0.7 s in the middle.
    const streams = Promise.all(senders.map(({ client, tag }) => sendNumbered(client, tag, count, 10, 10)));
    await delay(600);
    const marks = nodes.map((node) => node.log.length);
    await server.kill('SIGKILL');
    await Promise.all(nodes.map((node, i) => node.waitLog(/nats bus down/, 'bus down', 10_000, marks[i])));
    // Local delivery does not wait for the bus: the receivers of each node keep getting its senders' lines.
    const during = receivers.map(({ client }) => linesOf(client).length);
    await delay(700);
    receivers.forEach(({ client }, i) => expect(linesOf(client).length).toBeGreaterThan(during[i]));
    const back = Date.now();
    await server.start();
    const ups = await Promise.all(nodes.map((node, i) => node.waitLog(/nats bus up/, 'bus up', 15_000, marks[i])));
    const liveAfter = ups.map((line) => line.at - back);
    await streams;
    const everyone = [...receivers, ...senders.map(({ node, client }) => ({ node, client }))];
    await settleStreams(everyone, senders, count);
    const figures = expectExactStreams(everyone, senders, nodes, count);
    // After the restart the bus carries again: a last line each way gets through.
    await senders[0].client.write('after a\n');
    await senders[2].client.write('after b\n');
    await receivers[1].client.waitForText('after a\n', 10_000);
    await receivers[0].client.waitForText('after b\n', 10_000);
    console.log(`nats SIGKILL: lost ${JSON.stringify(figures)}, bus up ${liveAfter.join(', ')} ms after the restart`);
    for (const ms of liveAfter) expect(ms).toBeLessThan(LIVE_AGAIN_MS);
  });

  it('fails over to the other server of a NATS cluster: losses reported exactly, delivery resumes', async () => {
    const cluster = await NatsCluster.start(2);
    onTeardown(() => cluster.stop());
    const channel = channelName('cli-nats');
    const bus = `nats://${cluster.urls.map((url) => url.replace('nats://', '')).join(',')}`;
    const a = await startNode('a', bus, channel, LIVENESS);
    let counts: number[] = [];
    const connections = async (): Promise<number[]> => Promise.all(cluster.nodes.map((node) => natsConnections(node)));
    const until = async (total: number): Promise<number[]> => {
      const start = Date.now();
      for (;;) {
        counts = await connections();
        if (counts.reduce((sum, each) => sum + Math.max(0, each), 0) === total) return counts;
        if (Date.now() - start > 10_000) throw new Error(`expected ${total} NATS connections, have ${counts}`);
        await delay(50);
      }
    };
    const home = (await until(1)).indexOf(1); // the server a picked (the client shuffles its list)
    // b must be on the other server: start it until its client picks that one.
    let b: CliNode | null = null;
    for (let attempt = 0; attempt < 12 && b === null; attempt += 1) {
      const candidate = await startNode('b', bus, channel, LIVENESS);
      const now = await until(2);
      if (now[home] === 1) {
        b = candidate;
      } else {
        candidate.cli.child.kill('SIGKILL');
        await candidate.cli.exited;
        await until(1);
      }
    }
    if (b === null) throw new Error('b never connected to the other server');
    const nodes = [a, b];
    await waitMeshed(nodes);
    const senders: Sender[] = [];
    const receivers: Receiver[] = [];
    for (const node of nodes) {
      const [one, two, receiver] = await node.connect(3);
      senders.push({ node, client: one, tag: `${node.id}1` }, { node, client: two, tag: `${node.id}2` });
      receivers.push({ node, client: receiver });
    }
    await meet([...senders, ...receivers].map(({ client }) => client));
    const count = 2000;
    const streams = Promise.all(senders.map(({ client, tag }) => sendNumbered(client, tag, count, 10, 10)));
    await delay(600);
    const marks = nodes.map((node) => node.log.length);
    const killed = Date.now();
    await cluster.nodes[home].kill('SIGKILL');
    await a.waitLog(/nats bus down/, 'a to lose its server', 10_000, marks[0]);
    const up = await a.waitLog(/nats bus up/, 'a up on the other server', 15_000, marks[0]);
    await streams;
    const everyone = [...receivers, ...senders.map(({ node, client }) => ({ node, client }))];
    await settleStreams(everyone, senders, count);
    // b's server stayed: b never saw the bus down.
    expect(b.lines(/nats bus down/).filter((line) => b.log.indexOf(line) >= marks[1])).toEqual([]);
    const figures = expectExactStreams(everyone, senders, nodes, count);
    await senders[0].client.write('after a\n');
    await senders[2].client.write('after b\n');
    await receivers[1].client.waitForText('after a\n', 10_000);
    await receivers[0].client.waitForText('after b\n', 10_000);
    console.log(`nats failover: lost ${JSON.stringify(figures)}, a up ${up.at - killed} ms after its server died`);
  });

  it('sees a crashed node down after --node-timeout and back under the same id, with no false loss', async () => {
    const server = await privateNats();
    const channel = channelName('cli-nats');
    const timeout = ['--heartbeat-interval', '250', '--node-timeout', '1500'];
    const a = await startNode('a', server.url, channel, timeout);
    const b = await startNode('b', server.url, channel, timeout);
    await waitMeshed([a, b]);
    const [onA] = await a.connect(1);
    const [onB] = await b.connect(1);
    await meet([onA, onB]);
    // b's numbering is well past 0 before it dies: its next incarnation starts again at 0.
    await sendNumbered(onB, 'old', 200, 50, 0);
    await waitFor(() => account(linesOf(onA), 'old', 200).received === 200, 'the old stream', 10_000);
    const mark = a.log.length;
    const crashed = Date.now();
    b.cli.child.kill('SIGKILL');
    await b.cli.exited;
    const down = await a.waitLog(/node b down: not heard for 1500 ms/, 'b down', 10_000, mark);
    const downAfter = down.at - crashed;
    expect(downAfter).toBeGreaterThanOrEqual(1500 - 250 - 50);
    expect(downAfter).toBeLessThan(1500 + 3000);
    const mark2 = a.log.length;
    const again = await startNode('b', server.url, channel, timeout);
    await a.waitLog(/node b up$/, 'b back', 10_000, mark2);
    await again.waitLog(/node a up$/, 'a heard by the new b', 10_000);
    const [onB2] = await again.connect(1);
    await meet([onA, onB2]);
    await sendNumbered(onB2, 'new', 200, 50, 0);
    await sendNumbered(onA, 'from-a', 200, 50, 0);
    await waitFor(() => account(linesOf(onA), 'new', 200).received === 200, 'the new stream at a', 10_000);
    await waitFor(() => account(linesOf(onB2), 'from-a', 200).received === 200, "a's stream at the new b", 10_000);
    await delay(1000);
    expect(account(linesOf(onA), 'new', 200)).toEqual({
      received: 200,
      missing: 0,
      duplicates: 0,
      reordered: 0,
      foreign: 0,
    });
    expect(account(linesOf(onB2), 'from-a', 200)).toEqual({
      received: 200,
      missing: 0,
      duplicates: 0,
      reordered: 0,
      foreign: 0,
    });
    expect(a.lostLines()).toEqual([]);
    expect(again.lostLines()).toEqual([]);
    console.log(`node crash: a saw b down ${downAfter} ms after the SIGKILL (node-timeout 1500 ms)`);
  });
});
