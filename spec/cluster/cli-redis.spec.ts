/**
 * The multiplexer CLI as a cluster over real, private Redis brokers: several `multiplexer --bus redis://...`
 * processes, real TCP clients on each, and faults done to the processes themselves (SIGKILL, SIGSTOP) and to
 * the brokers. The bus alone is specified in spec/bus-faults-redis.spec.ts and the in-process cluster in
 * spec/cluster/memory-bus.spec.ts; this is what a user of the CLI sees from outside.
 */
import { clusterSlot } from '../../lib/redis';
import { RedisCluster, RedisServer } from '../helpers/brokers';
import {
  ClusterNode,
  LineClient,
  LineStream,
  numberedLine,
  plainTexts,
  startNodes,
  syncClients,
  waitJoined,
} from '../helpers/cluster-redis';
import { delay, onTeardown, waitFor } from '../helpers/net';
import { RssSampler } from '../helpers/process';

/** A private redis-server for one test, killed after it. */
async function privateRedis(extra: readonly string[] = []): Promise<RedisServer> {
  const server = await RedisServer.start(extra);
  onTeardown(() => server.kill('SIGKILL'));
  return server;
}

/** Numbers 0 .. n-1. */
function upTo(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Writes `count` numbered lines of `origin` in writes of `chunk` lines, yielding between writes. */
async function sendNumbered(client: LineClient, origin: string, count: number, chunk = 100): Promise<void> {
  for (let from = 0; from < count; from += chunk) {
    let text = '';
    for (let seq = from; seq < Math.min(count, from + chunk); seq += 1) text += numberedLine(origin, seq);
    await client.write(text);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('multiplexer CLI nodes joined over one Redis server', () => {
  it('gives a line from a client of one node to every client of every node once, not to its sender', async () => {
    const redis = await privateRedis();
    const nodes = await startNodes(redis.url, ['a', 'b', 'c']);
    const clients = await Promise.all(nodes.map((node) => LineClient.all(node.port, 2)));
    await syncClients(clients);
    const [sender, neighbour] = clients[0];
    await sender.write('hello cluster\n');
    const others = [neighbour, ...clients[1], ...clients[2]];
    await waitFor(() => others.every((client) => plainTexts(client).length >= 1), 'the line everywhere', 10_000);
    await delay(300); // a repeat would come within a few heartbeats
    for (const client of others) expect(plainTexts(client)).toEqual(['hello cluster']);
    expect(plainTexts(sender)).toEqual([]);
    for (const node of nodes) expect(node.losses()).toEqual(new Map());
  });

  it('decides --send-to-origin on the sender’s own node', async () => {
    const redis = await privateRedis();
    const plain = await ClusterNode.start(redis.url, 'plain');
    const echoing = await ClusterNode.start(redis.url, 'echoing', ['--send-to-origin']);
    const other = await ClusterNode.start(redis.url, 'other');
    const nodes = [plain, echoing, other];
    await waitJoined(nodes);
    const clients = await Promise.all(nodes.map((node) => LineClient.all(node.port, 2)));
    await syncClients(clients);
    const [alice] = clients[0];
    const [bob] = clients[1]; // its own line comes back from its own node
    await alice.write('from alice\n');
    await bob.write('from bob\n');
    const everyone = clients.flat();
    const expected = new Map<LineClient, string[]>(everyone.map((client) => [client, ['from alice', 'from bob']]));
    expected.set(alice, ['from bob']); // its node does not echo
    await waitFor(
      () => everyone.every((client) => plainTexts(client).length >= (expected.get(client)?.length ?? 0)),
      'both lines everywhere',
      10_000,
    );
    await delay(300);
    for (const client of everyone) expect(plainTexts(client).sort()).toEqual(expected.get(client));
  });

  it("keeps each origin's order at every receiver with three senders on each of two nodes at once", async () => {
    const redis = await privateRedis();
    const nodes = await startNodes(redis.url, ['a', 'b']);
    const senders = await Promise.all(nodes.map((node) => LineClient.all(node.port, 3)));
    const receivers = await Promise.all(nodes.map((node) => LineClient.all(node.port, 2)));
    await syncClients(nodes.map((_, i) => [...senders[i], ...receivers[i]]));
    const count = 2000;
    const origins = nodes.flatMap((node) => [0, 1, 2].map((k) => `${node.id}${k}`));
    await Promise.all(
      senders.flatMap((group, n) => group.map((client, k) => sendNumbered(client, `${nodes[n].id}${k}`, count))),
    );
    const total = origins.length * count;
    const got = (client: LineClient): number => origins.reduce((sum, origin) => sum + client.count(origin), 0);
    await waitFor(
      () =>
        receivers.flat().every((client) => got(client) >= total) &&
        senders.flat().every((client) => got(client) >= total - count),
      'every line at every client',
      30_000,
    );
    const all = receivers.flat();
    for (const client of all) for (const origin of origins) expect(client.seqs(origin)).toEqual(upTo(count));
    // Each sender hears every other sender, on its node and the other one, and not itself.
    for (const [n, group] of senders.entries()) {
      for (const [k, client] of group.entries()) {
        for (const origin of origins) {
          expect(client.seqs(origin)).toEqual(origin === `${nodes[n].id}${k}` ? [] : upTo(count));
        }
      }
    }
    for (const node of nodes) expect(node.losses()).toEqual(new Map());
  });
});

/** Figures worth reporting, printed when CLUSTER_FIGURES is set (they are not part of any assertion). */
function figure(name: string, value: unknown): void {
  if (process.env.CLUSTER_FIGURES !== undefined) process.stdout.write(`figure ${name}: ${JSON.stringify(value)}\n`);
}

/** Origins of numbered lines: `<node><k>`, one per sender. */
function originsOf(node: ClusterNode, senders: number): string[] {
  return Array.from({ length: senders }, (_, k) => `${node.id}${k}`);
}

/**
 * Checks what the receivers of each node got of every origin after a fault: their own node's lines all, in
 * order; another node's lines in order, never twice, the same at every receiver of a node, and missing
 * exactly as many as the node reported lost from that origin node. Returns the losses per node pair.
 */
async function expectAccounted(
  nodes: readonly ClusterNode[],
  receivers: readonly (readonly LineClient[])[],
  streams: ReadonlyMap<string, LineStream>,
): Promise<Record<string, number>> {
  const originsOfNode = (node: ClusterNode): string[] =>
    [...streams.keys()].filter((origin) => origin.slice(0, -1) === node.id);
  const missingAt = (client: LineClient, from: ClusterNode): number =>
    originsOfNode(from).reduce((sum, origin) => sum + client.report(origin, streams.get(origin)?.sent ?? 0).missing, 0);
  // Every receiver has the last line of every origin; a gap is reported once the next frame or heartbeat
  // of its node arrives, so the reports may trail the lines by a heartbeat.
  await waitFor(
    () =>
      receivers.every((group) =>
        group.every((client) =>
          [...streams].every(([origin, stream]) => client.seqs(origin).includes(stream.sent - 1)),
        ),
      ),
    'the last line of every origin at every receiver',
    30_000,
  );
  await waitFor(
    () =>
      nodes.every((node, n) =>
        nodes.every((from) => from === node || node.lostFrom(from.id) === missingAt(receivers[n][0], from)),
      ),
    'the losses reported to match the lines missing',
    10_000,
  ).catch(() => undefined); // the exact comparison below says what differs
  const losses: Record<string, number> = {};
  for (const [n, node] of nodes.entries()) {
    for (const client of receivers[n]) {
      for (const [origin, stream] of streams) {
        const report = client.report(origin, stream.sent);
        expect({ origin, outOfOrder: report.outOfOrder, duplicates: report.duplicates }).toEqual({
          origin,
          outOfOrder: 0,
          duplicates: 0,
        });
        if (origin.slice(0, -1) === node.id)
          expect({ origin, missing: report.missing }).toEqual({ origin, missing: 0 });
        else expect(client.seqs(origin)).toEqual(receivers[n][0].seqs(origin)); // lost at the node, for all
      }
    }
    for (const from of nodes) {
      if (from === node) continue;
      const missing = missingAt(receivers[n][0], from);
      expect({ at: node.id, from: from.id, reported: node.lostFrom(from.id) }).toEqual({
        at: node.id,
        from: from.id,
        reported: missing,
      });
      losses[`${from.id}->${node.id}`] = missing;
    }
  }
  return losses;
}

describe('--outbox-bytes smaller than a turn', () => {
  it('still carries the turn over a bus that is up and idle: nothing waits, so nothing is shed', async () => {
    const redis = await privateRedis();
    const [a, b] = await startNodes(redis.url, ['a', 'b'], ['--outbox-bytes', '16384']);
    const [sender] = await LineClient.all(a.port, 1);
    const [receiver] = await LineClient.all(b.port, 1);
    await syncClients([[sender], [receiver]]);
    // One write of 1000 lines: one read on node a, one turn, one frame of some 30 KB.
    let text = '';
    for (let seq = 0; seq < 1000; seq += 1) text += numberedLine('a0', seq);
    await sender.write(text);
    await waitFor(() => receiver.count('a0') === 1000 || a.shedMessages() > 0, 'the turn across (or shed)', 10_000);
    expect(a.shedMessages()).toBe(0); // a heartbeat enqueued behind the turn may be shed: it carries none
    await waitFor(() => receiver.count('a0') === 1000, 'the whole turn across', 10_000);
    expect(receiver.seqs('a0')).toEqual(upTo(1000));
    expect(b.losses()).toEqual(new Map());
  });
});

describe('a Redis server SIGKILLed mid-stream and restarted on the same port', () => {
  it('keeps local delivery whole, loses remote lines only as reported, and is live again within 2 s', async () => {
    const redis = await privateRedis();
    // The outbox sheds frames older than 1 s: what waits out the outage is lost, and counted. (A bound in
    // bytes would also shed the newest frames right after the return, while the backlog is in flight, and
    // among them control envelopes such as a snapshot request, which the receiver counts as lost messages
    // too: then it reports one more than the lines missing.)
    const nodes = await startNodes(redis.url, ['a', 'b'], ['--outbox-age', '1000']);
    const senders = await Promise.all(nodes.map((node) => LineClient.all(node.port, 3)));
    const receivers = await Promise.all(nodes.map((node) => LineClient.all(node.port, 2)));
    await syncClients(nodes.map((_, i) => [...senders[i], ...receivers[i]]));
    const streams = new Map<string, LineStream>();
    for (const [n, node] of nodes.entries()) {
      for (const [k, origin] of originsOf(node, 3).entries())
        streams.set(origin, new LineStream(senders[n][k], origin));
    }
    await delay(500);
    const killedAt = Date.now();
    await redis.kill('SIGKILL');
    await waitFor(() => nodes.every((node) => node.busDowns().length === 1), 'both nodes to see the bus down', 10_000);
    await delay(1500 - (Date.now() - killedAt));
    const returnedAt = Date.now();
    await redis.start();
    await delay(2000 - (Date.now() - returnedAt));
    // Lines numbered from here on were sent at least 2 s after the broker's return: every one must cross.
    const afterReturn = new Map([...streams].map(([origin, stream]) => [origin, stream.sent]));
    await delay(500);
    await Promise.all([...streams.values()].map((stream) => stream.stop()));
    const losses = await expectAccounted(nodes, receivers, streams);
    for (const [n, node] of nodes.entries()) {
      const ups = node.busUps();
      expect(ups).toHaveLength(2);
      expect(ups[1] - returnedAt).toBeLessThan(2000);
      figure(`up after return (${node.id}), ms`, ups[1] - returnedAt);
      for (const [origin, from] of afterReturn) {
        const late = receivers[n][0].seqs(origin).filter((seq) => seq >= from);
        expect({ origin, late: late.length }).toEqual({ origin, late: (streams.get(origin)?.sent ?? 0) - from });
      }
      // Frames shed from the outbox never reached the broker; the rest waited until the other node was heard
      // again (subscribed again), so it missed exactly what was shed.
      const other = nodes[1 - n];
      expect(node.shedMessages()).toBeGreaterThan(0);
      expect(other.lostFrom(node.id)).toBe(node.shedMessages());
      figure(`shed at ${node.id}`, node.shedMessages());
    }
    figure('lost (from->at)', losses);
    figure('lines sent per origin', Object.fromEntries([...streams].map(([origin, stream]) => [origin, stream.sent])));
  }, 60_000);

  it('keeps the memory of a node bounded by --outbox-bytes while senders keep going', async () => {
    const redis = await privateRedis();
    const outboxBytes = 256 * 1024;
    const [node, other] = await startNodes(redis.url, ['a', 'b'], ['--outbox-bytes', String(outboxBytes)]);
    const [sender, ...locals] = await LineClient.all(node.port, 3);
    const [remote] = await LineClient.all(other.port, 1);
    await syncClients([[sender, ...locals], [remote]]);
    // Warm up with the bus up: the node's buffers, heap and code reach their working size.
    const warm = new LineStream(sender, 'w0', { perTick: 64, tickMs: 0, pad: 1000 });
    await delay(1500);
    await warm.stop();
    await waitFor(() => locals.every((client) => client.count('w0') === warm.sent), 'the warm-up locally', 30_000);
    const rss = new RssSampler(node.pid, 20);
    await delay(200);
    const baseline = rss.peak;
    await redis.kill('SIGKILL');
    await waitFor(() => node.busDowns().length === 1, 'the bus down', 10_000);
    const before = locals[0].bytes;
    // Senders keep going while the bus is down, until 64 MiB went through the node (many times the outbox).
    const flood = new LineStream(sender, 'f0', { perTick: 64, tickMs: 0, pad: 1000 });
    const floodStart = Date.now();
    await waitFor(() => locals[0].bytes - before >= 64 * 2 ** 20, 'a flood of 64 MiB', 30_000);
    const sent = await flood.stop();
    figure('flood time, ms', Date.now() - floodStart);
    await waitFor(() => locals.every((client) => client.count('f0') === sent), 'the flood locally', 30_000);
    const peak = rss.stop();
    const floodBytes = locals[0].bytes - before;
    figure('RSS baseline, peak while down (MiB)', [baseline / 2 ** 20, peak / 2 ** 20]);
    figure('flood while down (MiB)', floodBytes / 2 ** 20);
    for (const client of locals) expect(client.seqs('f0')).toEqual(upTo(sent));
    // Without the bound the node would hold all it could not publish: 64 MiB, many times the margin.
    expect(floodBytes).toBeGreaterThanOrEqual(64 * 2 ** 20);
    expect(peak - baseline).toBeLessThan(16 * 2 ** 20);
    expect(node.shedMessages()).toBeGreaterThan(0);
    await redis.start();
    await waitFor(() => node.busUps().length === 2 && other.busUps().length === 2, 'both up again', 10_000);
    await sender.write('after the outage\n');
    await waitFor(() => remote.texts.includes('after the outage'), 'a line across after the outage', 10_000);
  }, 60_000);
});

describe('a CLI node SIGKILLed and restarted with the same --node-id', () => {
  it('is reported down after --node-timeout, then up as a new incarnation, with no loss counted across it', async () => {
    const redis = await privateRedis();
    const [a, b] = await startNodes(redis.url, ['a', 'b'], ['--node-timeout', '1500']);
    const [aSender, aReceiver] = await LineClient.all(a.port, 2);
    const [bSender, bReceiver] = await LineClient.all(b.port, 2);
    await syncClients([
      [aSender, aReceiver],
      [bSender, bReceiver],
    ]);
    await Promise.all([sendNumbered(aSender, 'a0', 100), sendNumbered(bSender, 'b0', 100)]);
    await waitFor(() => aReceiver.count('b0') === 100 && bReceiver.count('a0') === 100, 'the first lines across');
    const killedAt = Date.now();
    await b.kill('SIGKILL');
    await waitFor(() => a.nodeDowns('b').length === 1, 'node a to report b down', 10_000);
    const downAfter = a.nodeDowns('b')[0] - killedAt;
    figure('node down after SIGKILL, ms (--node-timeout 1500, heartbeats 200)', downAfter);
    // Not heard for 1500 ms, checked at each heartbeat: its last heartbeat came at most 200 ms before the kill.
    expect(downAfter).toBeGreaterThanOrEqual(1500 - 200 - 20);
    expect(downAfter).toBeLessThan(1500 + 200 + 3000);
    expect(a.logged(/^node b down: not heard for 1500 ms$/)).toHaveLength(1);
    // a goes on while b is gone: its lines reach its own receiver.
    for (let seq = 100; seq < 200; seq += 1) await aSender.write(numberedLine('a0', seq));
    await waitFor(() => aReceiver.count('a0') === 200, 'a to deliver locally while b is gone');

    const b2 = await b.restart();
    await waitJoined([a, b2]);
    expect(a.nodeUps('b')).toHaveLength(2);
    const [b2Sender, b2Receiver] = await LineClient.all(b2.port, 2);
    await syncClients([
      [aSender, aReceiver],
      [b2Sender, b2Receiver],
    ]);
    // The new incarnation numbers its frames from 0 again: they must not be taken for repeats of the old one.
    const more = async (): Promise<void> => {
      for (let seq = 200; seq < 300; seq += 1) await aSender.write(numberedLine('a0', seq));
    };
    await Promise.all([more(), sendNumbered(b2Sender, 'b0new', 100)]);
    await waitFor(
      () => aReceiver.count('b0new') === 100 && b2Receiver.count('a0') === 100,
      'lines across both ways with the new incarnation',
      10_000,
    );
    await delay(600); // a few heartbeats: a wrong gap would be reported by now
    expect(aReceiver.seqs('b0')).toEqual(upTo(100));
    expect(aReceiver.seqs('b0new')).toEqual(upTo(100));
    expect(aReceiver.seqs('a0')).toEqual(upTo(300));
    expect(b2Receiver.seqs('a0')).toEqual(upTo(100).map((i) => 200 + i));
    expect(b2Receiver.seqs('b0new')).toEqual(upTo(100));
    expect(a.losses()).toEqual(new Map());
    expect(b2.losses()).toEqual(new Map());
    expect(a.nodeDowns('b')).toHaveLength(1);
  }, 60_000);
});

describe('a slow node that Redis cuts (client-output-buffer-limit pubsub)', () => {
  it('sees its bus down, comes back and reports exactly what it missed; the other nodes are unaffected', async () => {
    const redis = await privateRedis();
    redis.cli('config', 'set', 'client-output-buffer-limit', 'pubsub 256kb 128kb 1');
    // No node is taken for dead while b is stopped (its heartbeats pause), and b may catch up in one go.
    const nodes = await startNodes(
      redis.url,
      ['a', 'b', 'c'],
      ['--node-timeout', '30000', '--max-queued-bytes', '268435456'],
    );
    const [a, b, c] = nodes;
    const [sender, aReceiver] = await LineClient.all(a.port, 2);
    const bReceivers = await LineClient.all(b.port, 2);
    const cReceivers = await LineClient.all(c.port, 2);
    await syncClients([[sender, aReceiver], bReceivers, cReceivers]);
    const stream = new LineStream(sender, 'a0', { perTick: 16, tickMs: 2, pad: 200 });
    await delay(300);
    b.cli.child.kill('SIGSTOP');
    const cut = (): boolean => redis.output.includes('overcoming of output buffer limits');
    try {
      await waitFor(cut, 'Redis to cut the stopped node', 20_000);
    } finally {
      b.cli.child.kill('SIGCONT');
    }
    await waitFor(() => b.busUps().length === 2, 'b to come back', 10_000);
    await delay(1000);
    await stream.stop();
    const streams = new Map([['a0', stream]]);
    const losses = await expectAccounted(nodes, [[aReceiver], bReceivers, cReceivers], streams);
    figure('slow node: lines sent, lost at b', [stream.sent, b.lostFrom('a')]);
    expect(b.lostFrom('a')).toBeGreaterThan(0);
    expect(b.busDowns()).toHaveLength(1);
    expect(losses['a->c']).toBe(0);
    for (const node of [a, c]) {
      expect(node.busDowns()).toEqual([]);
      expect(node.losses()).toEqual(new Map());
    }
    expect(redis.output.match(/overcoming of output buffer limits/g)).toHaveLength(1);
  }, 60_000);
});

describe('multiplexer CLI nodes joined over a 3-master Redis Cluster', () => {
  it("broadcasts in each origin's order, and survives a SIGKILL of the channel's master with the loss reported", async () => {
    const cluster = await RedisCluster.start(3);
    onTeardown(() => cluster.stop());
    const seeds = (from: number): string =>
      `redis-cluster://${cluster.nodes
        .slice(from, from + 2)
        .map((node) => `127.0.0.1:${node.port}`)
        .join(',')}`;
    const a = await ClusterNode.start(seeds(0), 'a', ['--outbox-age', '1000']);
    const b = await ClusterNode.start(seeds(1), 'b', ['--outbox-age', '1000']);
    const nodes = [a, b];
    await waitJoined(nodes);
    const senders = await Promise.all(nodes.map((node) => LineClient.all(node.port, 2)));
    const receivers = await Promise.all(nodes.map((node) => LineClient.all(node.port, 2)));
    await syncClients(nodes.map((_, i) => [...senders[i], ...receivers[i]]));
    const origins = nodes.flatMap((node) => originsOf(node, 2));
    const count = 1000;
    await Promise.all(
      senders.flatMap((group, n) => group.map((client, k) => sendNumbered(client, `${nodes[n].id}${k}`, count))),
    );
    await waitFor(
      () => receivers.flat().every((client) => origins.every((origin) => client.count(origin) >= count)),
      'every line at every receiver',
      30_000,
    );
    for (const client of receivers.flat())
      for (const origin of origins) expect(client.seqs(origin)).toEqual(upTo(count));

    const streams = new Map<string, LineStream>();
    for (const [n, node] of nodes.entries()) {
      for (const [k, origin] of originsOf(node, 2).entries()) {
        streams.set(`${origin.slice(0, -1)}${k + 2}`, new LineStream(senders[n][k], `${origin.slice(0, -1)}${k + 2}`));
      }
    }
    await delay(500);
    const master = cluster.nodeForSlot(clusterSlot('multiplexer'));
    await master.kill('SIGKILL');
    await waitFor(() => nodes.every((node) => node.busDowns().length >= 1), 'both nodes to see the bus down', 15_000);
    await delay(1500);
    const returnedAt = Date.now();
    await master.start();
    await cluster.waitOk();
    await waitFor(() => nodes.every((node) => node.busUps().length >= 2), 'both nodes up again', 20_000);
    figure(
      'cluster: up after the master returned, ms',
      nodes.map((node) => node.busUps()[1] - returnedAt),
    );
    await delay(1000);
    await Promise.all([...streams.values()].map((stream) => stream.stop()));
    const losses = await expectAccounted(nodes, receivers, streams);
    figure('cluster: lost (from->at)', losses);
    expect(losses['a->b'] + losses['b->a']).toBeGreaterThan(0);
  }, 90_000);
});
