import { createClient } from 'redis';
import { RedisBus } from '../../lib/redis';
import { RedisServer } from '../helpers/brokers';
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
