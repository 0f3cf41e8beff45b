import { invalidArgument } from '../errors';
import type { Bus } from './bus';

/** A bus URL: its scheme, then what follows `://` (one host, or several separated by commas). */
export const BUS_URL = /^(redis|rediss|redis-cluster|nats):\/\/(\S+)$/;

/**
 * The bus a URL names, loaded from its own entry point only when asked for (so that a program that uses no
 * bus loads neither Redis nor NATS): `redis://host:port` one Redis server (PUBLISH/SUBSCRIBE),
 * `redis-cluster://host:port,host:port` a Redis Cluster's seeds (sharded pub/sub), `nats://host:port[,...]`
 * one or more NATS servers of a cluster.
 * @example
 * const mux = new Multiplexer({ bus: await busFromUrl('redis://127.0.0.1:6379', 'chat') });
 */
export async function busFromUrl(url: string, channel = 'multiplexer'): Promise<Bus> {
  const match = BUS_URL.exec(String(url));
  if (match === null) {
    throw invalidArgument(`a bus URL is redis://H:P, redis-cluster://H:P[,H:P...] or nats://H:P[,H:P...]; got ${url}`);
  }
  const [, scheme, rest] = match;
  const hosts = rest.split(',').filter((host) => host !== '');
  if (scheme === 'nats') {
    const { NatsBus } = await import('../nats');
    return new NatsBus({ servers: hosts.map((host) => `nats://${host}`), channel });
  }
  const { RedisBus } = await import('../redis');
  if (scheme === 'redis-cluster') return new RedisBus({ cluster: hosts.map((host) => `redis://${host}`), channel });
  return new RedisBus({ url, channel });
}
