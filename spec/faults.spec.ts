import * as net from 'node:net';
import type { Client, ExitReason } from '../lib';
import type { HostileCommand, HostileReport } from './helpers/hostile-server';
import { connectAll, delay, startMux, waitFor } from './helpers/net';
import { PatternStream } from './helpers/pattern';
import { fdCount, Peer, startCli } from './helpers/process';
import {
  closed,
  connectFrom,
  connectSocket,
  PatternReceiver,
  randomBytes,
  sendPattern,
  untilEveryoneHears,
} from './helpers/streams';

const MiB = 1024 * 1024;
const ignore = (): void => undefined;

/** The server-side client whose peer has local port `port`. */
function serverSide(clients: Iterable<Client>, port: number | undefined): Client | undefined {
  for (const client of clients) if (client.port === port) return client;
  return undefined;
}

describe('a reset mid-broadcast', () => {
  it('does not stop delivery to the other receivers, whether the reset client was reading or had a backlog', async () => {
    const exits = new Map<number, ExitReason>();
    const { mux, port } = await startMux({ stallTimeout: 20_000, maxQueuedBytes: 256 * MiB }, (m) =>
      m.on('exit', (client, reason) => exits.set(client.port, reason)),
    );
    const pattern = new PatternStream();
    const receivers = await Promise.all(Array.from({ length: 5 }, () => PatternReceiver.connect(port, pattern)));
    const reader = await connectSocket(port);
    const backlogged = await connectSocket(port);
    backlogged.pause();
    const sender = await connectSocket(port);
    for (const socket of [reader, backlogged, sender]) socket.on('error', ignore);
    await waitFor(() => mux.clients.size === 8, 'all to join');
    const readerPort = reader.localPort;
    const backloggedPort = backlogged.localPort;
    let readerGot = 0;
    reader.on('data', (chunk: Buffer) => {
      readerGot += chunk.length;
      if (readerGot >= MiB && !reader.destroyed) reader.resetAndDestroy();
    });

    const total = 48 * MiB;
    const sending = sendPattern(sender, pattern, total);
    const backloggedOnServer = serverSide(mux.clients, backlogged.localPort);
    await waitFor(
      () => (backloggedOnServer?.queuedBytes ?? 0) >= mux.config('highWaterMark'),
      'a backlog for the paused client',
      20_000,
    );
    backlogged.resetAndDestroy();
    expect(await sending).toBe(total);
    for (const receiver of receivers) await receiver.waitForBytes(total);

    expect(exits.get(readerPort ?? -1)).toBe('reset');
    expect(exits.get(backloggedPort ?? -1)).toBe('reset');
    expect(mux.stats().disconnects.reset).toBe(2);
    expect(mux.clients.size).toBe(6);
  }, 60_000);
});

describe('connection churn', () => {
  /** Runs `count` cycles, `parallel` at a time. */
  async function churn(count: number, parallel: number, cycle: (index: number) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < count) await cycle(next++);
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  }

  it('leaks no descriptor and returns to zero clients after 3,000 connect/disconnect cycles (in process)', async () => {
    const joinedPorts = new Set<number>();
    const waiting = new Map<number, () => void>();
    let connects = 0;
    let exits = 0;
    const { mux, port } = await startMux({}, (m) => {
      m.on('connect', (client) => {
        connects += 1;
        const resolve = waiting.get(client.port);
        if (resolve === undefined) joinedPorts.add(client.port);
        else {
          waiting.delete(client.port);
          resolve();
        }
      });
      m.on('exit', () => (exits += 1));
    });
    const joined = (localPort: number): Promise<void> => {
      if (joinedPorts.delete(localPort)) return Promise.resolve();
      return new Promise((resolve) => waiting.set(localPort, resolve));
    };
    // Each cycle waits until the server has admitted its client, so that every one joins and leaves once.
    const cycle = async (index: number): Promise<void> => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.on('error', ignore);
      socket.on('data', ignore);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      await joined(socket.localPort ?? -1);
      const mode = index % 3;
      if (mode === 0) socket.end();
      else if (mode === 1) socket.end('bye\n');
      else socket.resetAndDestroy();
      await closed(socket);
    };
    await cycle(0);
    await waitFor(() => mux.stats().connections === 0, 'the warm-up client to leave');
    const before = fdCount('self');

    await churn(3000, 25, (index) => cycle(index + 1));
    await waitFor(
      () => mux.stats().connections === 0,
      `connections back to 0 (have ${mux.stats().connections})`,
      10_000,
    );
    await waitFor(() => fdCount('self') <= before, `descriptors back to ${before} (have ${fdCount('self')})`, 10_000);
    const after = fdCount('self');
    console.log(`churn in process: ${before} descriptors before 3,000 cycles, ${after} after`);

    const stats = mux.stats();
    expect(after).toBe(before);
    expect(stats.clients).toBe(0);
    expect(stats.queuedBytes).toBe(0);
    expect(stats.pausedClients).toBe(0);
    expect(connects).toBe(3001);
    expect(exits).toBe(3001);
    // cycles 1..3000: index % 3 === 2 resets (1,000 of them); the warm-up (index 0) and the rest send EOF
    expect(stats.disconnects.reset).toBe(1000);
    expect(stats.disconnects.eof).toBe(2001);
  }, 90_000);

  it('leaks no descriptor in the CLI after 3,000 connect/disconnect cycles', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0']);
    const cycle = async (index: number): Promise<void> => {
      const socket = net.connect({ port: cli.port, host: '127.0.0.1' });
      socket.on('error', ignore);
      socket.on('data', ignore);
      await new Promise<void>((resolve) => {
        socket.once('connect', () => resolve());
        socket.once('close', () => resolve());
      });
      const mode = index % 4;
      if (mode === 0) socket.end();
      else if (mode === 1) socket.end('bye\n');
      else if (mode === 2) socket.resetAndDestroy();
      else socket.destroy();
      await closed(socket);
    };
    await cycle(0);
    await delay(200);
    const before = fdCount(cli.pid);
    await churn(3000, 25, cycle);
    await waitFor(
      () => fdCount(cli.pid) <= before,
      `CLI descriptors back to ${before} (have ${fdCount(cli.pid)})`,
      15_000,
    );
    const after = fdCount(cli.pid);
    console.log(`churn against the CLI: ${before} descriptors before 3,000 cycles, ${after} after`);
    expect(after).toBe(before);
    expect(cli.child.exitCode).toBeNull();
  }, 90_000);

  it('survives 500 clients that connect and reset at once while two others keep talking', async () => {
    const joinedIds: number[] = [];
    const exitCounts = new Map<number, number>();
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.on('connect', (client) => joinedIds.push(client.id));
      m.on('exit', (client) => exitCounts.set(client.id, (exitCounts.get(client.id) ?? 0) + 1));
    });
    const [talker, listener] = await connectAll(mux, port, 2);
    const fdsBefore = fdCount('self');

    const lines = Array.from({ length: 200 }, (_, i) => `line ${i}\n`);
    const talking = (async () => {
      for (const line of lines) {
        await talker.write(line);
        await delay(1);
      }
    })();
    const storm = Array.from({ length: 500 }, (_, i) => {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.on('error', ignore);
      socket.on('data', ignore);
      if (i % 5 === 0) socket.destroy();
      else if (i % 5 === 1) socket.once('connect', () => socket.end('half a li'));
      else socket.once('connect', () => socket.resetAndDestroy());
      return closed(socket);
    });
    await Promise.all(storm);
    await talking;

    await waitFor(
      () => mux.stats().connections === 2,
      `connections back to 2 (have ${mux.stats().connections})`,
      10_000,
    );
    await waitFor(
      () => fdCount('self') <= fdsBefore,
      `descriptors back to ${fdsBefore} (have ${fdCount('self')})`,
      10_000,
    );
    const halfLines = 'half a li\n'.repeat(100).length;
    await listener.waitForBytes(lines.join('').length + halfLines, 10_000);
    await talker.waitForBytes(halfLines, 10_000);
    await delay(50);
    const stormIds = joinedIds.slice(2);
    expect(stormIds.every((id) => exitCounts.get(id) === 1)).toBe(true);
    expect(exitCounts.size).toBe(stormIds.length);
    // What the 100 clients that sent half a line and EOF wrote is delivered, completed by the framing.
    const received = listener.text.split('\n');
    expect(received.filter((line) => line !== 'half a li').join('\n')).toBe(lines.join(''));
    expect(received.filter((line) => line === 'half a li')).toHaveLength(100);
    expect(talker.text).toBe('half a li\n'.repeat(100));
  }, 60_000);
});

describe('2,000 idle connections', () => {
  it('do not keep a broadcast from reaching everyone quickly', async () => {
    const { mux, port } = await startMux();
    const sender = await connectSocket(port);
    const got = new Map<net.Socket, number>();
    const track = (socket: net.Socket): void => {
      got.set(socket, 0);
      socket.on('data', (chunk: Buffer) => got.set(socket, (got.get(socket) ?? 0) + chunk.length));
    };
    for (let i = 0; i < 10; i += 1) track(await connectSocket(port));
    await waitFor(() => mux.clients.size === 11, 'the first clients to join');

    /** Times from one write to its arrival at every receiver, over `rounds` broadcasts, sorted. */
    const measure = async (rounds: number): Promise<number[]> => {
      const times: number[] = [];
      for (let round = 0; round < rounds; round += 1) {
        const message = `ping ${round} ${'.'.repeat(100)}\n`;
        const receivers = [...got.keys()];
        const expected = receivers.map((socket) => (got.get(socket) ?? 0) + message.length);
        const start = process.hrtime.bigint();
        sender.write(message);
        const arrived = (): boolean => receivers.every((socket, i) => (got.get(socket) ?? 0) >= expected[i]);
        await waitFor(arrived, `round ${round} to arrive everywhere`, 20_000);
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
        await delay(20);
      }
      return times.sort((a, b) => a - b);
    };
    const base = await measure(5);

    for (let batch = 0; batch < 20; batch += 1) {
      const sockets = await Promise.all(Array.from({ length: 100 }, () => connectSocket(port)));
      sockets.forEach(track);
    }
    await waitFor(() => mux.clients.size === 2011, `2,011 clients to join (have ${mux.clients.size})`, 20_000);
    const loaded = await measure(5);
    const median = (times: number[]): number => times[Math.floor(times.length / 2)];
    console.log(
      `broadcast latency to every receiver: median ${median(base).toFixed(1)} ms with 10 receivers, ` +
        `${median(loaded).toFixed(1)} ms with 2,010 (rounds: ${loaded.map((t) => t.toFixed(1)).join(', ')} ms)`,
    );
    // Generous: the fan-out to 2,010 sockets (and reading them, in this same process) takes some ms; a
    // server that scanned idle connections or waited on them would take far longer.
    expect(median(loaded)).toBeLessThan(Math.max(2_000, 100 * median(base)));
    expect(mux.stats().disconnects).toEqual(expect.objectContaining({ 'slow-consumer': 0, idle: 0 }));
  }, 90_000);
});

describe('a flooding sender with a slow async filter', () => {
  it('pauses reading from it (maxPendingBytes) so the server holds little, and loses nothing', async () => {
    const maxPendingBytes = 256 * 1024;
    const { mux, port } = await startMux({ maxPendingBytes }, (m) =>
      m.addFilter(async (data) => {
        await delay(1);
        return data;
      }),
    );
    const pattern = new PatternStream();
    const receivers = await Promise.all([
      PatternReceiver.connect(port, pattern),
      PatternReceiver.connect(port, pattern),
    ]);
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 3, 'all to join');
    const onServer = serverSide(mux.clients, sender.localPort);
    let maxPending = 0;
    let sawPaused = false;
    const sampler = setInterval(() => {
      maxPending = Math.max(maxPending, onServer?.pendingBytes ?? 0);
      sawPaused ||= mux.stats().pausedClients > 0;
    }, 2);
    const total = 24 * MiB;
    const sending = sendPattern(sender, pattern, total);
    for (const receiver of receivers) await receiver.waitForBytes(total, 60_000);
    clearInterval(sampler);
    expect(await sending).toBe(total);
    console.log(
      `async filter flood: at most ${maxPending} bytes pending for the sender (maxPendingBytes ${maxPendingBytes})`,
    );
    expect(sawPaused).toBe(true);
    // One read (64 KiB) may land after the bound is passed, never more.
    expect(maxPending).toBeLessThanOrEqual(maxPendingBytes + 64 * 1024);
    expect(mux.stats().pausedClients).toBe(0);
  }, 90_000);
});

describe('a reader that stops and starts just under stallTimeout', () => {
  /** Time for 64 MiB from one sender to reach two healthy receivers, with a third client `third` behaving as told. */
  async function floodTime(
    stallTimeout: number,
    third: (socket: net.Socket, stopped: () => boolean) => Promise<void>,
  ): Promise<number> {
    const { mux, port } = await startMux({ stallTimeout });
    const pattern = new PatternStream();
    const receivers = [await PatternReceiver.connect(port, pattern), await PatternReceiver.connect(port, pattern)];
    const thirdSocket = await connectSocket(port);
    thirdSocket.on('data', ignore);
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 4, 'all to join');
    let stopped = false;
    const behaving = third(thirdSocket, () => stopped);
    const total = 64 * MiB;
    const start = Date.now();
    await sendPattern(sender, pattern, total);
    for (const receiver of receivers) await receiver.waitForBytes(total, 60_000);
    const took = Date.now() - start;
    stopped = true;
    await behaving;
    await mux.destroy({ timeout: 100 });
    return took;
  }

  it('holds the broadcast back for at most one stallTimeout, not once per stop', async () => {
    const stallTimeout = 2_000;
    const baseline = await floodTime(stallTimeout, async () => undefined);
    const oscillating = await floodTime(stallTimeout, async (socket, stopped) => {
      while (!stopped()) {
        socket.pause();
        await delay(stallTimeout - 100);
        socket.resume();
        await delay(20);
      }
    });
    console.log(
      `64 MiB to two receivers: ${baseline} ms with a third that reads, ${oscillating} ms with one that stops for ${stallTimeout - 100} ms at a time (stallTimeout ${stallTimeout})`,
    );
    // A slow reader may hold senders back once (that is what stallTimeout is for); after that it lags
    // and must not be able to do it again and again by reading a little just in time.
    expect(oscillating).toBeLessThan(3 * baseline + stallTimeout + 1_500);
  }, 90_000);
});

describe('a reader that pauses with little room between highWaterMark and maxQueuedBytes', () => {
  it('holds the sender back instead of passing maxQueuedBytes (congestion is seen before the room runs out)', async () => {
    const { mux, port } = await startMux({
      highWaterMark: 64 * 1024,
      maxQueuedBytes: 256 * 1024,
      stallTimeout: 10_000,
    });
    const exits: string[] = [];
    mux.on('exit', (client, reason) => exits.push(`${client.id}:${reason}`));
    const [sender, receiver] = await connectAll(mux, port, 2);
    receiver.socket.pause();
    const total = 16 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'q');
    const writing = (async () => {
      for (let sent = 0; sent < total && !sender.closed; sent += chunk.length) {
        if (!sender.socket.write(chunk)) await new Promise((resolve) => sender.socket.once('drain', resolve));
      }
    })();
    await delay(1500);
    receiver.socket.resume();
    await writing;
    await waitFor(() => receiver.received >= total || receiver.closed, 'the receiver to get everything', 15_000);
    expect({ exits, received: receiver.received, slowConsumers: mux.stats().disconnects['slow-consumer'] }).toEqual({
      exits: [],
      received: total,
      slowConsumers: 0,
    });
  }, 30_000);
});

describe('a flooding client that waits for a slow async access filter', () => {
  it('is paused past maxPendingBytes until admitted, then everything it sent is broadcast in order', async () => {
    const maxPendingBytes = 256 * 1024;
    const waiting: Client[] = [];
    const { mux, port } = await startMux({ maxPendingBytes }, (m) =>
      m.addAccessFilter(async (client) => {
        waiting.push(client);
        await delay(300);
        return true;
      }),
    );
    const pattern = new PatternStream();
    const receiver = await PatternReceiver.connect(port, pattern);
    await waitFor(() => mux.clients.size === 1, 'the receiver to join');
    const sender = await connectSocket(port);
    const onServer = (): Client | undefined => serverSide(waiting, sender.localPort);
    let maxPending = 0;
    const sampler = setInterval(() => (maxPending = Math.max(maxPending, onServer()?.pendingBytes ?? 0)), 2);
    const total = 8 * MiB;
    const sending = sendPattern(sender, pattern, total);
    await receiver.waitForBytes(total, 30_000);
    clearInterval(sampler);
    expect(await sending).toBe(total);
    expect(maxPending).toBeGreaterThan(0);
    expect(maxPending).toBeLessThanOrEqual(maxPendingBytes + 64 * 1024);
  }, 60_000);
});

describe('a client the server disconnects', () => {
  it('gets nothing more of its data broadcast, even what came in the same chunk', async () => {
    const exits: ExitReason[] = [];
    const { mux, port } = await startMux({ framing: 'line' }, (m) => {
      m.addFilter((line, client) => {
        if (line.toString() !== 'spam') return undefined;
        client.disconnect();
        return null;
      });
      m.on('exit', (_client, reason) => exits.push(reason));
    });
    const [spammer, receiver] = await connectAll(mux, port, 2);
    await spammer.write('hello\nspam\nmore spam 1\nmore spam 2\n');
    await spammer.waitForClose();
    await waitFor(() => exits.length === 1, 'the exit');
    await delay(50);
    expect(receiver.text).toBe('hello\n');
    expect(exits).toEqual(['kicked']);
  });
});

describe('destroy({ timeout }) with a stalled reader', () => {
  it('flushes what is queued to a healthy client, closes the stalled one at the timeout, and resolves', async () => {
    // Bounds high enough that nothing is dropped or disconnected before destroy() is called.
    const { mux, port } = await startMux({ highWaterMark: 128 * MiB, maxQueuedBytes: 256 * MiB });
    const closeEvents: number[] = [];
    mux.on('close', () => closeEvents.push(Date.now()));
    const pattern = new PatternStream();
    const healthy = await PatternReceiver.connect(port, pattern);
    const stalled = await connectSocket(port);
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 3, 'all to join');
    healthy.socket.pause();
    stalled.pause();
    // More than loopback socket buffers hold, so that the server still queues most of it.
    const total = 64 * MiB;
    await sendPattern(sender, pattern, total);
    await waitFor(() => mux.stats().bytesIn === total, 'the server to read everything', 20_000);
    expect(mux.stats().queuedBytes).toBeGreaterThan(total);
    const start = Date.now();
    const destroyed = mux.destroy({ timeout: 1_000 });
    healthy.socket.resume();
    await destroyed;
    const took = Date.now() - start;
    await waitFor(() => healthy.closed, 'the healthy client to be closed');
    expect(healthy.received).toBe(total);
    expect(healthy.verifier.errorAt).toBeNull();
    // The stalled client could not take its backlog: it was closed hard when the timeout passed.
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5_000);
    expect(closeEvents).toHaveLength(1);
    stalled.resume();
    await closed(stalled);
  }, 30_000);
});

describe('accept errors (EMFILE)', () => {
  it('are survived: the CLI keeps serving once descriptors are free again', async () => {
    const cli = await startCli(['--host', '127.0.0.1', '--port', '0'], {
      wrapper: ['prlimit', '--nofile=48:48', '--'],
    });
    const burst = await Promise.all(Array.from({ length: 80 }, () => connectSocket(cli.port).catch(() => null)));
    for (const socket of burst) socket?.on('data', ignore);
    await delay(500);
    expect(cli.child.exitCode).toBeNull();
    // The limit was reached: the kernel accepted all 80, the server had to close some of them at once.
    expect(
      burst.filter((socket) => socket === null || socket.readableEnded || socket.destroyed).length,
    ).toBeGreaterThan(0);
    for (const socket of burst) socket?.destroy();
    await delay(300);
    const [alice, bob] = [await connectFrom(cli.port, '127.0.0.1'), await connectFrom(cli.port, '127.0.0.1')];
    await untilEveryoneHears(alice, [bob]);
    await alice.write('after EMFILE\n');
    await bob.waitForText('after EMFILE\n');
    expect(cli.child.exitCode).toBeNull();
  }, 30_000);
});

describe('garbage binary in line framing', () => {
  it('is forwarded byte for byte as whole lines, and the server keeps serving', async () => {
    const { mux, port } = await startMux({ framing: 'line' });
    const [sender, receiver, other] = await connectAll(mux, port, 3);
    const garbage = randomBytes(2 * MiB, 0xdecafbad);
    for (let at = 0, step = 1; at < garbage.length; at += step, step = (step * 7 + 13) % 70_001) {
      sender.socket.write(garbage.subarray(at, at + step));
    }
    sender.end(); // the last, unterminated line is delivered at EOF with a newline
    const expected = garbage[garbage.length - 1] === 0x0a ? garbage : Buffer.concat([garbage, Buffer.from('\n')]);
    await receiver.waitForBytes(expected.length, 20_000);
    await other.write('after the garbage\n');
    await receiver.waitForText('after the garbage\n');
    expect(receiver.data.equals(Buffer.concat([expected, Buffer.from('after the garbage\n')]))).toBe(true);
    expect(mux.stats().disconnects).toEqual(expect.objectContaining({ eof: 1, 'line-too-long': 0, error: 0 }));
  }, 30_000);
});

describe('user code that throws or rejects', () => {
  type HostilePeer = Peer<HostileReport, HostileCommand>;
  async function stats(peer: HostilePeer): Promise<Extract<HostileReport, { type: 'stats' }>> {
    peer.send({ cmd: 'stats' });
    return peer.next('stats', 5_000);
  }

  it('never crashes the process, is reported, and the broadcast goes on', async () => {
    const peer: HostilePeer = new Peer('hostile-server.ts', {});
    const { port } = await peer.next('listening', 20_000);
    const [alice, bob] = [await connectFrom(port, '127.0.0.1'), await connectFrom(port, '127.0.0.1')];
    const refused = await Promise.all(
      ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((address) => connectFrom(port, address)),
    );
    for (const client of refused) await client.waitForClose();
    await delay(50);

    const sent = ['hello', 'throw-sync', 'reject-async', 'throw-string', 'broadcast-throw', 'x'.repeat(100), 'last'];
    await alice.write(sent.map((line) => `${line}\n`).join(''));
    await bob.waitForText('last\n');
    // Filters that fail pass the data on unchanged (filterErrors: 'pass'); the failed broadcast and the
    // over-long line are not delivered; the order is kept across the async filter.
    expect(bob.text).toBe('hello\nthrow-sync\nreject-async\nthrow-string\nlast\n');
    await alice.waitForText('error: message longer than 64 bytes discarded\n');
    for (const client of refused) expect(client.received).toBe(0);

    alice.end();
    await alice.waitForClose();
    await delay(100);
    const report = await stats(peer);
    expect(report.escaped).toEqual([]);
    expect(report.filterErrors).toBe(3);
    expect(report.denials['access-error']).toBe(2);
    expect(report.denials['access-filter']).toBe(1);
    expect(report.limits['line-too-long']).toBe(1);
    expect(report.disconnects.eof).toBe(1);
    expect(report.errorSources).toEqual(['accessFilter', 'broadcast', 'exitFilter', 'filter', 'listener']);

    // Still serving: a newcomer joins and gets what bob sends.
    const carol = await connectFrom(port, '127.0.0.1');
    await delay(50);
    await bob.write('still here\n');
    await carol.waitForText('still here\n');

    peer.send({ cmd: 'destroy' });
    const destroyed = await peer.next('destroyed', 10_000);
    expect(destroyed.escaped).toEqual([]);
    await bob.waitForClose();
    await carol.waitForClose();
  }, 60_000);
});
