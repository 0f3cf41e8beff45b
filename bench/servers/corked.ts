/**
 * The naive broadcaster plus per-event-loop-turn coalescing, a peer of the benchmark: the bare floor of a
 * fast Node broadcaster with no features. A receiver is corked on its first write of a turn and uncorked
 * once, after every chunk of the turn was read, so all of them go out in one writev; TCP_NODELAY is on.
 * Usage: node dist/bench/servers/corked.js --host 127.0.0.1 --port N
 */
import * as net from 'node:net';
import { announce, listenArgs } from './args';

const { host, port } = listenArgs();
const everyone = new Set<net.Socket>();
const corked = new Set<net.Socket>();
let flushing = false;

function uncorkAll(): void {
  flushing = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  everyone.add(socket);
  socket.on('data', (chunk: Buffer) => {
    for (const other of everyone) {
      if (other === socket) continue;
      if (!corked.has(other)) {
        other.cork();
        corked.add(other);
      }
      other.write(chunk);
    }
    if (!flushing) {
      flushing = true;
      setImmediate(uncorkAll);
    }
  });
  const leave = (): void => {
    everyone.delete(socket);
  };
  socket.on('close', leave);
  socket.on('error', leave);
});
server.listen(port, host, () => announce('corked', host, port));
