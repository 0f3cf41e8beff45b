import type { ExitReason } from '../lib';
import { connectAll, delay, startMux, TestClient, waitFor } from './helpers/net';

const MiB = 1024 * 1024;

describe('a data filter that returns something other than data', () => {
  it('counts as a failed filter: the data passes unchanged and the server keeps running', async () => {
    const errors: Error[] = [];
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter(() => 42 as unknown as string);
      m.on('error', (error) => errors.push(error));
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('one\ntwo\n');
    await bob.waitForText('one\ntwo\n');
    expect(errors.map((error) => error.message)).toEqual([
      expect.stringContaining('a number'),
      expect.stringContaining('a number'),
    ]);
    expect(mux.stats().filterErrors).toBe(2);
  });
});

describe('exit hooks of a client whose last messages wait for an async filter', () => {
  it('run after those messages are broadcast', async () => {
    const order: string[] = [];
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter(async (line) => {
        await delay(20);
        return line;
      });
      m.on('data', (message) => order.push(`data ${message.toString().trim()}`));
      m.addExitFilter((_client, reason) => order.push(`exitFilter ${reason}`));
      m.on('exit', (_client, reason: ExitReason) => order.push(`exit ${reason}`));
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    alice.socket.end('one\ntwo\n');
    await bob.waitForText('one\ntwo\n');
    await waitFor(() => order.length === 4, 'the exit');
    expect(order).toEqual(['data one', 'data two', 'exitFilter eof', 'exit eof']);
  });
});

describe('a client the server disconnects while its messages wait for an async filter', () => {
  it('gets none of the waiting messages broadcast', async () => {
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter(async (line, client) => {
        await delay(10);
        if (line.toString() === 'BAD') client.disconnect();
        return line;
      });
    });
    const [alice, bob] = await connectAll(mux, port, 2);
    await alice.write('ok\nBAD\nspam1\nspam2\n');
    await alice.waitForClose();
    await delay(50);
    expect(bob.text).toBe('ok\n');
    expect(mux.stats().messagesIn).toBe(1);
  });
});

describe('readers that never read, outnumbering the healthy ones', () => {
  it('cannot freeze the broadcast: they are found stalled and cut', async () => {
    const { mux, port } = await startMux({ stallTimeout: 100, highWaterMark: 256 * 1024, maxQueuedBytes: 2 * MiB });
    const stalled = await Promise.all([0, 1, 2].map(() => TestClient.connect(port)));
    for (const client of stalled) client.socket.pause();
    const [healthy, sender] = await connectAll(mux, port, 2);
    await waitFor(() => mux.clients.size === 5, 'everyone to join');
    const total = 32 * MiB;
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (let sent = 0; sent < total; sent += chunk.length) {
      if (!sender.socket.write(chunk)) await new Promise((resolve) => sender.socket.once('drain', resolve));
    }
    await healthy.waitForBytes(total, 30_000);
    await waitFor(() => mux.stats().disconnects['slow-consumer'] === 3, 'the stalled readers to be cut', 10_000);
  }, 40_000);
});
