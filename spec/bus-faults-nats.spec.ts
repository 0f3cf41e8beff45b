import { NatsBus } from '../lib/nats';
import { BusRecorder } from './contract/bus.contract';
import { freePort, NatsCluster, NatsServer } from './helpers/brokers';
import { expectCarried, openPair, waitDown, waitUp } from './helpers/bus-faults';
import { FaultProxy } from './helpers/fault-proxy';
import { onTeardown } from './helpers/net';

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
});
