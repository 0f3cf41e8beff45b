import * as net from 'node:net';
import type { Client, DenyReason, ExitReason, LimitKind, Multiplexer } from '../lib';
import { connectAll, delay, startMux, TestClient, waitFor } from './helpers/net';
import { PatternStream } from './helpers/pattern';
import { runCli, startCli } from './helpers/process';
import {
  afterProbes,
  connectFrom,
  connectSocket,
  PatternReceiver,
  sendPattern,
  untilEveryoneHears,
} from './helpers/streams';

/** Records the events that say why a limit acted. */
function recorder(): {
  exits: Array<{ client: Client; reason: ExitReason }>;
  denials: DenyReason[];
  limits: LimitKind[];
  attach: (mux: Multiplexer) => void;
} {
  const exits: Array<{ client: Client; reason: ExitReason }> = [];
  const denials: DenyReason[] = [];
  const limits: LimitKind[] = [];
  return {
    exits,
    denials,
    limits,
    attach: (mux) => {
      mux.on('exit', (client, reason) => exits.push({ client, reason }));
      mux.on('deny', (_client, reason) => denials.push(reason));
      mux.on('limit', (_client, kind) => limits.push(kind));
    },
  };
}

describe('over-long lines in line framing (maxMessageBytes)', () => {
  const max = 1024;

  describe("lineOverflow: 'disconnect'", () => {
    it.each([
      ['in one chunk with its newline', (line: Buffer) => [line]],
      [
        'in many chunks',
        (line: Buffer) =>
          Array.from({ length: Math.ceil(line.length / 100) }, (_, i) => line.subarray(i * 100, i * 100 + 100)),
      ],
      ['without a newline at all', (line: Buffer) => [line.subarray(0, line.length - 1)]],
    ])(
      'tells the client and disconnects it with reason line-too-long, never broadcasting part of the line (%s)',
      async (_shape, pieces) => {
        const events = recorder();
        const { mux, port } = await startMux({ framing: 'line', maxMessageBytes: max }, events.attach);
        const [offender, receiver, other] = await connectAll(mux, port, 3);
        await offender.write('short line\n');
        await receiver.waitForText('short line\n');
        const long = Buffer.from(`${'x'.repeat(max + 1)}\n`);
        for (const piece of pieces(long)) {
          await offender.write(piece);
          await delay(1);
        }
        await offender.waitForClose();
        await other.write('after\n');
        await receiver.waitForText('after\n');
        expect(receiver.text).toBe('short line\nafter\n');
        expect(offender.text).toMatch(/^error: message longer than 1024 bytes; closing\n$/);
        expect(events.exits.map((exit) => exit.reason)).toEqual(['line-too-long']);
        expect(mux.stats().disconnects['line-too-long']).toBe(1);
      },
    );

    it('broadcasts nothing that the client sent after the over-long line, even in the same chunk', async () => {
      const events = recorder();
      const { mux, port } = await startMux({ framing: 'line', maxMessageBytes: max }, events.attach);
      const [offender, receiver] = await connectAll(mux, port, 2);
      await offender.write(`before\n${'x'.repeat(max + 1)}\nafter the long line\n`);
      await offender.waitForClose();
      await waitFor(() => events.exits.length === 1, 'the exit');
      await delay(50);
      expect(receiver.text).toBe('before\n');
      expect(events.exits.map((exit) => exit.reason)).toEqual(['line-too-long']);
    });

    it('lets a line of exactly maxMessageBytes through, in one chunk or split', async () => {
      const { mux, port } = await startMux({ framing: 'line', maxMessageBytes: max });
      const [sender, receiver] = await connectAll(mux, port, 2);
      const exact = `${'y'.repeat(max)}\n`;
      await sender.write(exact);
      await sender.write(exact.slice(0, 500));
      await delay(5);
      await sender.write(exact.slice(500));
      await receiver.waitForBytes(2 * exact.length);
      expect(receiver.text).toBe(exact + exact);
      expect(sender.closed).toBe(false);
    });
  });

  describe("lineOverflow: 'discard'", () => {
    it('skips the rest of the line, tells the client, reports a limit, and keeps the client', async () => {
      const events = recorder();
      const { mux, port } = await startMux(
        { framing: 'line', maxMessageBytes: max, lineOverflow: 'discard' },
        events.attach,
      );
      const [sender, receiver] = await connectAll(mux, port, 2);
      await sender.write('a\n');
      // Over-long in one chunk, then over-long across chunks with a newline only at the very end.
      await sender.write(`${'x'.repeat(3 * max)}\nb\n`);
      for (let i = 0; i < 10; i += 1) {
        await sender.write('z'.repeat(500));
        await delay(1);
      }
      await sender.write('zzz\nc\n');
      await receiver.waitForText('c\n');
      await delay(20);
      expect(receiver.text).toBe('a\nb\nc\n');
      expect(sender.text).toBe('error: message longer than 1024 bytes discarded\n'.repeat(2));
      expect(events.limits).toEqual(['line-too-long', 'line-too-long']);
      expect(events.exits).toEqual([]);
      expect(mux.stats().limits['line-too-long']).toBe(2);
      expect(sender.closed).toBe(false);
    });
  });

  it('applies from the CLI: --framing line --max-message-bytes (disconnect)', async () => {
    const cli = await startCli([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--framing',
      'line',
      '--max-message-bytes',
      '100',
    ]);
    const [offender, receiver] = await Promise.all([TestClient.connect(cli.port), TestClient.connect(cli.port)]);
    await untilEveryoneHears(offender, [receiver]);
    await offender.write(`${'n'.repeat(101)}\nnot sent\n`);
    await offender.waitForClose();
    expect(afterProbes(offender)).toBe('error: message longer than 100 bytes; closing\n');
    await delay(50);
    expect(afterProbes(receiver)).toBe('');
  });
});

describe('maxClients', () => {
  it('closes excess connections at once with reason max-clients, and admits again once a client left', async () => {
    const events = recorder();
    const { mux, port } = await startMux({ maxClients: 3 }, events.attach);
    const [alice, bob, carol] = await connectAll(mux, port, 3);
    const dave = await TestClient.connect(port);
    await dave.waitForClose(2_000);
    await dave.write('ignored').catch(() => undefined);
    await alice.write('to everyone');
    await bob.waitForText('to everyone');
    await carol.waitForText('to everyone');
    expect(dave.received).toBe(0);
    expect(events.denials).toEqual(['max-clients']);
    expect(mux.stats().denials['max-clients']).toBe(1);

    carol.end();
    await waitFor(() => mux.stats().connections === 2, 'carol to leave');
    const [erin] = await connectAll(mux, port, 1);
    await bob.write('hi erin');
    await erin.waitForText('hi erin');
    expect(mux.clients.size).toBe(3);
  });

  it('can be changed at run time with config()', async () => {
    const { mux, port } = await startMux();
    await connectAll(mux, port, 2);
    mux.config('maxClients', 2);
    const third = await TestClient.connect(port);
    await third.waitForClose(2_000);
    expect(mux.stats().denials['max-clients']).toBe(1);
  });

  it('applies from the CLI (--max-clients)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', '--max-clients', '2']);
    const [alice, bob] = await Promise.all([TestClient.connect(cli.port), TestClient.connect(cli.port)]);
    await untilEveryoneHears(alice, [bob]);
    const third = await TestClient.connect(cli.port);
    await third.waitForClose(2_000);
    await alice.write('still two\n');
    await bob.waitForText('still two\n');
    expect(third.received).toBe(0);
  });
});

describe('maxConnectionsPerAddress', () => {
  it('closes connections past the limit from one address with reason max-per-address; other addresses are not counted', async () => {
    const events = recorder();
    const { mux, port } = await startMux({ maxConnectionsPerAddress: 2 }, events.attach);
    const [first, second] = await connectAll(mux, port, 2);
    const third = await connectFrom(port, '127.0.0.1');
    await third.waitForClose(2_000);
    const elsewhere = await connectFrom(port, '127.0.0.2');
    await waitFor(() => mux.clients.size === 3, 'the client from 127.0.0.2 to join');
    await first.write('hello');
    await second.waitForText('hello');
    await elsewhere.waitForText('hello');
    expect(third.received).toBe(0);
    expect(events.denials).toEqual(['max-per-address']);

    second.end();
    await waitFor(() => mux.clients.size === 2, 'the second client to leave');
    const again = await connectFrom(port, '127.0.0.1');
    await waitFor(() => mux.clients.size === 3, 'a new client from 127.0.0.1 to join');
    expect(again.closed).toBe(false);
  });

  it('counts IPv4 clients of a dual-stack listener by their IPv4 address, and IPv6 ones apart (CLI)', async () => {
    const cli = await startCli(['--host', '::', '--port', '0', '--max-connections-per-address', '1']);
    const v4 = await connectFrom(cli.port, '127.0.0.1');
    const v6 = new TestClient(net.connect({ port: cli.port, host: '::1' }));
    await untilEveryoneHears(v4, [v6]);
    const secondV4 = await connectFrom(cli.port, '127.0.0.1');
    await secondV4.waitForClose(2_000);
    const secondV6 = new TestClient(net.connect({ port: cli.port, host: '::1' }));
    await secondV6.waitForClose(2_000);
    expect(v4.closed || v6.closed).toBe(false);
  });

  it('applies from the CLI (--max-connections-per-address)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', '--max-connections-per-address', '1']);
    const alice = await connectFrom(cli.port, '127.0.0.1');
    const bob = await connectFrom(cli.port, '127.0.0.2');
    await untilEveryoneHears(alice, [bob]);
    const second = await connectFrom(cli.port, '127.0.0.1');
    await second.waitForClose(2_000);
    expect(bob.closed).toBe(false);
  });
});

describe('idleTimeout', () => {
  it('disconnects a client after idleTimeout ms without traffic, with reason idle', async () => {
    const events = recorder();
    const { mux, port } = await startMux({ idleTimeout: 300 }, events.attach);
    const start = Date.now();
    const [idle] = await connectAll(mux, port, 1);
    await idle.waitForClose(5_000);
    const elapsed = Date.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(280);
    await waitFor(() => events.exits.length === 1, 'the exit');
    expect(events.exits.map((exit) => exit.reason)).toEqual(['idle']);
    expect(mux.stats().disconnects.idle).toBe(1);
  });

  it('keeps clients that send or receive, and applies a change made with config() to connected clients', async () => {
    const events = recorder();
    const { mux, port } = await startMux({ idleTimeout: 1_000 }, events.attach);
    const [talker, listener] = await connectAll(mux, port, 2);
    for (let i = 0; i < 15; i += 1) {
      await talker.write('tick\n');
      await delay(100);
    }
    expect(events.exits).toEqual([]);
    expect(listener.text).toBe('tick\n'.repeat(15));
    mux.config('idleTimeout', 200);
    await talker.waitForClose(5_000);
    await listener.waitForClose(5_000);
    // The client sees our FIN first; the server's side closes once the client's FIN is back.
    await waitFor(() => events.exits.length === 2, 'both exits');
    expect(events.exits.map((exit) => exit.reason)).toEqual(['idle', 'idle']);
  });

  it('applies from the CLI (--idle-timeout)', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', '--idle-timeout', '300']);
    const idle = await TestClient.connect(cli.port);
    await idle.waitForClose(5_000);
  });
});

describe('rate limits', () => {
  it('throttles a sender past maxBytesPerSecond: nothing is lost, the order is kept, a limit is reported', async () => {
    const events = recorder();
    const rate = 200_000;
    const { mux, port } = await startMux({ maxBytesPerSecond: rate }, events.attach);
    const pattern = new PatternStream();
    const receiver = await PatternReceiver.connect(port, pattern);
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 2, 'both to join');
    const total = 600_000;
    const start = Date.now();
    await sendPattern(sender, pattern, total);
    await receiver.waitForBytes(total, 20_000);
    const elapsed = Date.now() - start;
    // A full bucket (one second's worth) may pass at once, and one read more; the rest waits for tokens.
    expect(elapsed).toBeGreaterThanOrEqual(((total - rate - 65_536) / rate) * 1000 * 0.9);
    expect(events.limits).toContain('rate-limit');
    expect(mux.stats().limits['rate-limit']).toBeGreaterThanOrEqual(1);
    expect(events.exits).toEqual([]);
  });

  it('throttles a sender past maxMessagesPerSecond in line framing without losing or reordering lines', async () => {
    const events = recorder();
    const { mux, port } = await startMux({ framing: 'line', maxMessagesPerSecond: 50 }, events.attach);
    const [sender, receiver] = await connectAll(mux, port, 2);
    const lines = Array.from({ length: 150 }, (_, i) => `line ${i}\n`);
    const start = Date.now();
    for (const line of lines) {
      sender.socket.write(line);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await receiver.waitForBytes(lines.join('').length, 20_000);
    const elapsed = Date.now() - start;
    expect(receiver.text).toBe(lines.join(''));
    expect(elapsed).toBeGreaterThanOrEqual(1_000);
    expect(events.limits).toContain('rate-limit');
    expect(events.exits).toEqual([]);
  });

  it('holds a burst of lines that arrived in one chunk to maxMessagesPerSecond, without losing any', async () => {
    const { mux, port } = await startMux({ framing: 'line', maxMessagesPerSecond: 50 });
    const [sender, receiver] = await connectAll(mux, port, 2);
    const lines = Array.from({ length: 100 }, (_, i) => `burst ${i}\n`);
    const start = Date.now();
    await sender.write(lines.join(''));
    await delay(300);
    const early = receiver.text.split('\n').length - 1;
    const earlyAt = Date.now() - start;
    await receiver.waitForBytes(lines.join('').length, 10_000);
    expect(receiver.text).toBe(lines.join(''));
    // One second's allowance (50) at once, then 50 per second: far fewer than 100 in the first 300 ms.
    expect(early).toBeLessThanOrEqual(50 + Math.ceil((earlyAt / 1000) * 50) + 1);
  });

  it("disconnects a sender past the limit with reason rate-limit under rateLimitAction 'disconnect'", async () => {
    const events = recorder();
    const { mux, port } = await startMux(
      { framing: 'line', maxMessagesPerSecond: 5, rateLimitAction: 'disconnect' },
      events.attach,
    );
    const [sender, receiver] = await connectAll(mux, port, 2);
    const lines = Array.from({ length: 20 }, (_, i) => `line ${i}\n`);
    await sender.write(lines.join(''));
    await sender.waitForClose();
    await delay(50);
    const got = receiver.text.split('\n').slice(0, -1);
    // The burst allowance (one second's worth) passes; never a partial line; never the whole flood.
    expect(receiver.text.endsWith('\n')).toBe(true);
    expect(got).toEqual(lines.slice(0, got.length).map((line) => line.trimEnd()));
    expect(got.length).toBeGreaterThanOrEqual(5);
    expect(got.length).toBeLessThan(20);
    expect(events.exits.map((exit) => exit.reason)).toEqual(['rate-limit']);
    expect(mux.stats().disconnects['rate-limit']).toBe(1);
  });

  it('applies from the CLI (--max-bytes-per-second --rate-limit-action disconnect)', async () => {
    const cli = await startCli([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--max-bytes-per-second',
      '1000',
      '--rate-limit-action',
      'disconnect',
    ]);
    const [flooder, receiver] = await Promise.all([TestClient.connect(cli.port), TestClient.connect(cli.port)]);
    await untilEveryoneHears(receiver, [flooder]);
    await flooder.write(Buffer.alloc(10_000, 0x41)).catch(() => undefined);
    await flooder.waitForClose();
  });
});

describe('allow and deny lists on the CLI (--allow, --deny)', () => {
  async function admitted(port: number, from: string, witness: TestClient, talker: TestClient): Promise<boolean> {
    const client = await connectFrom(port, from);
    const closed = await waitFor(() => client.closed || client.ended, 'a denial', 500).then(
      () => true,
      () => false,
    );
    if (closed) return false;
    // Still open: it must also be part of the broadcast.
    await untilEveryoneHears(talker, [client, witness]);
    return true;
  }

  it('lets in only the --allow addresses and ranges, minus --deny', async () => {
    const cli = await startCli([
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--allow',
      '127.0.0.0/30,127.0.0.9',
      '--deny',
      '127.0.0.2',
    ]);
    const [talker, witness] = [await connectFrom(cli.port, '127.0.0.1'), await connectFrom(cli.port, '127.0.0.1')];
    expect(await admitted(cli.port, '127.0.0.3', witness, talker)).toBe(true);
    expect(await admitted(cli.port, '127.0.0.9', witness, talker)).toBe(true);
    expect(await admitted(cli.port, '127.0.0.2', witness, talker)).toBe(false);
    expect(await admitted(cli.port, '127.0.0.5', witness, talker)).toBe(false);
  });

  it('keeps out --deny addresses and lets in everyone else when there is no --allow', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0', '--deny', '127.0.0.2', '--deny', '127.0.1.0/24']);
    const [talker, witness] = [await connectFrom(cli.port, '127.0.0.1'), await connectFrom(cli.port, '127.0.0.1')];
    expect(await admitted(cli.port, '127.0.0.3', witness, talker)).toBe(true);
    expect(await admitted(cli.port, '127.0.0.2', witness, talker)).toBe(false);
    expect(await admitted(cli.port, '127.0.1.77', witness, talker)).toBe(false);
    const denied = await connectFrom(cli.port, '127.0.0.2');
    await denied.write('from a denied address\n').catch(() => undefined);
    await delay(100);
    expect(afterProbes(witness)).not.toContain('denied');
  });

  it('matches IPv6 addresses, and IPv4 clients of a dual-stack listener by their IPv4 address', async () => {
    const cli = await startCli(['--host', '::', '--port', '0', '--allow', '::1,127.0.0.1']);
    const v6 = new TestClient(net.connect({ port: cli.port, host: '::1' }));
    await waitFor(() => v6.socket.readyState === 'open' || v6.closed, 'the IPv6 client to connect');
    const v4 = await connectFrom(cli.port, '127.0.0.1');
    const other = await connectFrom(cli.port, '127.0.0.2');
    await other.waitForClose(2_000);
    await untilEveryoneHears(v4, [v6]);
    expect(v6.closed).toBe(false);
  });

  it('rejects a malformed entry with exit code 2 and a message naming it', async () => {
    const bad = runCli(['--port', '0', '--allow', '10.0.0.0/33']);
    expect(await bad.exited).toBe(2);
    expect(bad.stderr()).toContain('10.0.0.0/33');
    const worse = runCli(['--port', '0', '--deny', 'not-an-address']);
    expect(await worse.exited).toBe(2);
    expect(worse.stderr()).toContain('not-an-address');
  });
});
