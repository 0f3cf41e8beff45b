import IORedis from 'ioredis';
import { RedisBus } from '../../lib/redis';
import { RedisServer } from '../helpers/brokers';
import { describeBusContract } from './bus.contract';

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
