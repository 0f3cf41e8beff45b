/**
 * socket.io 4 as one node of a cluster, a peer of the benchmark's cluster cases: every event `m` goes to every
 * other client of every node (`socket.broadcast.emit`), the other nodes reached through @socket.io/redis-adapter
 * on node-redis clients (one publisher, one subscriber). Default options otherwise, as the `socketio` peer.
 * Usage: node dist/bench/servers/socketio-redis.js --host 127.0.0.1 --port N --redis redis://H:P
 */
import { createServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import { Server } from 'socket.io';
import { announce, listenArgs } from './args';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const at = args.indexOf('--redis');
  if (at < 0 || at + 1 >= args.length) throw new RangeError('--redis redis://HOST:PORT is required');
  const [, url] = args.splice(at, 2);
  const { host, port } = listenArgs(args);
  const publisher = createClient({ url });
  const subscriber = publisher.duplicate();
  publisher.on('error', (error: Error) => process.stderr.write(`redis publisher: ${error.message}\n`));
  subscriber.on('error', (error: Error) => process.stderr.write(`redis subscriber: ${error.message}\n`));
  await Promise.all([publisher.connect(), subscriber.connect()]);
  const http = createServer();
  const io = new Server(http, { serveClient: false, adapter: createAdapter(publisher, subscriber) });
  io.on('connection', (socket) => {
    socket.on('m', (m: unknown) => {
      socket.broadcast.emit('m', m);
    });
  });
  http.listen(port, host, () => announce('socketio-redis', host, port));
}

main().catch((error: unknown) => {
  process.stderr.write(`socketio-redis: ${String(error)}\n`);
  process.exit(1);
});
