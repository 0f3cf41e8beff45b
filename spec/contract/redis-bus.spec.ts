import IORedis from 'ioredis';
import { createClient } from 'redis';
import { RedisBus } from '../../lib/redis';
import { RedisCluster, RedisServer } from '../helpers/brokers';
import { describeBusContract } from './bus.contract';

describeBusContract('RedisBus on a private redis-server (node-redis, from a URL)', async () => {
  const server = await RedisServer.start();
  return { bus: (channel) => new RedisBus({ url: server.url, channel }), stop: () => server.kill('SIGKILL') };
});

describeBusContract('RedisBus with a node-redis client of the user', async () => {
  const server = await RedisServer.start();
  const client = createClient({ url: server.url });
  return { bus: (channel) => new RedisBus({ client, channel }), stop: () => server.kill('SIGKILL') };
});

describeBusContract('RedisBus with an ioredis client of the user', async () => {
  const server = await RedisServer.start();
  const client = new IORedis({ port: server.port, host: '127.0.0.1', lazyConnect: true });
  return {
    bus: (channel) => new RedisBus({ client, channel }),
    stop: async () => {
      client.disconnect();
      await server.kill('SIGKILL');
    },
  };
});

describeBusContract('RedisBus on a private 3-master Redis Cluster (sharded pub/sub)', async () => {
  const cluster = await RedisCluster.start(3);
  return { bus: (channel) => new RedisBus({ cluster: cluster.urls, channel }), stop: () => cluster.stop() };
});
