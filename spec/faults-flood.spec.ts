import type { Client } from '../lib';
import { delay, startMux, waitFor } from './helpers/net';
import { expectWhole, fdCount, floodPeer, RssSampler, startCli } from './helpers/process';
import { connectSocket } from './helpers/streams';

const MiB = 1024 * 1024;

describe('a stalled reader under a 256 MiB flood', () => {
  it('disconnects it (default policy) while 10 healthy receivers get every byte in order and the CLI stays below 256 MiB RSS', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0']);
    const fdsIdle = fdCount(cli.pid);
    const rss = new RssSampler(cli.pid, 20);
    const peer = floodPeer(cli.port, {});
    const flooded = await peer.next('flooded', 150_000);
    const peak = rss.stop();
    console.log(
      `flood: ${flooded.sent / MiB} MiB to 10 receivers in ${flooded.floodMs} ms; CLI peak RSS ${(peak / MiB).toFixed(1)} MiB (${rss.samples} samples)`,
    );

    expect(flooded.timedOut).toBe(false);
    expect(flooded.sent).toBe(256 * MiB);
    expectWhole(flooded.healthy, 256 * MiB);
    expect(peak).toBeLessThan(256 * MiB);

    peer.send({ cmd: 'resume-stalled', settleMs: 5_000, timeoutMs: 10_000 });
    const [stalled] = (await peer.next('stalled', 15_000)).stalled;
    expect(stalled.closed).toBe(true);
    expect(stalled.received).toBeLessThan(256 * MiB);
    expect(stalled.errorAt).toBeNull(); // what it got before being cut off is a faithful prefix
    expect(cli.stderr()).toMatch(/slow consumer/);

    peer.send({ cmd: 'exit' });
    await peer.exited;
    await waitFor(
      () => fdCount(cli.pid) <= fdsIdle,
      `CLI descriptors back to ${fdsIdle} (have ${fdCount(cli.pid)})`,
      10_000,
    );
  }, 180_000);

  it('stays below 256 MiB RSS when the flood is made of tiny lines (line framing, CLI)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', '--framing', 'line']);
    // 2-byte lines !\n "\n ... ~\n, repeated: a period of 188 bytes, written 348 periods (65,424 bytes) at a time.
    const period = Buffer.from(
      Array.from({ length: 94 * 348 }, (_, i) => `${String.fromCharCode(0x21 + (i % 94))}\n`).join(''),
    );
    const healthy = await Promise.all([connectSocket(cli.port), connectSocket(cli.port)]);
    const checked = healthy.map(() => ({ offset: 0, errorAt: -1 }));
    healthy.forEach((socket, i) =>
      socket.on('data', (chunk: Buffer) => {
        const state = checked[i];
        for (let at = 0; at < chunk.length && state.errorAt < 0;) {
          const inner = state.offset % period.length;
          const take = Math.min(chunk.length - at, period.length - inner);
          if (chunk.compare(period, inner, inner + take, at, at + take) !== 0) state.errorAt = state.offset;
          at += take;
          state.offset += take;
        }
      }),
    );
    const stalled = await connectSocket(cli.port);
    const sender = await connectSocket(cli.port);
    await delay(100); // joins are not observable on the CLI; the sender's first bytes must find everyone in
    stalled.pause();
    const rss = new RssSampler(cli.pid, 20);
    const total = 24 * MiB - ((24 * MiB) % period.length);
    for (let sent = 0; sent < total; sent += period.length) {
      if (!sender.write(period)) await new Promise((resolve) => sender.once('drain', resolve));
    }
    await waitFor(
      () => checked.every((state) => state.offset >= total || state.errorAt >= 0),
      'the healthy receivers to get everything',
      90_000,
    );
    const peak = rss.stop();
    console.log(
      `tiny-line flood: ${(total / MiB).toFixed(1)} MiB of 2-byte lines; CLI peak RSS ${(peak / MiB).toFixed(1)} MiB`,
    );
    expect(checked).toEqual(healthy.map(() => ({ offset: total, errorAt: -1 })));
    expect(peak).toBeLessThan(256 * MiB);
    stalled.resume();
    await waitFor(() => stalled.destroyed, 'the stalled reader to be disconnected', 10_000);
  }, 120_000);

  it.each(['drop-newest', 'drop-oldest'] as const)(
    'keeps it connected under %s, counts the drops, and it gets new messages once it reads again',
    async (policy) => {
      const limits: Array<{ port: number; kind: string }> = [];
      const exits: string[] = [];
      const { mux, port } = await startMux({ slowConsumer: policy }, (m) => {
        m.on('limit', (client, kind) => limits.push({ port: client.port, kind }));
        m.on('exit', (_client, reason) => exits.push(reason));
      });
      const total = 256 * MiB;
      const peer = floodPeer(port, { totalBytes: total });
      const synced = await peer.next('synced', 20_000);
      const stalledClient = [...mux.clients].find((client: Client) => client.port === synced.stalledPorts[0]);
      expect(stalledClient).toBeDefined();
      let maxStalledQueue = 0;
      const sampler = setInterval(() => {
        maxStalledQueue = Math.max(maxStalledQueue, stalledClient?.queuedBytes ?? 0);
      }, 10);
      const flooded = await peer.next('flooded', 120_000);
      clearInterval(sampler);

      expect(flooded.timedOut).toBe(false);
      expectWhole(flooded.healthy, total);
      const stats = mux.stats();
      expect(stats.drops).toBeGreaterThan(0);
      expect(stalledClient?.drops).toBe(stats.drops);
      expect(stats.limits['slow-consumer']).toBeGreaterThanOrEqual(1);
      // Senders first wait for it (flow control) until stallTimeout, then it lags, then its queue overflows.
      // (A healthy receiver that a loaded machine put behind for a moment may lag too: only the stalled one's count.)
      const own = limits.filter((limit) => limit.port === synced.stalledPorts[0]).map((limit) => limit.kind);
      expect(own.slice(0, 2)).toEqual(['lagging', 'slow-consumer']);
      expect(stats.disconnects['slow-consumer']).toBe(0);
      expect(exits).toEqual([]);
      expect(stalledClient?.active).toBe(true);
      expect(maxStalledQueue).toBeLessThanOrEqual(mux.config('maxQueuedBytes'));

      peer.send({ cmd: 'resume-stalled', settleMs: 500, timeoutMs: 15_000 });
      const [stalled] = (await peer.next('stalled', 20_000)).stalled;
      expect(stalled.closed).toBe(false);
      expect(stalled.received).toBeLessThan(total);
      await waitFor(() => mux.stats().queuedBytes === 0, 'queues to drain', 10_000);
      await delay(50);
      peer.send({ cmd: 'probe', timeoutMs: 10_000 });
      const probed = await peer.next('probed', 15_000);
      expect(probed.stalled).toEqual([true]);
      expect(probed.healthy).toEqual(Array(10).fill(true));
      peer.send({ cmd: 'exit' });
      await peer.exited;
    },
    120_000,
  );
});
