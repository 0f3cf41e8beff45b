import * as net from 'node:net';
import { FaultProxy } from './helpers/fault-proxy';
import { delay, onTeardown, TestClient, waitFor } from './helpers/net';

/** An echo server on an ephemeral port, closed after the test. */
async function echoServer(): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTeardown(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as net.AddressInfo).port;
}

describe('FaultProxy', () => {
  it('forwards both ways and counts the bytes', async () => {
    const proxy = await FaultProxy.start(await echoServer());
    const client = await TestClient.connect(proxy.port);
    await client.write('hello');
    await client.waitForText('hello');
    expect(proxy.bytesUp).toBe(5);
    expect(proxy.bytesDown).toBe(5);
    expect(proxy.open).toBe(1);
  });

  it('cut() resets open connections and refuses new ones until heal()', async () => {
    const proxy = await FaultProxy.start(await echoServer());
    const client = await TestClient.connect(proxy.port);
    proxy.cut();
    await client.waitForClose();
    expect(client.error).toMatchObject({ code: 'ECONNRESET' });
    const refused = net.connect({ port: proxy.port, host: '127.0.0.1' });
    const error = await new Promise<unknown>((resolve) => refused.once('error', resolve));
    expect(error).toMatchObject({ code: 'ECONNRESET' });
    proxy.heal();
    const again = await TestClient.connect(proxy.port);
    await again.write('back');
    await again.waitForText('back');
  });

  it('blackhole() reads but forwards nothing, in either direction', async () => {
    const proxy = await FaultProxy.start(await echoServer());
    const client = await TestClient.connect(proxy.port);
    proxy.blackhole();
    await client.write('into the void');
    await waitFor(() => proxy.bytesUp === 13, 'the proxy to read');
    await delay(100);
    expect(client.received).toBe(0);
    expect(client.closed).toBe(false);
    proxy.heal();
    await client.write('x');
    await client.waitForText('x');
    expect(client.text).toBe('x');
  });

  it('delay(ms) holds every chunk at least that long', async () => {
    const proxy = await FaultProxy.start(await echoServer());
    const client = await TestClient.connect(proxy.port);
    proxy.delay(300);
    const start = Date.now();
    await client.write('later');
    await client.waitForText('later');
    // Out and back: held twice. A busy machine only makes it later.
    expect(Date.now() - start).toBeGreaterThanOrEqual(590);
  });

  it('throttle(bytesPerSecond) forwards no faster than asked', async () => {
    const proxy = await FaultProxy.start(await echoServer());
    const client = await TestClient.connect(proxy.port);
    proxy.throttle(20_000);
    const start = Date.now();
    await client.write(Buffer.alloc(20_000, 0x62));
    await client.waitForBytes(20_000, 20_000);
    // 40,000 bytes through the proxy (out and back) at 20,000 B/s, less the tenth of a second it may save up.
    expect(Date.now() - start).toBeGreaterThanOrEqual(1800);
  });
});
