/**
 * Issue 8, round two of hostile and slow clients: memory and flow. Each test checks one defect of the issue
 * over real sockets, with small limits so that it shows in seconds.
 */
import { readFileSync } from 'node:fs';
import type * as net from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import type { Multiplexer, MultiplexerOptions } from '../lib';
import { retainedBytes } from './helpers/memory';
import { connectAll, delay, onTeardown, startMux, waitFor } from './helpers/net';
import { PatternStream } from './helpers/pattern';
import { connectSocket, PatternReceiver, sendPattern } from './helpers/streams';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The settings decided for issue 8 (see HELPERS.md), typed here so that these specs compile before lib/ has them. */
type RoundTwoOptions = MultiplexerOptions & {
  memoryBudget?: number;
  sendTimeout?: number;
  messageTimeout?: number;
  ipv4Prefix?: number;
  ipv6Prefix?: number;
};
const options = (settings: RoundTwoOptions): MultiplexerOptions => settings;

/** Exits and limits by the client's port, as strings (the new reasons are not in today's types). */
function recorder(): {
  exits: Array<{ port: number; reason: string }>;
  limits: Array<{ port: number; kind: string }>;
  attach: (mux: Multiplexer) => void;
} {
  const exits: Array<{ port: number; reason: string }> = [];
  const limits: Array<{ port: number; kind: string }> = [];
  return {
    exits,
    limits,
    attach: (mux) => {
      mux.on('exit', (client, reason) => exits.push({ port: client.port, reason }));
      mux.on('limit', (client, kind) => limits.push({ port: client.port, kind }));
    },
  };
}

/** Waits until the server has read all it will read for now: bytesIn unchanged for 300 ms. */
async function readingSettled(stats: () => { bytesIn: number }): Promise<void> {
  let last = -1;
  let since = Date.now();
  await waitFor(
    () => {
      const now = stats().bytesIn;
      if (now !== last) {
        last = now;
        since = Date.now();
      }
      return now > 0 && Date.now() - since > 300;
    },
    'reading to settle',
    15_000,
  );
}

/** Makes a socket read at about `bytesPerSecond` on average (pausing when ahead), as a reader on a slower link. */
function readAt(socket: net.Socket, bytesPerSecond: number): void {
  const start = Date.now();
  let bytes = 0;
  let timer: NodeJS.Timeout | undefined;
  onTeardown(() => clearTimeout(timer));
  socket.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    const due = start + (bytes / bytesPerSecond) * 1000;
    if (due > Date.now() + 1) {
      socket.pause();
      timer = setTimeout(() => socket.resume(), due - Date.now());
    }
  });
}

/** A receiver that checks the pattern, one that never reads, and a sender: all three joined. */
async function healthyStalledSender(
  mux: Multiplexer,
  port: number,
): Promise<{ pattern: PatternStream; healthy: PatternReceiver; stalled: net.Socket; sender: net.Socket }> {
  const pattern = new PatternStream();
  const healthy = await PatternReceiver.connect(port, pattern);
  const stalled = await connectSocket(port);
  stalled.pause();
  const sender = await connectSocket(port);
  await waitFor(() => mux.clients.size === 3, 'everyone to join');
  return { pattern, healthy, stalled, sender };
}

/** Writes `total` bytes of `pattern` at no more than `bytesPerSecond`, honouring backpressure. */
async function sendPaced(
  socket: net.Socket,
  pattern: PatternStream,
  total: number,
  bytesPerSecond: number,
): Promise<void> {
  const start = Date.now();
  for (let sent = 0, index = 0; sent < total && !socket.destroyed; index += 1) {
    const ahead = start + (sent / bytesPerSecond) * 1000 - Date.now();
    if (ahead > 0) await delay(ahead);
    const block = pattern.block(index);
    sent += block.length;
    if (!socket.write(block))
      await new Promise<void>((resolve) => {
        socket.once('drain', resolve);
        socket.once('close', resolve);
      });
  }
}

const written = (socket: net.Socket, data: Buffer | string): Promise<void> =>
  new Promise((resolve) => socket.write(data, () => resolve()));

describe('input held by a rate limit (issue 8.1)', () => {
  const settings = options({ framing: 'line', maxMessagesPerSecond: 10, maxPendingBytes: 64 * KiB });
  /** 262,144 empty lines in one write. */
  const burst = Buffer.alloc(256 * KiB, 0x0a);

  it('is bounded by maxPendingBytes in real bytes while the clients stay connected', async () => {
    const { mux, port } = await startMux(settings);
    const before = retainedBytes();
    const attackers = await Promise.all(Array.from({ length: 4 }, () => connectSocket(port)));
    await waitFor(() => mux.clients.size === 4, 'the attackers to join');
    for (const socket of attackers) socket.write(burst);
    await readingSettled(() => mux.stats());
    const held = retainedBytes() - before;
    console.log(`rate-held input of 4 connected clients: ${(held / MiB).toFixed(1)} MiB retained`);
    // 4 x 64 KiB, with ample room for what was read but not framed yet and for the sockets themselves.
    expect(held).toBeLessThan(8 * MiB);
    expect(mux.clients.size).toBe(4);
  });

  it('is dropped at once when its client leaves on its own: nothing more of it is broadcast or retained', async () => {
    const { mux, port } = await startMux(settings);
    const [receiver, ticker] = await connectAll(mux, port, 2);
    const before = retainedBytes();
    const attackers = await Promise.all(Array.from({ length: 4 }, () => connectSocket(port)));
    await waitFor(() => mux.clients.size === 6, 'the attackers to join');
    await Promise.all(attackers.map((socket) => written(socket, burst)));
    await readingSettled(() => mux.stats());
    for (const socket of attackers) socket.resetAndDestroy();
    // Broadcasts to the attackers make the server see the resets even while it is not reading from them.
    const timer = setInterval(() => ticker.socket.write('tick\n'), 50);
    onTeardown(() => clearInterval(timer));
    await waitFor(() => mux.stats().connections === 2, 'the server to see the attackers leave', 10_000);
    await delay(300);
    const emptyLines = (): number => receiver.text.split('\n').filter((line) => line === '').length;
    const heard = emptyLines();
    await delay(1000);
    clearInterval(timer);
    const held = retainedBytes() - before;
    console.log(
      `after 4 rate-limited clients left: ${emptyLines() - heard} of their lines in 1 s, ${(held / MiB).toFixed(1)} MiB retained`,
    );
    expect(emptyLines() - heard).toBe(0);
    expect(held).toBeLessThan(8 * MiB);
  });
});

describe('a slow reading majority (issue 8.2)', () => {
  it('is never cut: the sender waits for readers that keep taking bytes, and every reader gets everything', async () => {
    const events = recorder();
    // Default settings: 8 MiB queues, a 1 MiB high-water mark.
    const { mux, port } = await startMux({}, events.attach);
    const pattern = new PatternStream();
    const readers = await Promise.all([0, 1, 2].map(() => PatternReceiver.connect(port, pattern)));
    for (const reader of readers) readAt(reader.socket, 3e6);
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 4, 'everyone to join');
    // Offered at three times what the readers take, more than their queues and the kernel's buffers hold:
    // the server must hold the sender back, not cut the readers.
    const total = 18 * MiB;
    await sendPaced(sender, pattern, total, 9e6);
    await waitFor(
      () => readers.every((reader) => reader.received >= total) || readers.some((reader) => reader.closed),
      'the readers to get everything',
      30_000,
    );
    expect(events.exits).toEqual([]);
    for (const reader of readers) await reader.waitForBytes(total);
  }, 60_000);
});

describe('receivers that take nothing (issue 8.5, sendTimeout)', () => {
  it("disconnects never-reading receivers under drop-newest after sendTimeout with reason 'send-timeout'", async () => {
    const events = recorder();
    const { mux, port } = await startMux(
      options({ slowConsumer: 'drop-newest', maxQueuedBytes: MiB, highWaterMark: 256 * KiB, sendTimeout: 500 }),
      events.attach,
    );
    const pattern = new PatternStream();
    const healthy = await PatternReceiver.connect(port, pattern);
    const stalled: net.Socket[] = [await connectSocket(port)];
    stalled[0].pause();
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 3, 'everyone to join');
    const total = 16 * MiB;
    const joining: Promise<void>[] = [];
    // Two more join during the flood, each at its own moment.
    await sendPattern(sender, pattern, total, (sent) => {
      if (joining.length < 2 && sent >= (joining.length + 1) * 5 * MiB)
        joining.push(
          connectSocket(port).then((socket) => {
            socket.pause();
            stalled.push(socket);
          }),
        );
    });
    await Promise.all(joining);
    await healthy.waitForBytes(total);
    const ports = stalled.map((socket) => socket.localPort);
    await waitFor(
      () => ports.every((p) => events.exits.some((exit) => exit.port === p)),
      'the never-reading receivers to be cut',
      10_000,
    );
    expect(events.exits.map((exit) => exit.reason)).toEqual(['send-timeout', 'send-timeout', 'send-timeout']);
    expect(healthy.closed).toBe(false);
  });

  it.each(['drop-oldest', 'disconnect'] as const)(
    "disconnects a receiver that takes nothing for sendTimeout with reason 'send-timeout' under %s too",
    async (policy) => {
      const events = recorder();
      const { mux, port } = await startMux(options({ slowConsumer: policy, sendTimeout: 500 }), events.attach);
      const { pattern, healthy, stalled, sender } = await healthyStalledSender(mux, port);
      // More than the kernel's buffers take (about 4 MiB on loopback), less than maxQueuedBytes (8 MiB).
      const total = 6 * MiB;
      await sendPattern(sender, pattern, total);
      await healthy.waitForBytes(total);
      await waitFor(() => events.exits.length > 0, 'the never-reading receiver to be cut', 10_000);
      expect(events.exits).toEqual([{ port: stalled.localPort, reason: 'send-timeout' }]);
    },
  );
});

describe('a peer cut for not reading (issue 8.4)', () => {
  const cert = readFileSync(join(__dirname, 'fixtures', 'test-cert.pem'));
  const key = readFileSync(join(__dirname, 'fixtures', 'test-key.pem'));

  /** A paused client over TCP or TLS. */
  async function stalledClient(port: number, secure: boolean): Promise<net.Socket> {
    if (!secure) {
      const socket = await connectSocket(port);
      socket.pause();
      return socket;
    }
    const socket = tls.connect({ port, host: '127.0.0.1', ca: cert, servername: 'localhost' });
    socket.on('error', () => undefined);
    onTeardown(() => {
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    socket.pause();
    return socket;
  }

  it.each([
    ['TCP', false],
    ['TLS', true],
  ])(
    'resets it over %s: what the kernel had not sent it is dropped at once, not left to an orphan socket',
    async (_name, secure) => {
      const events = recorder();
      const { mux, port } = await startMux(
        {
          maxQueuedBytes: MiB,
          highWaterMark: 256 * KiB,
          ...(secure ? { tls: { key, cert } } : {}),
        },
        events.attach,
      );
      const stalled = await stalledClient(port, secure);
      const sender = await stalledClient(port, secure);
      await waitFor(() => mux.clients.size === 2, 'both to join');
      const chunk = Buffer.alloc(64 * KiB, 'x');
      const flood = setInterval(() => {
        for (let i = 0; i < 8; i += 1) sender.write(chunk);
      }, 5);
      onTeardown(() => clearInterval(flood));
      await waitFor(
        () => events.exits.some((exit) => exit.reason === 'slow-consumer'),
        'the stalled one to be cut',
        15_000,
      );
      clearInterval(flood);
      expect(events.exits).toEqual([{ port: stalled.localPort, reason: 'slow-consumer' }]);
      // It reads what its own kernel holds (128 KiB by default), then the connection ends. A plain close would
      // have left the server's kernel to send it all it had taken (some 4 MiB here) from an orphan socket.
      let bytes = 0;
      stalled.on('data', (data: Buffer) => (bytes += data.length));
      const ended = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
      stalled.resume();
      await ended;
      expect(bytes).toBeGreaterThan(0);
      expect(bytes).toBeLessThan(MiB);
    },
    30_000,
  );
});

describe('newcomers that never read (issue 8.6)', () => {
  /** Bytes the slower of two receivers got in `ms` of a broadcast windowed on them (1 MiB ahead at most). */
  async function delivered(ms: number, newcomerEveryMs: number | null): Promise<number> {
    const { mux, port } = await startMux();
    const got = [0, 0];
    const receivers = await Promise.all(got.map(() => connectSocket(port)));
    receivers.forEach((socket, i) => socket.on('data', (chunk: Buffer) => (got[i] += chunk.length)));
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 3, 'everyone to join');
    const block = Buffer.alloc(64 * KiB, 0x2e);
    const until = Date.now() + ms;
    let nextNewcomer = newcomerEveryMs === null ? Infinity : Date.now();
    let sent = 0;
    while (Date.now() < until) {
      if (Date.now() >= nextNewcomer) {
        nextNewcomer += newcomerEveryMs ?? Infinity;
        void connectSocket(port).then((socket) => socket.pause());
      }
      if (sent - Math.min(...got) < MiB) {
        sent += block.length;
        if (!sender.write(block)) await new Promise((resolve) => sender.once('drain', resolve));
      } else await delay(1);
    }
    return Math.min(...got);
  }

  it('do not freeze the broadcast: it keeps most of its throughput while one joins every 100 ms', async () => {
    const quiet = await delivered(1500, null);
    const attacked = await delivered(1500, 100);
    console.log(
      `newcomers: ${(quiet / MiB).toFixed(1)} MiB delivered without, ${(attacked / MiB).toFixed(1)} MiB with one every 100 ms`,
    );
    // The target is 0.8; generous here, the machine is shared.
    expect(attacked).toBeGreaterThan(quiet * 0.3);
  });
});

describe('partial lines (issue 8.9)', () => {
  it('held one byte per packet cost about their own size, not a chunk per byte', async () => {
    const maxMessageBytes = 1024;
    const { mux, port } = await startMux({ framing: 'line', maxMessageBytes });
    const clients = await Promise.all(Array.from({ length: 100 }, () => connectSocket(port)));
    for (const socket of clients) socket.setNoDelay(true);
    await waitFor(() => mux.clients.size === 100, 'the clients to join');
    const before = retainedBytes();
    const byte = Buffer.from('x');
    const bytesEach = 400;
    for (let round = 0; round < bytesEach; round += 1) {
      for (const socket of clients) socket.write(byte);
      // One read per byte: the server reads each before the next is sent.
      const expected = (round + 1) * clients.length;
      while (mux.stats().bytesIn < expected) await new Promise((resolve) => setImmediate(resolve));
    }
    const held = retainedBytes() - before;
    const perByte = held / (bytesEach * clients.length);
    console.log(`partial lines one byte per packet: ${perByte.toFixed(1)} bytes retained per byte held`);
    // A bounded line of at most maxMessageBytes per client (twice that for a growing buffer), plus 1 MiB of slack.
    expect(held).toBeLessThan(clients.length * 2 * maxMessageBytes + MiB);
    expect(mux.clients.size).toBe(100);
  });
});

describe('slowloris (issue 8.12, messageTimeout)', () => {
  it("disconnects a client whose line is not complete within messageTimeout with 'message-timeout', although it keeps sending", async () => {
    const events = recorder();
    const { mux, port } = await startMux(
      options({ framing: 'line', messageTimeout: 500, idleTimeout: 5000 }),
      events.attach,
    );
    const [loris, talker, receiver] = await connectAll(mux, port, 3);
    const lorisPort = loris.socket.localPort;
    // One byte every 100 ms keeps idleTimeout from ever firing; complete lines keep the talker in.
    const timer = setInterval(() => {
      loris.socket.write('z');
      talker.socket.write('complete\n');
    }, 100);
    onTeardown(() => clearInterval(timer));
    await loris.waitForClose(5000);
    clearInterval(timer);
    await waitFor(() => events.exits.length === 1, 'the exit');
    expect(events.exits).toEqual([{ port: lorisPort, reason: 'message-timeout' }]);
    expect(talker.closed).toBe(false);
    expect(receiver.text).not.toContain('z');
  });
});

/**
 * A 16 MiB budget and 12 MiB queues under drop-newest: a receiver that takes nothing keeps its oldest 12 MiB,
 * more than half the budget and less than all of it.
 */
async function halfBudgetMux(): Promise<{ events: ReturnType<typeof recorder>; mux: Multiplexer; port: number }> {
  const events = recorder();
  const { mux, port } = await startMux(
    options({
      slowConsumer: 'drop-newest',
      maxQueuedBytes: 12 * MiB,
      highWaterMark: 256 * KiB,
      memoryBudget: 16 * MiB,
    }),
    events.attach,
  );
  return { events, mux, port };
}

describe('memoryBudget', () => {
  it("cuts the largest holders with reason 'memory-budget' (drop-newest), while healthy receivers lose nothing", async () => {
    const events = recorder();
    const { mux, port } = await startMux(
      options({ slowConsumer: 'drop-newest', maxQueuedBytes: MiB, highWaterMark: 256 * KiB, memoryBudget: 16 * MiB }),
      events.attach,
    );
    const pattern = new PatternStream();
    const healthy = await Promise.all([0, 1].map(() => PatternReceiver.connect(port, pattern)));
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 3, 'everyone to join');
    // 30 never-reading receivers join 3 MiB of flood apart: under drop-newest each keeps a different oldest MiB.
    const stalledPorts: number[] = [];
    const joining: Promise<void>[] = [];
    const total = 96 * MiB;
    await sendPattern(sender, pattern, total, (sent) => {
      if (joining.length < 30 && sent >= (joining.length + 1) * 3 * MiB)
        joining.push(
          connectSocket(port).then((socket) => {
            socket.pause();
            stalledPorts.push(socket.localPort ?? -1);
          }),
        );
    });
    await Promise.all(joining);
    for (const receiver of healthy) await receiver.waitForBytes(total);
    await waitFor(() => events.exits.some((exit) => exit.reason === 'memory-budget'), 'a memory-budget cut', 5000);
    const cut = events.exits.filter((exit) => exit.reason === 'memory-budget').map((exit) => exit.port);
    console.log(`memory budget: ${cut.length} of 30 never-reading receivers cut`);
    expect(cut.every((p) => stalledPorts.includes(p))).toBe(true);
    expect(healthy.map((receiver) => receiver.closed)).toEqual([false, false]);
  }, 60_000);

  it('past half the budget, cuts a receiver whose connection took nothing for a second, before the budget is reached', async () => {
    const { events, mux, port } = await halfBudgetMux();
    const { pattern, healthy, stalled, sender } = await healthyStalledSender(mux, port);
    const total = 24 * MiB;
    let peakHeld = 0;
    await sendPattern(sender, pattern, total, () => {
      peakHeld = Math.max(peakHeld, mux.stats().heldBytes);
    });
    await healthy.waitForBytes(total);
    await waitFor(() => events.exits.some((exit) => exit.reason === 'memory-budget'), 'a memory-budget cut', 5000);
    expect(events.exits).toEqual([{ port: stalled.localPort, reason: 'memory-budget' }]);
    expect(peakHeld).toBeGreaterThan(8 * MiB);
    expect(peakHeld).toBeLessThan(16 * MiB); // the budget itself was never reached
    expect(healthy.closed).toBe(false);
  }, 60_000);

  it('keeps a receiver that showed it reads, though it took nothing for a second past half the budget', async () => {
    const { events, mux, port } = await halfBudgetMux();
    const pattern = new PatternStream();
    const healthy = await connectSocket(port); // reads all, counting (the pattern starts over at each send)
    let healthyGot = 0;
    healthy.on('data', (data: Buffer) => (healthyGot += data.length));
    const reader = await connectSocket(port);
    reader.pause();
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 3, 'everyone to join');
    // It falls behind, then reads its way out (a slow reader's kernel may then wake the writer seconds apart).
    let got = 0;
    reader.on('data', (data: Buffer) => (got += data.length));
    await sendPattern(sender, pattern, 10 * MiB); // more than its kernel buffers hold
    await waitFor(() => healthyGot >= 10 * MiB, 'the healthy receiver to get the first 10 MiB');
    reader.resume();
    await waitFor(() => got >= 10 * MiB, 'the reader to catch up');
    reader.pause();
    // Then it takes nothing while its queue passes half the budget, for more than a second.
    let peakHeld = 0;
    await sendPattern(sender, pattern, 24 * MiB, () => {
      peakHeld = Math.max(peakHeld, mux.stats().heldBytes);
    });
    await waitFor(() => healthyGot >= 34 * MiB, 'the healthy receiver to get it all');
    await delay(1500);
    peakHeld = Math.max(peakHeld, mux.stats().heldBytes);
    expect(peakHeld).toBeGreaterThan(8 * MiB);
    expect(events.exits).toEqual([]);
  }, 60_000);

  it("sheds the oldest queued messages of the largest holders (drop-oldest), with a 'memory-budget' limit event", async () => {
    const events = recorder();
    const { mux, port } = await startMux(
      // Queues of drop-oldest receivers hold the newest messages: the same slabs for all of them. A budget below
      // one queue's worth is reached by them together.
      options({
        slowConsumer: 'drop-oldest',
        maxQueuedBytes: 4 * MiB,
        highWaterMark: 256 * KiB,
        memoryBudget: 2 * MiB,
      }),
      events.attach,
    );
    const pattern = new PatternStream();
    const healthy = await Promise.all([0, 1].map(() => PatternReceiver.connect(port, pattern)));
    const sender = await connectSocket(port);
    await waitFor(() => mux.clients.size === 3, 'everyone to join');
    const stalled: net.Socket[] = [];
    const joining: Promise<void>[] = [];
    const total = 64 * MiB;
    let peakHeld = 0;
    await sendPattern(sender, pattern, total, (sent) => {
      peakHeld = Math.max(peakHeld, mux.stats().heldBytes);
      if (joining.length < 30 && sent >= (joining.length + 1) * 2 * MiB)
        joining.push(
          connectSocket(port).then((socket) => {
            socket.pause();
            stalled.push(socket);
          }),
        );
    });
    await Promise.all(joining);
    for (const receiver of healthy) await receiver.waitForBytes(total);
    await waitFor(() => events.limits.some((limit) => limit.kind === 'memory-budget'), 'a memory-budget limit', 5000);
    expect(events.exits.filter((exit) => exit.reason === 'memory-budget')).toEqual([]);
    expect(mux.stats().drops).toBeGreaterThan(0);
    expect(healthy.map((receiver) => receiver.closed)).toEqual([false, false]);
    // Over the budget only between a turn and the check at its end: never by much.
    expect(peakHeld).toBeLessThan(8 * MiB);
  }, 60_000);
});
