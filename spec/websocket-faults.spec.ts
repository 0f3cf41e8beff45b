/**
 * WebSocket clients that misbehave: one that stops reading, malformed and oversize frames, floods of
 * upgrades, resets in the middle of a frame. Hand-made clients on raw sockets next to healthy `ws` and TCP
 * clients, which must not notice.
 */
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { ExitReason, Multiplexer } from '../lib';
import { delay, onTeardown, TestClient, waitFor } from './helpers/net';
import { handFrame, RawWsClient, startWsMux, WsTestClient } from './helpers/ws';

const TEXT = 0x1;
const BINARY = 0x2;
const CONTINUATION = 0x0;
const PING = 0x9;

function exits(mux: Multiplexer<object>): ExitReason[] {
  const seen: ExitReason[] = [];
  mux.on('exit', (_client, reason) => seen.push(reason));
  return seen;
}

describe('a WebSocket client that stops reading', () => {
  it('is cut as a slow consumer while the others get every message in order', async () => {
    const { mux, port, url, wsPort } = await startWsMux({
      framing: 'line',
      maxQueuedBytes: 256 * 1024,
      highWaterMark: 64 * 1024,
      stallTimeout: 100,
    });
    const left = exits(mux);
    const sender = await TestClient.connect(port);
    const healthy = await WsTestClient.connect(url);
    const stalled = await RawWsClient.upgrade(wsPort);
    await waitFor(() => mux.clients.size === 3, 'three clients');
    stalled.socket.pause(); // reads nothing more: the kernel buffers fill, then the server's queue
    const line = 'x'.repeat(16 * 1024);
    const count = 2000; // 32 MiB: far past what the kernel buffers of the stalled client and maxQueuedBytes hold
    for (let i = 0; i < count; i += 1) {
      if (!sender.socket.write(`${i} ${line}\n`)) await new Promise((resolve) => sender.socket.once('drain', resolve));
    }
    await healthy.waitForMessages(count, 30_000);
    expect(healthy.texts.map((text) => Number(text.slice(0, text.indexOf(' '))))).toEqual(
      Array.from({ length: count }, (_, i) => i),
    );
    await waitFor(() => left.includes('slow-consumer'), 'the stalled client to be cut', 10_000);
    expect(left).toEqual(['slow-consumer']);
    expect(healthy.closed).toBe(false);
  });

  it('under drop-newest stays, with whole messages dropped, and still gets whole frames', async () => {
    const { mux, port, url, wsPort } = await startWsMux({
      framing: 'line',
      maxQueuedBytes: 128 * 1024,
      highWaterMark: 32 * 1024,
      stallTimeout: 50,
      slowConsumer: 'drop-newest',
      sendTimeout: 0,
    });
    const sender = await TestClient.connect(port);
    const healthy = await WsTestClient.connect(url);
    const stalled = await RawWsClient.upgrade(wsPort);
    await waitFor(() => mux.clients.size === 3, 'three clients');
    stalled.socket.pause();
    const count = 2000;
    for (let i = 0; i < count; i += 1) {
      if (!sender.socket.write(`${i} ${'y'.repeat(16 * 1024)}\n`))
        await new Promise((resolve) => sender.socket.once('drain', resolve));
    }
    await healthy.waitForMessages(count, 30_000);
    await waitFor(() => mux.stats().drops > 0, 'drops');
    stalled.socket.resume();
    await waitFor(() => mux.stats().queuedBytes === 0, 'the stalled client to drain', 10_000);
    await delay(100);
    // What it got is whole frames of whole lines, in order, with a gap where messages were dropped.
    const numbers = stalled
      .frames()
      .filter((frame) => frame.opcode === TEXT)
      .map((frame) => frame.payload.toString())
      .map((text) => {
        expect(text).toMatch(/^\d+ y{16384}$/);
        return Number(text.slice(0, text.indexOf(' ')));
      });
    expect(numbers.length).toBeLessThan(count);
    expect([...numbers].sort((a, b) => a - b)).toEqual(numbers);
    expect(stalled.closed).toBe(false);
  });
});

describe('malformed WebSocket frames', () => {
  const cases: [string, number, Buffer][] = [
    ['an unmasked client frame', 1002, handFrame(TEXT, Buffer.from('hi'), { mask: false })],
    ['RSV1 set without an extension', 1002, handFrame(TEXT, Buffer.from('hi'), { rsv: 4 })],
    ['a reserved opcode', 1002, handFrame(0x3, Buffer.from('hi'))],
    ['a fragmented ping', 1002, handFrame(PING, Buffer.from('p'), { fin: false })],
    ['a ping longer than 125 bytes', 1002, handFrame(PING, Buffer.alloc(126))],
    ['a continuation with nothing to continue', 1002, handFrame(CONTINUATION, Buffer.from('x'))],
    ['a close frame with an invalid code', 1002, handFrame(0x8, Buffer.from([0x03, 0xe7]))],
  ];

  it.each(cases)('closes on %s with %d (protocol-error), and the room goes on', async (_name, code, bytes) => {
    const { mux, port, url, wsPort } = await startWsMux({ framing: 'line' });
    const left = exits(mux);
    const tcp = await TestClient.connect(port);
    const healthy = await WsTestClient.connect(url);
    const bad = await RawWsClient.upgrade(wsPort);
    await waitFor(() => mux.clients.size === 3, 'three clients');
    await bad.write(bytes);
    await bad.waitForClose();
    expect(bad.closeCode()).toBe(code);
    await waitFor(() => left.length === 1, 'the exit');
    expect(left).toEqual(['protocol-error']);
    await tcp.write('still here\n');
    await healthy.waitForText('still here');
    await healthy.send('me too');
    await tcp.waitForText('me too\n');
  });

  it('closes with 1009 on a frame header announcing more than maxMessageBytes, without waiting for the payload', async () => {
    const { mux, wsPort } = await startWsMux({ framing: 'raw', maxMessageBytes: 1024 });
    const left = exits(mux);
    const bad = await RawWsClient.upgrade(wsPort);
    await waitFor(() => mux.clients.size === 1, 'the client');
    await bad.write(handFrame(BINARY, Buffer.alloc(0), { length: 2 ** 40 }).subarray(0, 14));
    await bad.waitForClose();
    expect(bad.closeCode()).toBe(1009);
    await waitFor(() => left.length === 1, 'the exit');
    expect(left).toEqual(['line-too-long']);
    expect(mux.stats().heldBytes).toBe(0);
  });

  it('closes with 1009 on a fragmented message whose fragments add up past the limit', async () => {
    const { mux, wsPort } = await startWsMux({ framing: 'raw', maxMessageBytes: 1000 });
    const left = exits(mux);
    const bad = await RawWsClient.upgrade(wsPort);
    await waitFor(() => mux.clients.size === 1, 'the client');
    await bad.write(handFrame(BINARY, Buffer.alloc(600), { fin: false }));
    await bad.write(handFrame(CONTINUATION, Buffer.alloc(600)));
    await bad.waitForClose();
    expect(bad.closeCode()).toBe(1009);
    await waitFor(() => left.length === 1, 'the exit');
    expect(left).toEqual(['line-too-long']);
  });

  it('delivers frames that came in the same packet as the upgrade request', async () => {
    const { mux, port, wsPort } = await startWsMux({ framing: 'line' });
    const tcp = await TestClient.connect(port);
    await waitFor(() => mux.clients.size === 1, 'the TCP client');
    const socket = net.connect(wsPort, '127.0.0.1');
    socket.on('error', () => undefined);
    onTeardown(() => {
      socket.destroy();
    });
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      Buffer.concat([
        Buffer.from(
          'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
        handFrame(TEXT, Buffer.from('early bird')),
      ]),
    );
    await tcp.waitForText('early bird\n');
  });
});

describe('floods and resets', () => {
  it('counts a flood of idle connections to its own port in the gate, and recovers once they are gone', async () => {
    const { mux, url, wsPort } = await startWsMux({ maxClients: 20 }, { handshakeTimeout: 2000 });
    const flood: net.Socket[] = [];
    for (let i = 0; i < 60; i += 1) {
      const socket = net.connect(wsPort, '127.0.0.1');
      socket.on('error', () => undefined);
      flood.push(socket);
    }
    onTeardown(() => {
      for (const socket of flood) socket.destroy();
    });
    await Promise.all(flood.map((socket) => new Promise((resolve) => socket.once('connect', resolve))));
    await delay(100);
    // Every slot is held by a connection that never sent a request: a real client is refused.
    expect(await WsTestClient.refused(url)).toBe(503);
    expect(mux.stats().denials['max-clients']).toBe(1);
    for (const socket of flood) socket.destroy();
    await delay(100);
    await WsTestClient.connect(url);
    expect(mux.clients.size).toBe(1);
  });

  it('upgrades exactly maxClients of a burst of complete upgrade requests and answers the rest 503', async () => {
    const { mux, url } = await startWsMux({ maxClients: 25 });
    const burst = Array.from({ length: 80 }, () => new WsTestClient(url));
    await waitFor(() => burst.every((client) => client.opened || client.closed), 'every answer', 20_000);
    expect(burst.filter((client) => client.opened)).toHaveLength(25);
    expect(burst.filter((client) => client.status === 503)).toHaveLength(55);
    expect(mux.stats().denials['max-clients']).toBe(55);
    for (const client of burst) client.ws.terminate();
    await waitFor(() => mux.stats().connections === 0, 'every connection to be gone', 10_000);
  });

  it('drops a message cut by a reset in the middle of its frame, and forgets the client', async () => {
    const { mux, port, url, wsPort } = await startWsMux({ framing: 'line' });
    const left = exits(mux);
    const tcp = await TestClient.connect(port);
    const healthy = await WsTestClient.connect(url);
    const raw = await RawWsClient.upgrade(wsPort);
    await waitFor(() => mux.clients.size === 3, 'three clients');
    const frame = handFrame(TEXT, Buffer.from('never whole '.repeat(100)));
    await raw.write(frame.subarray(0, frame.length / 2));
    await delay(50);
    raw.socket.resetAndDestroy();
    await waitFor(() => left.length === 1, 'the exit');
    expect(left).toEqual(['reset']);
    await healthy.send('after');
    await tcp.waitForText('after\n');
    expect(tcp.text).not.toContain('never whole');
    expect(healthy.texts).toEqual([]);
    await waitFor(() => mux.stats().connections === 2, 'the reset client to be gone');
  });

  it('frees the slot of a client reset during its upgrade', async () => {
    const { mux, url, wsPort } = await startWsMux({ maxClients: 1 }, {}, (m) =>
      m.addAccessFilter(() => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 200))),
    );
    const socket = net.connect(wsPort, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    await waitFor(() => mux.stats().connections === 1, 'the upgrade request');
    socket.resetAndDestroy();
    await waitFor(() => mux.stats().connections === 0, 'the slot to be free');
    await delay(300); // the access decision comes after the client left: nothing to upgrade
    await WsTestClient.connect(url);
    expect(mux.clients.size).toBe(1);
  });
});
