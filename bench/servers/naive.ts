/**
 * The obvious Node broadcaster, a peer of the benchmark: every chunk read is written to every other
 * client, one `write` per chunk per receiver. No coalescing, Nagle left on, no bounds.
 * Usage: node dist/bench/servers/naive.js --host 127.0.0.1 --port N
 */
import * as net from 'node:net';
import { announce, listenArgs } from './args';

const { host, port } = listenArgs();
const everyone = new Set<net.Socket>();

const server = net.createServer((socket) => {
  everyone.add(socket);
  socket.on('data', (chunk: Buffer) => {
    for (const other of everyone) if (other !== socket) other.write(chunk);
  });
  const leave = (): void => {
    everyone.delete(socket);
  };
  socket.on('close', leave);
  socket.on('error', leave);
});
server.listen(port, host, () => announce('naive', host, port));
