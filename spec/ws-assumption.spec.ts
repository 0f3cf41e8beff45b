/**
 * What the WebSocket transport's fast path assumes of `ws` beyond its public API (checked against ws 8.23.0;
 * `ws` is a peer dependency `>=8.0.0 <9`, so a major upgrade is a deliberate act). When one of these fails
 * after an upgrade of `ws`, writeFrames() in lib/transport/websocket.ts must go (use its `ws.send` fallback
 * always) or be fixed before anything ships:
 *
 * A. With permessage-deflate off and no Blob sent, every frame ws writes goes whole to `socket.write` before
 *    the call returns, and ws holds no frame bytes of its own: the stream ends on a frame boundary between
 *    any two calls, so our whole frames interleave with ws's control frames.
 * B. ws writes to the very socket given to `handleUpgrade`, and only frames after the 101 response.
 * C. Once `readyState` leaves OPEN, nothing more may be written; ws updates it synchronously.
 * And the guard (`readyState === OPEN && bufferedAmount === socket.writableLength`) goes false whenever ws
 * holds frames of its own, which is the fallback's trigger.
 */
import { createServer, type IncomingMessage } from 'node:http';
import * as net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { frame, OPCODE_BINARY, OPCODE_TEXT } from '../lib/framing/websocket';
import { delay, onTeardown, waitFor } from './helpers/net';
import { parseFrames } from './helpers/ws-frames';

interface Upgraded {
  readonly ws: WebSocket;
  readonly socket: net.Socket;
  readonly request: IncomingMessage;
}

/** A plain http server on port 0 whose upgrades are handed to `onOpen` with the socket of the upgrade event. */
async function upgradeServer(
  onOpen: (upgraded: Upgraded) => void,
  perMessageDeflate = false,
): Promise<{ url: string; port: number }> {
  const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate });
  const sockets = new Set<net.Socket>();
  const server = createServer();
  server.on('upgrade', (request: IncomingMessage, socket: net.Socket, head: Buffer) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    wss.handleUpgrade(request, socket, head, (ws) => onOpen({ ws, socket, request }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTeardown(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as net.AddressInfo).port;
  return { url: `ws://127.0.0.1:${port}/`, port };
}

function client(url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}): WebSocket {
  const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
  ws.on('error', () => undefined); // what a test expects of it, it checks itself
  onTeardown(() => {
    ws.terminate();
  });
  return ws;
}

describe('the ws assumption of the WebSocket fast path', () => {
  it('writes whole frames synchronously to the socket of the upgrade event, and holds no bytes of its own', async () => {
    const seen: Record<string, number> = {};
    const failures: Error[] = [];
    let opened = false;
    const { url } = await upgradeServer(({ ws, socket, request }) => {
      try {
        // B: the socket we hold is the one ws writes to (and the request's own socket).
        expect(request.socket).toBe(socket);
        socket.cork();
        ws.send('abc');
        seen.afterText = socket.writableLength;
        seen.bufferedAfterText = ws.bufferedAmount;
        ws.ping();
        seen.afterPing = socket.writableLength;
        ws.send(Buffer.alloc(200), { binary: true });
        seen.afterBinary = socket.writableLength;
        seen.bufferedAfterBinary = ws.bufferedAmount;
        socket.uncork();
      } catch (error) {
        failures.push(error as Error);
      }
      opened = true;
    });
    client(url);
    await waitFor(() => opened, 'the server side to open');
    if (failures.length > 0) throw failures[0];
    await delay(20); // let the client take the frames before it is torn down
    // A: 2 + 3 bytes, then a 2-byte ping, then 4 + 200 bytes (16-bit length form), all in the socket at once.
    expect(seen).toEqual({
      afterText: 5,
      bufferedAfterText: 5,
      afterPing: 7,
      afterBinary: 7 + 4 + 200,
      bufferedAfterBinary: 7 + 4 + 200,
    });
  });

  it('holds frames of its own while compressing: the guard goes false, and extensions says why', async () => {
    let result: { guard: boolean; extensions: string; buffered: number; writable: number } | null = null;
    const { url } = await upgradeServer(({ ws, socket }) => {
      ws.send(Buffer.alloc(100, 'a'), { binary: false, compress: true });
      result = {
        guard: ws.readyState === WebSocket.OPEN && ws.bufferedAmount === socket.writableLength,
        extensions: ws.extensions,
        buffered: ws.bufferedAmount,
        writable: socket.writableLength,
      };
    }, true);
    client(url, { perMessageDeflate: true });
    await waitFor(() => result !== null, 'the server side to open');
    expect(result).toMatchObject({ guard: false, extensions: 'permessage-deflate' });
    expect(result!.buffered).toBeGreaterThan(result!.writable);
  });

  it('interleaves our pre-built frames with its own pings, pongs and sends without corrupting either', async () => {
    const TURNS = 60;
    const { url, port } = await upgradeServer(({ ws, socket }) => {
      let turn = 0;
      const timer = setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN) return clearInterval(timer);
        if (turn === TURNS) {
          clearInterval(timer);
          ws.close(1000, 'done');
          return;
        }
        // One turn: three of our frames in one write, with ws's own frames before and after.
        const ours = [0, 1, 2].map((i) => frame(OPCODE_TEXT, Buffer.from(`m${turn * 3 + i}`)));
        ws.ping();
        socket.write(Buffer.concat(ours));
        ws.send(`s${turn}`);
        socket.write(frame(OPCODE_BINARY, Buffer.alloc(130 + turn, turn)));
        turn += 1;
      }, 1);
    });
    // A `ws` client: checks every frame as ws itself would, and pings the server every 2 ms (auto-pong path).
    const texts: string[] = [];
    let binaries = 0;
    let pings = 0;
    let pongs = 0;
    const errors: Error[] = [];
    let closeCode = 0;
    const ws = client(url);
    ws.on('message', (data: Buffer, isBinary: boolean) => (isBinary ? (binaries += 1) : texts.push(data.toString())));
    ws.on('ping', () => (pings += 1));
    ws.on('pong', () => (pongs += 1));
    ws.on('error', (error) => errors.push(error));
    ws.on('close', (code) => (closeCode = code));
    await new Promise((resolve) => ws.once('open', resolve));
    const pinger = setInterval(() => ws.readyState === WebSocket.OPEN && ws.ping(), 2);
    onTeardown(() => clearInterval(pinger));
    // A second client read byte by byte by a hand parser: a malformed frame is reported with its offset.
    const raw = net.connect(port, '127.0.0.1');
    onTeardown(() => {
      raw.destroy();
    });
    const chunks: Buffer[] = [];
    raw.on('data', (chunk: Buffer) => chunks.push(chunk));
    raw.write(
      'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await waitFor(() => closeCode !== 0, 'the close handshake', 20_000);
    const rawFrames = (): ReturnType<typeof parseFrames> => {
      const bytes = Buffer.concat(chunks);
      const at = bytes.indexOf('\r\n\r\n');
      return at === -1 ? [] : parseFrames(bytes.subarray(at + 4)); // throws, with the offset, on a bad frame
    };
    await waitFor(() => rawFrames().some((f) => f.opcode === 0x8), 'the close frame on the raw client', 20_000);
    expect(errors).toEqual([]);
    expect(closeCode).toBe(1000);
    expect(texts.filter((text) => text.startsWith('m'))).toEqual(Array.from({ length: TURNS * 3 }, (_, i) => `m${i}`));
    expect(texts.filter((text) => text.startsWith('s'))).toEqual(Array.from({ length: TURNS }, (_, i) => `s${i}`));
    expect(binaries).toBe(TURNS);
    expect(pings).toBeGreaterThan(0);
    expect(pongs).toBeGreaterThan(0);
    expect(Buffer.concat(chunks).toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
    const frames = rawFrames();
    expect(frames.every((f) => f.fin && !f.masked)).toBe(true);
    expect(frames.filter((f) => f.opcode === OPCODE_TEXT && f.payload.toString().startsWith('m'))).toHaveLength(
      TURNS * 3,
    );
    expect(frames[frames.length - 1].opcode).toBe(0x8);
  });

  it('leaves OPEN synchronously when the close handshake begins, so the guard stops our writes at once', async () => {
    let states: { onClientClose: number; guardAfterOwnClose: boolean } | null = null;
    const { url } = await upgradeServer(({ ws, socket }) => {
      // A close frame from the client: ws answers it and is CLOSING before any later callback of ours runs.
      ws.once('close', () => undefined);
      socket.once('data', () => {
        setImmediate(() => {
          const onClientClose = ws.readyState;
          ws.close(1000);
          states = {
            onClientClose,
            guardAfterOwnClose: ws.readyState === WebSocket.OPEN && ws.bufferedAmount === socket.writableLength,
          };
        });
      });
    });
    const ws = client(url);
    await new Promise((resolve) => ws.once('open', resolve));
    ws.close(1000, 'bye');
    await waitFor(() => states !== null, 'the server to see the close frame');
    expect(states).toEqual({ onClientClose: WebSocket.CLOSING, guardAfterOwnClose: false });
  });

  it("builds the same frame headers as ws's own Sender.frame", () => {
    const sender = (WebSocket as unknown as { Sender: { frame(data: Buffer, options: object): Buffer[] } }).Sender;
    for (const length of [0, 1, 125, 126, 65535, 65536]) {
      for (const opcode of [OPCODE_TEXT, OPCODE_BINARY]) {
        const payload = Buffer.alloc(length, 0x61);
        const theirs = Buffer.concat(
          sender.frame(payload, { fin: true, opcode, mask: false, readOnly: false, rsv1: false }),
        );
        expect(frame(opcode, payload).equals(theirs)).toBe(true);
      }
    }
  });
});
