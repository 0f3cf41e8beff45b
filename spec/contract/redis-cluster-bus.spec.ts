import { RedisBus } from '../../lib/redis';
import { RedisCluster } from '../helpers/brokers';
import { describeBusContract } from './bus.contract';

describeBusContract('RedisBus on a private 3-master Redis Cluster (sharded pub/sub)', async () => {
  const cluster = await RedisCluster.start(3);
  return { bus: (channel) => new RedisBus({ cluster: cluster.urls, channel }), stop: () => cluster.stop() };
});
