/**
 * WebSocket admission, before the upgrade: the path, the connection gate (TCP and WebSocket clients counted
 * together), the Origin allow list and the access filters decide on the HTTP upgrade request; a refusal is an
 * HTTP answer and never an upgrade. Real `ws` clients and raw sockets against real listeners.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import * as net from 'node:net';
import { WebSocketServer } from 'ws';
import { Multiplexer, type DenyReason } from '../lib';
import { websocket } from '../lib/ws';
import { delay, onTeardown, TestClient, waitFor } from './helpers/net';
import { gate } from './helpers/serve';
import { RawWsClient, startWsMux, WsTestClient, wsJoined } from './helpers/ws';

function denials(mux: Multiplexer<object>): DenyReason[] {
  const seen: DenyReason[] = [];
  mux.on('deny', (_client, reason) => seen.push(reason));
  return seen;
}

/** A raw connection that sends `text` and records what it gets back. */
async function rawRequest(port: number, text: string): Promise<{ socket: net.Socket; answer: () => string }> {
  const socket = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  onTeardown(() => {
    socket.destroy();
  });
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(text);
  return { socket, answer: () => Buffer.concat(chunks).toString('latin1') };
}

async function userServer(handler?: (request: IncomingMessage) => string): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    response.end(handler?.(request) ?? 'user page');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTeardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { server, port: (server.address() as net.AddressInfo).port };
}

describe('WebSocket admission', () => {
  it('runs the access filters on the upgrade request (client.request) and answers a denial with 403', async () => {
    const seen: string[] = [];
    const { mux, url } = await startWsMux({}, {}, (m) =>
      m.addAccessFilter((client) => {
        seen.push(`${client.transport} ${client.request?.url} ${client.request?.headers['x-token']}`);
        return client.request?.headers['x-token'] === 'good' || -1;
      }),
    );
    const denied = denials(mux);
    expect(await WsTestClient.refused(`${url}?room=1`, { headers: { 'x-token': 'bad' } })).toBe(403);
    const good = await WsTestClient.connect(`${url}?room=2`, { headers: { 'x-token': 'good' } });
    const client = await wsJoined(mux, good);
    expect(seen).toEqual(['ws /?room=1 bad', 'ws /?room=2 good']);
    expect(denied).toEqual(['access-filter']);
    expect(client.transport).toBe('ws');
    expect(client.socket.remotePort).toBe(good.localPort); // the upgraded socket
    expect(client.request?.headers.host).toBe(url.slice('ws://'.length, -1));
    expect(mux.stats().denials['access-filter']).toBe(1);
  });

  it('waits for an async access decision before upgrading; what the filter sends arrives after the upgrade', async () => {
    const decision = gate<boolean>();
    const { mux, url } = await startWsMux({ framing: 'line' }, {}, (m) =>
      m.addAccessFilter((client) => {
        client.send('welcome\n');
        return decision.promise;
      }),
    );
    const client = new WsTestClient(url);
    await delay(100);
    expect(client.opened).toBe(false);
    expect(mux.stats().connections).toBe(1);
    decision.open(true);
    await client.waitForText('welcome');
    expect(client.texts).toEqual(['welcome']);
  });

  it('counts TCP and WebSocket clients together against maxClients and refuses the next with 503', async () => {
    const { mux, port, url } = await startWsMux({ maxClients: 2 });
    const denied = denials(mux);
    await TestClient.connect(port);
    await WsTestClient.connect(url);
    await waitFor(() => mux.clients.size === 2, 'two clients');
    expect(await WsTestClient.refused(url)).toBe(503);
    const third = await TestClient.connect(port);
    await third.waitForClose();
    expect(denied).toEqual(['max-clients', 'max-clients']);
  });

  it('refuses past maxConnectionsPerAddress with 403, counting both transports', async () => {
    const { mux, port, url } = await startWsMux({ maxConnectionsPerAddress: 2 });
    const denied = denials(mux);
    await WsTestClient.connect(url);
    await TestClient.connect(port);
    await waitFor(() => mux.clients.size === 2, 'two clients');
    expect(await WsTestClient.refused(url)).toBe(403);
    expect(denied).toEqual(['max-per-address']);
  });

  it('answers 404 on another path without counting or upgrading it, and plain requests with 426 or 404', async () => {
    const { mux, wsPort, url } = await startWsMux({ maxClients: 1 }, { path: '/chat' });
    const denied = denials(mux);
    expect(await WsTestClient.refused(`ws://127.0.0.1:${wsPort}/other`)).toBe(404);
    expect(await WsTestClient.refused(`ws://127.0.0.1:${wsPort}/chat/x`)).toBe(404);
    const plain = await rawRequest(wsPort, 'GET /chat HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => plain.answer().includes('\r\n\r\n'), 'an answer');
    expect(plain.answer()).toMatch(/^HTTP\/1\.1 426 /);
    const elsewhere = await rawRequest(wsPort, 'GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => elsewhere.answer().includes('\r\n\r\n'), 'an answer');
    expect(elsewhere.answer()).toMatch(/^HTTP\/1\.1 404 /);
    await WsTestClient.connect(url); // the one slot was never taken by the others
    expect(denied).toEqual([]);
  });

  it('answers a malformed upgrade (no key, another version) with 400 before it reaches the access filters', async () => {
    const { mux, wsPort } = await startWsMux({}, {}, (m) => m.addAccessFilter(() => true));
    const calls = jest.fn(() => true);
    mux.addAccessFilter(calls);
    const noKey = await rawRequest(
      wsPort,
      'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    const oldVersion = await rawRequest(
      wsPort,
      'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 7\r\n\r\n',
    );
    await waitFor(() => noKey.answer().includes('\r\n\r\n') && oldVersion.answer().includes('\r\n\r\n'), 'answers');
    expect(noKey.answer()).toMatch(/^HTTP\/1\.1 400 /);
    expect(oldVersion.answer()).toMatch(/^HTTP\/1\.1 400 [^]*Sec-WebSocket-Version: 13, 8/);
    expect(calls).not.toHaveBeenCalled();
  });

  it('refuses a page of a foreign Origin with 403 (deny reason origin), and lets a request without Origin in', async () => {
    const { mux, url } = await startWsMux({}, { origins: ['https://chat.example.com', 'http://localhost:8080/'] });
    const denied = denials(mux);
    expect(await WsTestClient.refused(url, { origin: 'https://evil.example.com' })).toBe(403);
    expect(denied).toEqual(['origin']);
    await WsTestClient.connect(url, { origin: 'https://CHAT.example.com' });
    await WsTestClient.connect(url, { origin: 'http://localhost:8080' });
    const tool = await WsTestClient.connect(url); // no Origin header: not a browser page
    expect((await wsJoined(mux, tool)).request?.headers.origin).toBeUndefined();
    expect(denied).toEqual(['origin']);
  });

  it('times out a half-sent upgrade request on its own port and frees its gate slot', async () => {
    const { mux, url, wsPort } = await startWsMux({ maxClients: 1 }, { handshakeTimeout: 300 });
    const half = await rawRequest(wsPort, 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n');
    // The half-sent request holds the only slot: a complete one is refused meanwhile.
    expect(await WsTestClient.refused(url)).toBe(503);
    await waitFor(() => half.socket.destroyed || half.socket.readableEnded, 'the half-sent upgrade to be cut', 5000);
    await WsTestClient.connect(url);
    expect(mux.clients.size).toBe(1);
  });

  it('times out an access decision that never comes (408) and frees its slot', async () => {
    let hang = true;
    const { mux, url } = await startWsMux({ maxClients: 1 }, { handshakeTimeout: 300 }, (m) =>
      m.addAccessFilter(() => (hang ? new Promise<boolean>(() => undefined) : true)),
    );
    expect(await WsTestClient.refused(url)).toBe(408);
    await waitFor(() => mux.stats().connections === 0, 'the slot to be free');
    hang = false;
    await WsTestClient.connect(url);
  });

  it('frees the slot of a client that left while its access decision was pending (ws closes it silently)', async () => {
    const decision = gate<boolean>();
    const { mux, url } = await startWsMux({ maxClients: 1 }, {}, (m) => m.addAccessFilter(() => decision.promise));
    const leaving = new WsTestClient(url);
    await waitFor(() => mux.stats().connections === 1, 'the upgrade request');
    leaving.ws.terminate();
    await delay(50);
    decision.open(true);
    await waitFor(() => mux.stats().connections === 0, 'the slot to be free');
    await WsTestClient.connect(url);
  });
});

describe('WebSocket on a user server', () => {
  it('takes upgrades on its path only, leaves plain requests to the server, and detaches without closing it', async () => {
    const { server, port } = await userServer(() => 'user page');
    const mux = new Multiplexer({ debugLevel: 'critical', framing: 'line' });
    const address = await mux.listen(websocket({ server, path: '/chat' }));
    expect(address).toMatchObject({ port });
    const client = await WsTestClient.connect(`ws://127.0.0.1:${port}/chat`);
    expect((await wsJoined(mux, client)).transport).toBe('ws');
    expect(await WsTestClient.refused(`ws://127.0.0.1:${port}/other`)).toBe(404);
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(await page.text()).toBe('user page');
    await mux.destroy({ timeout: 200 });
    await client.waitForClose();
    expect(client.closeCode).toBe(1001);
    expect(server.listening).toBe(true);
    expect(server.listenerCount('upgrade')).toBe(0);
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('user page');
  });

  it('leaves other paths to another upgrade listener of the same server', async () => {
    const { server, port } = await userServer();
    const other = new WebSocketServer({ noServer: true, clientTracking: false });
    server.on('upgrade', (request: IncomingMessage, socket: net.Socket, head: Buffer) => {
      if (request.url !== '/other') return;
      other.handleUpgrade(request, socket, head, (ws) => ws.send('from the other one'));
    });
    const mux = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => mux.destroy({ timeout: 200 }));
    await mux.listen(websocket({ server, path: '/chat' }));
    const theirs = await WsTestClient.connect(`ws://127.0.0.1:${port}/other`);
    await theirs.waitForText('from the other one');
    await WsTestClient.connect(`ws://127.0.0.1:${port}/chat`);
    expect(mux.clients.size).toBe(1);
  });

  it('times out the admission phase on a user server too', async () => {
    const { server, port } = await userServer();
    const mux = new Multiplexer({ debugLevel: 'critical' });
    onTeardown(() => mux.destroy({ timeout: 200 }));
    mux.addAccessFilter(() => new Promise<boolean>(() => undefined));
    await mux.listen(websocket({ server, handshakeTimeout: 200 }));
    expect(await WsTestClient.refused(`ws://127.0.0.1:${port}/`)).toBe(408);
    await waitFor(() => mux.stats().connections === 0, 'the connection to be gone');
  });

  it('is reached through the raw wire too (a hand-made client gets a valid 101)', async () => {
    const { wsPort } = await startWsMux();
    const raw = await RawWsClient.upgrade(wsPort);
    expect(raw.status).toBe(101);
  });
});
