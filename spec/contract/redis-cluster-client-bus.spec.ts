import { createCluster } from 'redis';
import { RedisBus } from '../../lib/redis';
import { RedisCluster } from '../helpers/brokers';
import { describeBusContract } from './bus.contract';

describeBusContract('RedisBus with a node-redis cluster client of the user (shared by the buses)', async () => {
  const cluster = await RedisCluster.start(3);
  const client = createCluster({ rootNodes: cluster.urls.map((url) => ({ url })) });
  client.on('error', () => undefined);
  return {
    bus: (channel) => new RedisBus({ client, channel }),
    stop: async () => {
      if (client.isOpen) await client.close();
      await cluster.stop();
    },
  };
});
