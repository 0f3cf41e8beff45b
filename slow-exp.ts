import * as net from 'node:net';
import { Multiplexer } from './lib';
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
function readAt(socket: net.Socket, bps: number) {
  const start = Date.now(); let bytes = 0;
  socket.on('data', (c: Buffer) => { bytes += c.length; const due = start + (bytes / bps) * 1000; if (due > Date.now() + 1) { socket.pause(); setTimeout(() => socket.resume(), due - Date.now()); } });
  return () => bytes;
}
async function main() {
  const mux = new Multiplexer({ debugLevel: 'critical' });
  const t0 = Date.now();
  mux.on('limit', (c, k) => console.log(Date.now() - t0, 'limit', c.id, k));
  mux.on('exit', (c, r) => console.log(Date.now() - t0, 'exit', c.id, r));
  const { port } = await mux.listen({ port: 0, host: '127.0.0.1' });
  const readers = [0, 1, 2].map(() => net.connect(port, '127.0.0.1'));
  const got = readers.map((r) => readAt(r, 3e6));
  const sender = net.connect(port, '127.0.0.1');
  await delay(200);
  const hub = (mux as any).hub;
  const t = setInterval(() => {
    const flow = hub.flow;
    const st = [...hub.members].map((s: any) => `${s.id}:${(s.out.backlog/1e6).toFixed(2)}${s.out.congested ? 'C' : ''}${s.out.lagging ? 'L' : ''}${flow.holders.has(s) ? 'H' : ''} gap${s.out.typicalGap} since${Date.now()-s.out.progressAt}`).join(' ');
    console.log(Date.now() - t0, 'got', got.map((g) => (g() / 1e6).toFixed(1)).join(','), st, 'held', flow.held.size, 'ovl', flow.overloaded);
  }, 200);
  const block = Buffer.alloc(64 * 1024, 97); let sent = 0; const start = Date.now();
  while (sent < 18 * 1024 * 1024) { const ahead = start + (sent / 9e6) * 1000 - Date.now(); if (ahead > 0) await delay(ahead); sent += block.length; if (!sender.write(block)) await new Promise((r) => sender.once('drain', r)); }
  await delay(3000);
  clearInterval(t); for (const r of readers) r.destroy(); sender.destroy(); await mux.destroy({ timeout: 100 });
}
void main();
