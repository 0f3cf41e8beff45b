import { connect } from '@nats-io/transport-node';
import { NatsBus } from '../../lib/nats';
import { NatsCluster, NatsServer } from '../helpers/brokers';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTeardown } from '../helpers/net';
import { describeBusContract, openBus, uniqueChannel } from './bus.contract';

describeBusContract('NatsBus on a private nats-server', async () => {
  const server = await NatsServer.start();
  return { bus: (channel) => new NatsBus({ servers: server.url, channel }), stop: () => server.kill('SIGKILL') };
});

describeBusContract('NatsBus on a private 2-server NATS cluster, each bus on a server of its own', async () => {
  const cluster = await NatsCluster.start(2);
  let next = 0;
  return {
    // Alternate the servers: frames must cross the route between them.
    bus: (channel) => new NatsBus({ servers: cluster.urls[next++ % 2], channel }),
    stop: () => cluster.stop(),
  };
});

describeBusContract('NatsBus on a connection of the user (shared by the buses)', async () => {
  const server = await NatsServer.start();
  const connection = await connect({ servers: server.url });
  return {
    bus: (channel) => new NatsBus({ connection, channel }),
    stop: async () => {
      await connection.close();
      await server.kill('SIGKILL');
    },
  };
});

describe('NatsBus maxFrameBytes', () => {
  it("is the server's max_payload from its INFO, capped by the maxFrameBytes option", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mux-nats-'));
    onTeardown(() => rmSync(dir, { recursive: true, force: true }));
    const config = join(dir, 'nats.conf');
    writeFileSync(config, 'max_payload: 65536\n');
    const server = await NatsServer.start(['-c', config]);
    onTeardown(() => server.kill('SIGKILL'));
    const bus = new NatsBus({ servers: server.url, channel: uniqueChannel() });
    const capped = new NatsBus({ servers: server.url, channel: uniqueChannel(), maxFrameBytes: 1000 });
    expect(bus.maxFrameBytes).toBe(1024 * 1024);
    await openBus(bus);
    await openBus(capped);
    expect(bus.maxFrameBytes).toBe(65536);
    expect(capped.maxFrameBytes).toBe(1000);
    await expect(bus.publish(Buffer.alloc(65537))).rejects.toMatchObject({ code: 'ERR_BUS_FRAME_TOO_LARGE' });
    await bus.publish(Buffer.alloc(65536));
  });
});
