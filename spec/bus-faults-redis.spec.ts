import IORedis from 'ioredis';
import type { Bus } from '../lib';
import { clusterSlot, RedisBus } from '../lib/redis';
import { BusRecorder } from './contract/bus.contract';
import { freePort, RedisCluster, RedisServer } from './helpers/brokers';
import { expectBlackholeHealedByReconnect, expectCarried, openPair, waitDown, waitUp } from './helpers/bus-faults';
import { FaultProxy } from './helpers/fault-proxy';
import { delay, onTeardown, waitFor } from './helpers/net';

/** A private redis-server for one test. */
async function privateRedis(): Promise<RedisServer> {
  const server = await RedisServer.start();
  onTeardown(() => server.kill('SIGKILL'));
  return server;
}

const clients: Array<[string, (port: number, channel: string) => Bus]> = [
  ['node-redis', (port, channel) => new RedisBus({ url: `redis://127.0.0.1:${port}`, channel })],
  [
    'ioredis',
    (port, channel) => new RedisBus({ client: new IORedis({ host: '127.0.0.1', port, lazyConnect: true }), channel }),
  ],
];

describe.each(clients)('RedisBus faults (%s)', (name, busOn) => {
  it('rejects open() when no Redis answers, and can be closed', async () => {
    const bus = busOn(await freePort(), 'nobody');
    await expect(bus.open(new BusRecorder())).rejects.toMatchObject({ code: 'ERR_BUS_DOWN' });
    await bus.close();
    await expect(bus.publish(Buffer.from('x'))).rejects.toMatchObject({ code: 'ERR_BUS_CLOSED' });
  });

  it('goes down when redis-server is SIGKILLed, rejects publish while down, and is up again after its restart', async () => {
    const server = await privateRedis();
    const { buses, recorders } = await openPair((channel) => [
      busOn(server.port, channel),
      busOn(server.port, channel),
    ]);
    await server.kill('SIGKILL');
    await Promise.all(recorders.map((recorder) => waitDown(recorder, 0)));
    await expect(buses[0].publish(Buffer.from('while down'))).rejects.toMatchObject({ code: 'ERR_BUS_DOWN' });
    expect(buses.map((bus) => (bus as RedisBus).isUp)).toEqual([false, false]);
    await server.start();
    await Promise.all(recorders.map((recorder) => waitUp(recorder)));
    await expectCarried(buses[0], recorders[1], 'after the restart');
    await expectCarried(buses[1], recorders[0], 'and back');
    for (const recorder of recorders) expect(recorder.downs.length).toBe(recorder.ups - 1);
  });

  it('goes down on a partition (the proxy cuts every connection) and up when it heals', async () => {
    const server = await privateRedis();
    const proxy = await FaultProxy.start(server.port);
    const { buses, recorders } = await openPair((channel) => [busOn(proxy.port, channel), busOn(server.port, channel)]);
    proxy.cut();
    await waitDown(recorders[0], 0);
    await expect(buses[0].publish(Buffer.from('cut off'))).rejects.toMatchObject({ code: 'ERR_BUS_DOWN' });
    expect(recorders[1].downs).toEqual([]);
    proxy.heal();
    await waitUp(recorders[0]);
    await expectCarried(buses[0], recorders[1], 'healed');
    await expectCarried(buses[1], recorders[0], 'heard again');
  });

  it('goes down when Redis cuts a slow subscriber (client-output-buffer-limit pubsub), and comes back', async () => {
    const server = await privateRedis();
    server.cli('config', 'set', 'client-output-buffer-limit', 'pubsub 262144 65536 1');
    const proxy = await FaultProxy.start(server.port);
    const { buses, recorders } = await openPair((channel) => [busOn(proxy.port, channel), busOn(server.port, channel)]);
    // The slow node reads 4 KB/s: Redis's output buffer for its subscriber grows past 256 KiB, and Redis
    // closes that connection.
    proxy.throttle(4096);
    const frame = Buffer.alloc(64 * 1024, 0x61);
    const cut = (): boolean => server.output.includes('overcoming of output buffer limits');
    for (let round = 0; !cut() && round < 500; round++) {
      await Promise.all(Array.from({ length: 16 }, () => buses[1].publish(frame)));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await waitFor(cut, 'Redis to cut the slow subscriber');
    // The slow node only learns of it once it has read what was sent before the close: let it read.
    proxy.heal();
    await waitDown(recorders[0], 0, 'the slow subscriber to see the cut', 30_000);
    await waitUp(recorders[0]);
    await expectCarried(buses[1], recorders[0], 'caught up');
    expect(recorders[1].downs).toEqual([]);
  }, 60_000);

  it('does not notice a blackhole by itself; reconnect() reports down, keeps trying, and is up soon after the heal', async () => {
    const server = await privateRedis();
    const proxy = await FaultProxy.start(server.port);
    const { buses, recorders } = await openPair((channel) => [busOn(proxy.port, channel), busOn(server.port, channel)]);
    const upAfterHeal = await expectBlackholeHealedByReconnect(proxy, buses, recorders);
    console.log(`RedisBus (${name}): up ${upAfterHeal} ms after the blackhole healed`);
  });

  it('close() during a reconnect stops it and leaves no connection open', async () => {
    const server = await privateRedis();
    const proxy = await FaultProxy.start(server.port);
    const { buses, recorders } = await openPair((channel) => [busOn(proxy.port, channel), busOn(server.port, channel)]);
    proxy.blackhole();
    buses[0].reconnect?.();
    await waitDown(recorders[0], 0);
    await delay(1500); // an attempt timed out, another one is under way
    await buses[0].close();
    const accepted = proxy.accepted;
    await delay(1500);
    expect(proxy.accepted).toBe(accepted);
    expect(proxy.open).toBe(0);
    expect(recorders[0].ups).toBe(1);
  });
});

describe('RedisBus faults on a Redis Cluster', () => {
  it('rejects open() when no seed answers', async () => {
    const bus = new RedisBus({ cluster: [`redis://127.0.0.1:${await freePort()}`], channel: 'nobody' });
    await expect(bus.open(new BusRecorder())).rejects.toMatchObject({ code: 'ERR_BUS_DOWN' });
    await bus.close();
  });

  it("goes down when the channel's master is SIGKILLed and up again after its restart", async () => {
    const cluster = await RedisCluster.start(3);
    onTeardown(() => cluster.stop());
    const { buses, recorders } = await openPair((channel) => [
      new RedisBus({ cluster: cluster.urls, channel }),
      new RedisBus({ cluster: cluster.urls.slice(1), channel }),
    ]);
    const master = cluster.nodeForSlot(clusterSlot(buses[0].channel));
    await master.kill('SIGKILL');
    await Promise.all(recorders.map((recorder) => waitDown(recorder, 0)));
    await expect(buses[0].publish(Buffer.from('while down'))).rejects.toMatchObject({ code: 'ERR_BUS_DOWN' });
    await master.start();
    await Promise.all(recorders.map((recorder) => waitUp(recorder)));
    await waitFor(() => recorders.every((recorder) => recorder.isUp), 'both up');
    await expectCarried(buses[0], recorders[1], 'after the restart');
    await expectCarried(buses[1], recorders[0], 'and back');
  }, 60_000);

  it('reconnect() drops its cluster client and makes a new one: down, then up, and it carries', async () => {
    const cluster = await RedisCluster.start(3);
    onTeardown(() => cluster.stop());
    const { buses, recorders } = await openPair((channel) => [
      new RedisBus({ cluster: cluster.urls, channel }),
      new RedisBus({ cluster: cluster.urls.slice(1), channel }),
    ]);
    const master = cluster.nodeForSlot(clusterSlot(buses[0].channel));
    const before = Number(/connected_clients:(\d+)/.exec(master.cli('info', 'clients'))?.[1]);
    buses[0].reconnect?.();
    expect(recorders[0].downs).toHaveLength(1);
    await waitUp(recorders[0]);
    expect([recorders[0].ups, recorders[0].downs.length]).toEqual([2, 1]);
    await expectCarried(buses[0], recorders[1], 'remade');
    await expectCarried(buses[1], recorders[0], 'heard by the new client');
    // The old client's connections are gone: the master has as many clients as before, not more.
    await waitFor(
      () => Number(/connected_clients:(\d+)/.exec(master.cli('info', 'clients'))?.[1]) <= before,
      'the old connections to close',
    );
  }, 60_000);
});
