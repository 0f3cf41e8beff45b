import { connect } from '@nats-io/transport-node';
import { NatsBus } from '../lib/nats';
import { BusRecorder } from './contract/bus.contract';
import { freePort, NatsCluster, NatsServer } from './helpers/brokers';
import { expectBlackholeHealedByReconnect, expectCarried, openPair, waitDown, waitUp } from './helpers/bus-faults';
import { FaultProxy } from './helpers/fault-proxy';
import { delay, onTeardown } from './helpers/net';

/** A private nats-server for one test. */
async function privateNats(): Promise<NatsServer> {
  const server = await NatsServer.start();
  onTeardown(() => server.kill('SIGKILL'));
  return server;
}

describe('NatsBus faults', () => {
  it('rejects open() when no server answers', async () => {
    const bus = new NatsBus({ servers: `nats://127.0.0.1:${await freePort()}`, channel: 'nobody' });
    await expect(bus.open(new BusRecorder())).rejects.toMatchObject({ code: 'ERR_BUS_DOWN' });
    await bus.close();
  });

  it('goes down when nats-server is SIGKILLed, rejects publish while down, and is up again after its restart', async () => {
    const server = await privateNats();
    const { buses, recorders } = await openPair((channel) => [
      new NatsBus({ servers: server.url, channel }),
      new NatsBus({ servers: server.url, channel }),
    ]);
    await server.kill('SIGKILL');
    await Promise.all(recorders.map((recorder) => waitDown(recorder, 0)));
    await expect(buses[0].publish(Buffer.from('while down'))).rejects.toMatchObject({ code: 'ERR_BUS_DOWN' });
    await server.start();
    await Promise.all(recorders.map((recorder) => waitUp(recorder)));
    await expectCarried(buses[0], recorders[1], 'after the restart');
    await expectCarried(buses[1], recorders[0], 'and back');
    for (const recorder of recorders) expect(recorder.downs.length).toBe(recorder.ups - 1);
  });

  it('goes down on a partition (the proxy cuts every connection) and up when it heals', async () => {
    const server = await privateNats();
    const proxy = await FaultProxy.start(server.port);
    const { buses, recorders } = await openPair((channel) => [
      new NatsBus({ servers: proxy.url('nats'), channel }),
      new NatsBus({ servers: server.url, channel }),
    ]);
    proxy.cut();
    await waitDown(recorders[0], 0);
    await expect(buses[0].publish(Buffer.from('cut off'))).rejects.toMatchObject({ code: 'ERR_BUS_DOWN' });
    expect(recorders[1].downs).toEqual([]);
    proxy.heal();
    await waitUp(recorders[0]);
    await expectCarried(buses[0], recorders[1], 'healed');
    await expectCarried(buses[1], recorders[0], 'heard again');
  });

  it('fails over to the other server of a cluster when its own is SIGKILLed: down, then up there', async () => {
    const cluster = await NatsCluster.start(2);
    onTeardown(() => cluster.stop());
    const { buses, recorders } = await openPair((channel) => [
      // Prefers the first server, knows the second.
      new NatsBus({ servers: cluster.urls, connectOptions: { noRandomize: true }, channel }),
      new NatsBus({ servers: cluster.urls[1], channel }),
    ]);
    await cluster.nodes[0].kill('SIGKILL');
    await waitDown(recorders[0], 0);
    await waitUp(recorders[0], 'up() on the other server');
    expect(recorders[1].downs).toEqual([]);
    await expectCarried(buses[0], recorders[1], 'from the survivor');
    await expectCarried(buses[1], recorders[0], 'to the failed-over bus');
  });

  it('does not notice a blackhole by itself; reconnect() reports down, keeps trying, and is up soon after the heal', async () => {
    const server = await privateNats();
    const proxy = await FaultProxy.start(server.port);
    const { buses, recorders } = await openPair((channel) => [
      new NatsBus({ servers: proxy.url('nats'), channel }),
      new NatsBus({ servers: server.url, channel }),
    ]);
    const upAfterHeal = await expectBlackholeHealedByReconnect(proxy, buses, recorders);
    console.log(`NatsBus: up ${upAfterHeal} ms after the blackhole healed`);
  });

  it('reconnect() on a connection of the user asks it to reconnect, and leaves it open', async () => {
    const server = await privateNats();
    const proxy = await FaultProxy.start(server.port);
    const connection = await connect({ servers: proxy.url('nats'), reconnectTimeWait: 250, timeout: 1000 });
    onTeardown(() => connection.close());
    const { buses, recorders } = await openPair((channel) => [
      new NatsBus({ connection, channel }),
      new NatsBus({ servers: server.url, channel }),
    ]);
    await expectBlackholeHealedByReconnect(proxy, buses, recorders);
    await buses[0].close();
    expect(connection.isClosed()).toBe(false);
  });

  it('close() during a reconnect stops it: no attempt afterwards', async () => {
    const server = await privateNats();
    const proxy = await FaultProxy.start(server.port);
    const { buses, recorders } = await openPair((channel) => [
      new NatsBus({ servers: proxy.url('nats'), channel }),
      new NatsBus({ servers: server.url, channel }),
    ]);
    proxy.blackhole();
    buses[0].reconnect?.();
    await waitDown(recorders[0], 0);
    await delay(1500); // an attempt timed out, another one is under way
    await buses[0].close();
    const accepted = proxy.accepted;
    await delay(1500);
    // No attempt after close(). (nats.js leaves the socket of a handshake that timed out open, as its
    // transport only closes sockets that got as far as the server's INFO: those stay until the proxy goes.)
    expect(proxy.accepted).toBe(accepted);
    expect(recorders[0].ups).toBe(1);
  });
});
