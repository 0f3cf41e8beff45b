/**
 * socket.io 4 as a broadcaster, a peer of the benchmark: every event `m` is sent to every other client
 * (`socket.broadcast.emit`). socket.io encodes each packet once and even prebuilds its WebSocket frame
 * once, then writes that frame per receiver through engine.io. Default options (polling and WebSocket
 * transports, no compression); the bench's clients connect straight over WebSocket.
 * Usage: node dist/bench/servers/socketio.js --host 127.0.0.1 --port N
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { announce, listenArgs } from './args';

const { host, port } = listenArgs();
const http = createServer();
const io = new Server(http, { serveClient: false });

io.on('connection', (socket) => {
  socket.on('m', (m: unknown) => {
    socket.broadcast.emit('m', m);
  });
});
http.listen(port, host, () => announce('socketio', host, port));
