/**
 * `socket-multiplexer/redis`: the Redis bus, kept out of the core entry point so that only programs that
 * use it need `redis` (node-redis, the default) or `ioredis` installed (optional peer dependencies).
 */
export {
  RedisBus,
  REDIS_MAX_FRAME_BYTES,
  type NodeRedisClient,
  type NodeRedisCluster,
  type RedisBusOptions,
} from './bus/redis';
export { clusterSlot } from './bus/redis-slot';
