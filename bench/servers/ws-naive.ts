/**
 * The obvious `ws` broadcaster, a peer of the benchmark: every message is sent to every other client with
 * `ws.send`, which frames it anew for each receiver and writes it at once. permessage-deflate off (the ws
 * default on servers), no bounds. Frames keep their kind: text in, text out.
 * Usage: node dist/bench/servers/ws-naive.js --host 127.0.0.1 --port N
 */
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { announce, listenArgs } from './args';

const { host, port } = listenArgs();
const wss = new WebSocketServer({ host, port });

wss.on('connection', (ws: WebSocket) => {
  ws.on('message', (m: RawData, isBinary: boolean) => {
    for (const c of wss.clients) if (c !== ws) c.send(m as Buffer, { binary: isBinary });
  });
  ws.on('error', () => ws.terminate());
});
wss.on('listening', () => announce('ws-naive', host, port));
