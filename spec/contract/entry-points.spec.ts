import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { CLI, ensureBuilt, ROOT } from '../helpers/build';

/** Runs `script` in a fresh node in the repository root and returns what it printed, parsed. */
function inFreshNode(script: string): unknown {
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' }));
}

/** Prints the client libraries that are in require.cache. */
const LOADED_CLIENTS = `
  const loaded = Object.keys(require.cache)
    .map((file) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(file)?.[1])
    .filter((name) => ['redis', '@redis/client', 'ioredis', '@nats-io/transport-node', '@nats-io/nats-core'].includes(name));
  console.log(JSON.stringify([...new Set(loaded)].sort()));
`;

describe('entry points', () => {
  beforeAll(() => ensureBuilt([CLI, join(ROOT, 'dist', 'lib', 'redis.js'), join(ROOT, 'dist', 'lib', 'nats.js')]));

  it('the core (socket-multiplexer) loads no Redis or NATS client', () => {
    expect(inFreshNode(`require('socket-multiplexer'); ${LOADED_CLIENTS}`)).toEqual([]);
  });

  it('socket-multiplexer/redis and /nats export the bus classes, and load their client only on open()', () => {
    const script = `
      const { RedisBus } = require('socket-multiplexer/redis');
      const { NatsBus } = require('socket-multiplexer/nats');
      new RedisBus({ url: 'redis://127.0.0.1:1', channel: 'x' });
      new NatsBus({ servers: 'nats://127.0.0.1:1', channel: 'x' });
      if (typeof RedisBus !== 'function' || typeof NatsBus !== 'function') throw new Error('missing export');
      ${LOADED_CLIENTS}`;
    expect(inFreshNode(script)).toEqual([]);
  });

  it('resolves ./redis and ./nats through package.json "exports" to dist/lib', () => {
    const script = `console.log(JSON.stringify(['socket-multiplexer', 'socket-multiplexer/redis', 'socket-multiplexer/nats']
      .map((name) => require.resolve(name).replace(process.cwd() + '/', ''))))`;
    expect(inFreshNode(script)).toEqual(['dist/lib/index.js', 'dist/lib/redis.js', 'dist/lib/nats.js']);
  });
});
