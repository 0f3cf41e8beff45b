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
