import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { CLI, ensureBuilt, ROOT } from '../helpers/build';

/** Runs `script` in a fresh node in the repository root and returns what it printed, parsed. */
function inFreshNode(script: string): unknown {
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' }));
}

/** Runs `script` in a fresh node and returns its last line of output, parsed. */
function lastLineOf(script: string): unknown {
  const out = execFileSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' }).trim().split('\n');
  return JSON.parse(out[out.length - 1]);
}

/** Prints the client libraries that are in require.cache. */
const LOADED_CLIENTS = `
  const loaded = Object.keys(require.cache)
    .map((file) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(file)?.[1])
    .filter((name) => ['redis', '@redis/client', 'ioredis', '@nats-io/transport-node', '@nats-io/nats-core', 'ws'].includes(name));
  console.log(JSON.stringify([...new Set(loaded)].sort()));
`;

describe('entry points', () => {
  beforeAll(() =>
    ensureBuilt([
      CLI,
      join(ROOT, 'dist', 'lib', 'redis.js'),
      join(ROOT, 'dist', 'lib', 'nats.js'),
      join(ROOT, 'dist', 'lib', 'ws.js'),
    ]),
  );

  it('the core (socket-multiplexer) loads no Redis or NATS client, and not ws', () => {
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

  it('the CLI loads ws only when --ws-port is given', () => {
    // The CLI prints its listening line first: the list is the last line.
    const run = (flags: string): unknown =>
      lastLineOf(`
        const { main } = require('./dist/lib/cli.js');
        const done = main(['--host', '127.0.0.1', '--port', '0', ${flags}]);
        const print = () => { ${LOADED_CLIENTS} };
        setTimeout(() => { print(); process.kill(process.pid, 'SIGTERM'); }, 500);
        done.then(() => process.exit(0));`);
    expect(run('')).toEqual([]);
    expect(run(`'--ws-port', '0'`)).toEqual(['ws']);
  });

  it('socket-multiplexer/ws exports the WebSocket transport, and loads ws', () => {
    const script = `
      const { websocket, WebSocketTransport, CLOSE_CODES } = require('socket-multiplexer/ws');
      if (!(websocket({ port: 0 }) instanceof WebSocketTransport) || CLOSE_CODES.eof !== 1000) throw new Error('bad export');
      ${LOADED_CLIENTS}`;
    expect(inFreshNode(script)).toEqual(['ws']);
  });

  it('resolves ./redis, ./nats and ./ws through package.json "exports" to dist/lib', () => {
    const script = `console.log(JSON.stringify(['socket-multiplexer', 'socket-multiplexer/redis', 'socket-multiplexer/nats',
      'socket-multiplexer/ws'].map((name) => require.resolve(name).replace(process.cwd() + '/', ''))))`;
    expect(inFreshNode(script)).toEqual([
      'dist/lib/index.js',
      'dist/lib/redis.js',
      'dist/lib/nats.js',
      'dist/lib/ws.js',
    ]);
  });
});
