import { connect } from '@nats-io/transport-node';
import { NatsBus } from '../../lib/nats';
import { NatsCluster, NatsServer } from '../helpers/brokers';
import { describeBusContract } from './bus.contract';

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
