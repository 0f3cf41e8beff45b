/**
 * The naive `ws` broadcaster plus per-event-loop-turn coalescing, a peer of the benchmark: each
 * receiver's socket is corked on its first message of a turn and uncorked once, after every message of
 * the turn was read, so its frames go out in one writev. `ws.send` still frames every message for every
 * receiver. The socket is the one of the upgrade request (`req.socket`), no private field of ws.
 * Usage: node dist/bench/servers/ws-corked.js --host 127.0.0.1 --port N
 */
import type { Socket } from 'node:net';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { announce, listenArgs } from './args';

const { host, port } = listenArgs();
const wss = new WebSocketServer({ host, port });
const socketOf = new Map<WebSocket, Socket>();
const corked = new Set<Socket>();
let flushing = false;

function uncorkAll(): void {
  flushing = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
}

wss.on('connection', (ws: WebSocket, req) => {
  socketOf.set(ws, req.socket);
  ws.on('message', (m: RawData, isBinary: boolean) => {
    for (const c of wss.clients) {
      if (c === ws) continue;
      const socket = socketOf.get(c);
      if (socket !== undefined && !corked.has(socket)) {
        socket.cork();
        corked.add(socket);
      }
      c.send(m as Buffer, { binary: isBinary });
    }
    if (!flushing) {
      flushing = true;
      setImmediate(uncorkAll);
    }
  });
  ws.on('close', () => socketOf.delete(ws));
  ws.on('error', () => ws.terminate());
});
wss.on('listening', () => announce('ws-corked', host, port));
