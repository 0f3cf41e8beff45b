/**
 * WebSocket clients in the broadcast, with TCP clients in the same room: one WebSocket message is one
 * multiplexer message; line framing sends text frames without the terminator, raw framing binary frames;
 * limits, liveness, close codes, compression, wss. Real `ws` clients and real TCP clients.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { EXIT_REASONS, Multiplexer, type ExitReason } from '../lib';
import { CLOSE_CODES, websocket } from '../lib/ws';
import { delay, onTeardown, TestClient, waitFor } from './helpers/net';
import { RawWsClient, startWsMux, WsTestClient, wsJoined } from './helpers/ws';

const FIXTURES = join(__dirname, 'fixtures');
const TLS = { key: readFileSync(join(FIXTURES, 'test-key.pem')), cert: readFileSync(join(FIXTURES, 'test-cert.pem')) };

function exits(mux: Multiplexer<object>): ExitReason[] {
  const seen: ExitReason[] = [];
  mux.on('exit', (_client, reason) => seen.push(reason));
  return seen;
}

/** A line-framing room with one TCP client and two WebSocket clients, all joined. */
async function mixedRoom(options: Parameters<typeof startWsMux>[0] = {}) {
  const room = await startWsMux({ framing: 'line', ...options });
  const tcp = await TestClient.connect(room.port);
  const alice = await WsTestClient.connect(room.url);
  const bob = await WsTestClient.connect(room.url);
  await waitFor(() => room.mux.clients.size === 3, 'three clients');
  return { ...room, tcp, alice, bob };
}

describe('WebSocket messages in line framing', () => {
  it('gives WebSocket clients a TCP line as a text frame without its newline, and TCP clients a message with one', async () => {
    const { tcp, alice, bob } = await mixedRoom();
    await tcp.write('hello from nc\r\n');
    await alice.waitForText('hello from nc');
    await bob.waitForText('hello from nc');
    await alice.send('hello from a browser');
    await tcp.waitForText('hello from a browser\n');
    await bob.waitForText('hello from a browser');
    await delay(50);
    expect(tcp.text).toBe('hello from a browser\n'); // never its own line back
    expect(alice.texts).toEqual(['hello from nc']); // nor alice hers
    expect(bob.messages.every((message) => !message.binary)).toBe(true);
  });

  it('echoes to the sender with sendToOrigin', async () => {
    const { tcp, alice } = await mixedRoom({ sendToOrigin: true });
    await alice.send('me too');
    await alice.waitForText('me too');
    await tcp.write('and me\n');
    await tcp.waitForText('me too\nand me\n');
  });

  it('takes a trailing newline off and splits a message with newlines inside into lines', async () => {
    const { tcp, alice, bob } = await mixedRoom();
    await alice.send('one\r\n');
    await alice.send('two\nthree\r\nfour\n');
    await tcp.waitForText('one\ntwo\nthree\nfour\n');
    await bob.waitForMessages(4);
    expect(bob.texts).toEqual(['one', 'two', 'three', 'four']);
    await tcp.write('a\nb\n');
    await alice.waitForMessages(2);
    expect(alice.texts).toEqual(['a', 'b']);
  });

  it('sends U+FFFD for bytes of a TCP client that are not UTF-8, the same to every WebSocket client', async () => {
    const { tcp, alice, bob, port } = await mixedRoom();
    const other = await TestClient.connect(port);
    await waitFor(() => alice.messages.length === 0 && other.socket.readyState === 'open', 'ready');
    await delay(50);
    await tcp.write(
      Buffer.concat([
        Buffer.from('caf'),
        Buffer.from([0xc3]),
        Buffer.from(' ok '),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('\n'),
      ]),
    );
    await alice.waitForMessages(1);
    await bob.waitForMessages(1);
    expect(alice.messages[0].data.toString('utf8')).toBe('caf\ufffd ok \ufffd\ufffd');
    expect(alice.messages[0].data.equals(bob.messages[0].data)).toBe(true);
    expect(alice.messages[0].binary).toBe(false);
    // TCP clients get the bytes as they were sent.
    await other.waitForBytes(10);
    expect(other.data.equals(Buffer.from([0x63, 0x61, 0x66, 0xc3, 0x20, 0x6f, 0x6b, 0x20, 0xff, 0xfe, 0x0a]))).toBe(
      true,
    );
  });

  it('sends what server code sends (sendToAll, client.send) as text frames too', async () => {
    const { mux, alice, tcp } = await mixedRoom();
    mux.sendToAll('* notice\n');
    (await wsJoined(mux, alice)).send('just you\n');
    await alice.waitForMessages(2);
    expect(alice.texts).toEqual(['* notice', 'just you']);
    await tcp.waitForText('* notice\n');
  });

  it('runs data filters on WebSocket lines like on TCP lines', async () => {
    const room = await startWsMux({ framing: 'line' }, {}, (mux) =>
      mux.addFilter((line, client) => `${client.transport}: ${line.toString()}`),
    );
    const tcp = await TestClient.connect(room.port);
    const ws = await WsTestClient.connect(room.url);
    await waitFor(() => room.mux.clients.size === 2, 'two clients');
    await ws.send('hi');
    await tcp.waitForText('ws: hi\n');
    await tcp.write('yo\n');
    await ws.waitForText('tcp: yo');
  });
});

describe('WebSocket messages in raw framing', () => {
  it('sends binary frames with the payload as is, and takes text frames as their UTF-8 bytes', async () => {
    const room = await startWsMux({ framing: 'raw' });
    const tcp = await TestClient.connect(room.port);
    const ws = await WsTestClient.connect(room.url);
    const other = await WsTestClient.connect(room.url);
    await waitFor(() => room.mux.clients.size === 3, 'three clients');
    const bytes = Buffer.from([0, 1, 2, 0xff, 0x0a, 0x0d]);
    await ws.send(bytes, true);
    await tcp.waitForBytes(bytes.length);
    expect(tcp.data.equals(bytes)).toBe(true);
    await other.waitForMessages(1);
    expect(other.messages[0]).toEqual({ data: bytes, binary: true });
    await ws.send('é\n', false);
    await tcp.waitForBytes(bytes.length + 3);
    expect(tcp.data.subarray(bytes.length).equals(Buffer.from('é\n'))).toBe(true);
    await tcp.write(Buffer.from([0xfe, 0xff]));
    await ws.waitForMessages(1);
    expect(ws.messages[0]).toEqual({ data: Buffer.from([0xfe, 0xff]), binary: true });
  });
});

describe('WebSocket limits', () => {
  it('closes with 1009 on a message longer than maxMessageBytes (line-too-long), a line of the limit plus \\r\\n passes', async () => {
    const { mux, url, port } = await startWsMux({ framing: 'line', maxMessageBytes: 100 });
    const left = exits(mux);
    const tcp = await TestClient.connect(port);
    const ok = await WsTestClient.connect(url);
    await waitFor(() => mux.clients.size === 2, 'two clients');
    await ok.send(`${'a'.repeat(100)}\r\n`);
    await tcp.waitForText(`${'a'.repeat(100)}\n`);
    await ok.send('b'.repeat(102));
    await ok.waitForClose();
    expect(ok.closeCode).toBe(1009);
    await waitFor(() => left.length === 1, 'the exit');
    expect(left).toEqual(['line-too-long']);
    expect(tcp.text).not.toContain('bbb');
  });

  it('bounds raw messages by maxMessageBytes too', async () => {
    const { mux, url } = await startWsMux({ framing: 'raw', maxMessageBytes: 64 });
    const left = exits(mux);
    const ws = await WsTestClient.connect(url);
    await ws.send(Buffer.alloc(65), true);
    await ws.waitForClose();
    expect(ws.closeCode).toBe(1009);
    await waitFor(() => left.length === 1, 'the exit');
    expect(left).toEqual(['line-too-long']);
  });

  it('closes with 1007 on a text frame that is not UTF-8 (protocol-error)', async () => {
    const { mux, url } = await startWsMux({ framing: 'line' });
    const left = exits(mux);
    const ws = await WsTestClient.connect(url);
    await wsJoined(mux, ws);
    await ws.send(Buffer.from([0x61, 0xff, 0x62]), false);
    await ws.waitForClose();
    expect(ws.closeCode).toBe(1007);
    await waitFor(() => left.length === 1, 'the exit');
    expect(left).toEqual(['protocol-error']);
  });

  it("lets a client that misses its pong leave with 'ping-timeout', and keeps one that answers", async () => {
    const { mux, url } = await startWsMux({}, { pingInterval: 100 });
    const left = exits(mux);
    const deaf = await WsTestClient.connect(url, { autoPong: false });
    const alive = await WsTestClient.connect(url);
    await waitFor(() => left.length === 1, 'the deaf client to be cut', 5000);
    expect(left).toEqual(['ping-timeout']);
    await deaf.waitForClose();
    await delay(300);
    expect(alive.closed).toBe(false);
    expect(alive.pings).toBeGreaterThan(2);
  });

  it('applies the rate limit to WebSocket clients unchanged', async () => {
    const { mux, url, port } = await startWsMux({
      framing: 'line',
      maxMessagesPerSecond: 5,
      rateLimitAction: 'disconnect',
    });
    const left = exits(mux);
    const tcp = await TestClient.connect(port);
    const ws = await WsTestClient.connect(url);
    await waitFor(() => mux.clients.size === 2, 'two clients');
    for (let i = 0; i < 40; i += 1) void ws.send(`m${i}`);
    await ws.waitForClose();
    expect(ws.closeCode).toBe(CLOSE_CODES['rate-limit']);
    expect(ws.closeReason).toBe('rate-limit');
    await waitFor(() => left.length === 1, 'the exit');
    expect(left).toEqual(['rate-limit']);
    expect(tcp.text.split('\n').length).toBeLessThan(40);
  });
});

describe('WebSocket close codes', () => {
  it('sends the close code of the exit reason, with the reason as its text', async () => {
    const { mux, url } = await startWsMux({ framing: 'line', idleTimeout: 300 }, { pingInterval: 0 });
    const kicked = await WsTestClient.connect(url);
    (await wsJoined(mux, kicked)).disconnect();
    await kicked.waitForClose();
    expect([kicked.closeCode, kicked.closeReason]).toEqual([1008, 'kicked']);

    const idle = await WsTestClient.connect(url);
    await idle.waitForClose(3000);
    expect([idle.closeCode, idle.closeReason]).toEqual([1001, 'idle']);

    const custom = await WsTestClient.connect(url);
    (await wsJoined(mux, custom)).disconnect('message-timeout');
    await custom.waitForClose();
    expect([custom.closeCode, custom.closeReason]).toEqual([CLOSE_CODES['message-timeout'], 'message-timeout']);
  });

  it("sends 1001 'destroy' to every WebSocket client when the multiplexer shuts down, after what was queued", async () => {
    const { mux, url } = await startWsMux({ framing: 'line' });
    const clients = await Promise.all([WsTestClient.connect(url), WsTestClient.connect(url)]);
    await waitFor(() => mux.clients.size === 2, 'two clients');
    mux.sendToAll('last words\n');
    await mux.destroy({ timeout: 1000 });
    for (const client of clients) {
      await client.waitForClose();
      expect([client.closeCode, client.closeReason, client.texts]).toEqual([1001, 'destroy', ['last words']]);
    }
  });

  it("sees a client's close frame as eof, and its reset as reset", async () => {
    const { mux, url, wsPort } = await startWsMux();
    const left = exits(mux);
    const polite = await WsTestClient.connect(url);
    await wsJoined(mux, polite);
    polite.ws.close(1000, 'bye');
    await polite.waitForClose();
    expect(polite.closeCode).toBe(1000);
    await waitFor(() => left.length === 1, 'the first exit');
    const rude = await RawWsClient.upgrade(wsPort);
    await waitFor(() => mux.clients.size === 1, 'the second client');
    rude.socket.resetAndDestroy();
    await waitFor(() => left.length === 2, 'the second exit');
    expect(left).toEqual(['eof', 'reset']);
  });

  it('has a close code for every exit reason', () => {
    for (const code of Object.values(CLOSE_CODES)) expect(code).toBeGreaterThanOrEqual(1000);
    expect(Object.keys(CLOSE_CODES).sort()).toEqual([...EXIT_REASONS].sort());
  });
});

describe('WebSocket compression and TLS', () => {
  it('negotiates permessage-deflate when asked, and delivers through the ws.send fallback', async () => {
    const room = await startWsMux({ framing: 'line' }, { compression: true });
    const tcp = await TestClient.connect(room.port);
    const deflating = await WsTestClient.connect(room.url, { perMessageDeflate: true });
    const plain = await WsTestClient.connect(room.url);
    await waitFor(() => room.mux.clients.size === 3, 'three clients');
    expect(deflating.ws.extensions).toContain('permessage-deflate');
    expect(plain.ws.extensions).toBe('');
    const long = 'abc '.repeat(2000);
    for (let i = 0; i < 20; i += 1) await tcp.write(`${i} ${long}\nshort ${i}\n`);
    await deflating.waitForMessages(40);
    await plain.waitForMessages(40);
    expect(deflating.texts).toEqual(plain.texts);
    expect(deflating.texts[38]).toBe(`19 ${long}`);
    expect(deflating.texts[39]).toBe('short 19');
    await deflating.send(`back ${long}`);
    await tcp.waitForText(`back ${long}\n`);
  });

  it('is off by default: a client offering permessage-deflate gets none', async () => {
    const { url } = await startWsMux();
    const client = await WsTestClient.connect(url, { perMessageDeflate: true });
    expect(client.ws.extensions).toBe('');
  });

  it("serves wss:// on its own port with the multiplexer's TLS options, and on a user's https server", async () => {
    const mux = new Multiplexer({ debugLevel: 'critical', framing: 'line', tls: TLS });
    onTeardown(() => mux.destroy({ timeout: 200 }));
    const own = websocket({ port: 0, host: '127.0.0.1' });
    const address = (await mux.listen(own)) as AddressInfo;
    expect(own.kind).toBe('wss');
    const https = createHttpsServer(TLS);
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    onTeardown(() => new Promise<void>((resolve) => https.close(() => resolve())));
    await mux.listen(websocket({ server: https, path: '/chat' }));
    const httpsPort = (https.address() as AddressInfo).port;
    const a = await WsTestClient.connect(`wss://127.0.0.1:${address.port}/`, { rejectUnauthorized: false });
    const b = await WsTestClient.connect(`wss://127.0.0.1:${httpsPort}/chat`, { rejectUnauthorized: false });
    expect((await wsJoined(mux, a)).transport).toBe('wss');
    expect((await wsJoined(mux, b)).transport).toBe('wss');
    await a.send('secret');
    await b.waitForText('secret');
    // A plain ws:// client gets no HTTP answer from a wss port at all.
    expect(await WsTestClient.refused(`ws://127.0.0.1:${address.port}/`)).toBe(0);
  });

  it('can be plain on its own port even when the multiplexer has TLS (tls: false)', async () => {
    const mux = new Multiplexer({ debugLevel: 'critical', tls: TLS });
    onTeardown(() => mux.destroy({ timeout: 200 }));
    const address = (await mux.listen(websocket({ port: 0, host: '127.0.0.1', tls: false }))) as AddressInfo;
    const client = await WsTestClient.connect(`ws://127.0.0.1:${address.port}/`);
    expect((await wsJoined(mux, client)).transport).toBe('ws');
  });
});

describe('websocket() options', () => {
  it('rejects bad options with ERR_INVALID_OPTION', () => {
    let thrown: unknown = null;
    try {
      websocket({ path: 'chat' });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: 'ERR_INVALID_OPTION' });
    expect(() => websocket({ pingInterval: -1 })).toThrow(/pingInterval/);
    expect(() => websocket({ port: 70000 })).toThrow(/port/);
    expect(() => websocket({ origins: 'https://x' as unknown as string[] })).toThrow(/origins/);
  });

  it('reports its address, and EADDRINUSE for a taken port', async () => {
    const { mux, wsPort } = await startWsMux();
    expect(mux.addresses()).toHaveLength(2);
    const other = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => other.destroy({ timeout: 200 }));
    await expect(other.listen(websocket({ port: wsPort, host: '127.0.0.1' }))).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
  });
});
