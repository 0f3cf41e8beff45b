/**
 * The obvious Node broadcaster, a peer of the benchmark: every chunk read is written to every other
 * client, one `write` per chunk per receiver. No coalescing, Nagle left on, no bounds. The bench's rooms
 * (`rooms.ts`): a first line `/room NAME` keeps a client's chunks, both ways, within that room.
 * Usage: node dist/bench/servers/naive.js --host 127.0.0.1 --port N
 */
import * as net from 'node:net';
import { announce, listenArgs } from './args';
import { Rooms } from './rooms';

const { host, port } = listenArgs();
const rooms = new Rooms();

const server = net.createServer((socket) => {
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
    for (const other of members) if (other !== socket) other.write(chunk);
  });
  const leave = (): void => {
    rooms.leave(socket, members);
  };
  socket.on('close', leave);
  socket.on('error', leave);
});
server.listen(port, host, () => announce('naive', host, port));
