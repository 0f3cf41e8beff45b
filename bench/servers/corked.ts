/**
 * The naive broadcaster plus per-event-loop-turn coalescing, a peer of the benchmark: the bare floor of a
 * fast Node broadcaster with no features. A receiver is corked on its first write of a turn and uncorked
 * once, after every chunk of the turn was read, so all of them go out in one writev; TCP_NODELAY is on.
 * The bench's rooms (`rooms.ts`): a first line `/room NAME` keeps a client's chunks, both ways, within
 * that room.
 * Usage: node dist/bench/servers/corked.js --host 127.0.0.1 --port N
 */
import * as net from 'node:net';
import { announce, listenArgs } from './args';
import { Rooms } from './rooms';

const { host, port } = listenArgs();
const rooms = new Rooms();
const corked = new Set<net.Socket>();
let flushing = false;

function uncorkAll(): void {
  flushing = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
}

const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  let members = rooms.lobby;
  members.add(socket);
  let first = true;
  socket.on('data', (data: Buffer) => {
    let chunk = data;
    if (first) {
      const head = rooms.firstLine(socket, data);
      if (head === null) return;
      first = false;
      if (head.room !== null) members = rooms.move(socket, members, head.room);
      if (head.rest === null) return;
      chunk = head.rest;
    }
    for (const other of members) {
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
    rooms.leave(socket, members);
  };
  socket.on('close', leave);
  socket.on('error', leave);
});
server.listen(port, host, () => announce('corked', host, port));
