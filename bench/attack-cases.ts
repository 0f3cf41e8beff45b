/**
 * The attacks of `npm run attacks` (issue 8, and round one again): each starts the CLI with its flags, runs
 * one attack from this process while the healthy-client probe (a worker thread) measures what healthy
 * clients see, and records its own figures. See bench/attacks.ts for the runner and the report.
 */
import type * as net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as tls from 'node:tls';
import type { Pace, ProbeConfig, ProbeResult, SenderConfig } from './attack-probe';
import { type Cli, type CliOptions, MiB, type Probe, type SocketPool, stillOpen } from './attack-tools';

/** A figure of a row: a number, a word, a yes/no. */
export type Figure = number | string | boolean | null;

/** What the healthy clients of an attack saw. */
export interface Healthy {
  readonly receivers: number;
  /** Receivers the server disconnected. */
  readonly cut: number;
  /** Records skipped at receivers still connected, and what they lack once the probe drained. */
  readonly lost: number;
  /** Records the receivers still connected had not got yet when the drain gave up (0 when drained). */
  readonly behind: number;
  readonly reordered: number;
  /** Bytes the disconnected receivers had not got when they were cut (sent by then, not received). */
  readonly missingBytes: number;
  /** Bytes a disconnected receiver got before it was cut, on average. */
  readonly cutAfterBytes: number;
  /** MB/s (10^6) per receiver during the measured period. */
  readonly mbPerS: number;
  /** Records delivered per second, all receivers together, during the measured period. */
  readonly deliveriesPerS: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Every receiver still connected got every record sent. */
  readonly drained: boolean;
  readonly sentMiB: number;
}

/** What an attack gets to work with; everything it opens through here is closed when it ends. */
export interface AttackContext {
  /** Starts the CLI with `flags` (plus EXTRA_FLAGS) on a free port of 127.0.0.1. */
  cli(flags: readonly string[], options?: CliOptions): Promise<Cli>;
  /** Starts the healthy clients (bench/attack-probe.ts) against `port`. */
  probe(config: ProbeOptions): Probe;
  readonly pool: SocketPool;
  /** Figures of the row, filled as the attack goes (so that a failure keeps what was measured). */
  readonly figures: Record<string, Figure>;
  note(text: string): void;
  /** True until `until` (ms since the epoch) while the attack has not been called off. */
  running(until: number): boolean;
}

export type ProbeOptions = Omit<ProbeConfig, 'epochNs' | 'host' | 'setupTimeoutMs'> & { setupTimeoutMs?: number };

/** One attack: a row of the table. */
export interface Attack {
  readonly name: string;
  /** Where it comes from: `8.1` is item 1 of issue 8; `r1` the first round. */
  readonly item: string;
  readonly what: string;
  /** Called off (and the CLI killed) after this long. */
  readonly timeoutMs: number;
  run(ctx: AttackContext): Promise<Healthy | null>;
}

const FIXTURES = join(__dirname, '..', '..', 'spec', 'fixtures');
const TLS_FLAGS = ['--tls-cert', join(FIXTURES, 'test-cert.pem'), '--tls-key', join(FIXTURES, 'test-key.pem')];
const CA = (): string => readFileSync(join(FIXTURES, 'test-cert.pem'), 'utf8');

/** An attack that lets the server grow past this is called off before the machine runs out of memory. */
export const RSS_CAP = 6 * 1024 * MiB;

const round = (value: number, digits = 1): number => Number(value.toFixed(digits));
const mib = (bytes: number): number => round(bytes / MiB);

/** The probe's result as what healthy clients saw. */
export function healthyOf(result: ProbeResult): Healthy {
  const { receivers, atStop, measuredS } = result;
  let lost = 0;
  let behind = 0;
  let missing = 0;
  let cut = 0;
  let reordered = 0;
  let cutAfter = 0;
  receivers.forEach((receiver) => {
    reordered += receiver.reordered;
    if (receiver.closed) {
      cut += 1;
      cutAfter += receiver.bytes;
      missing += Math.max(0, receiver.sentAtCut - receiver.bytes);
    } else if (result.drained) lost += result.sentRecords - receiver.records;
    else {
      // Not drained: what it skipped is lost, what it has not reached yet may still come.
      lost += receiver.lost;
      behind += result.sentRecords - receiver.records - receiver.lost;
    }
  });
  const seconds = Math.max(measuredS, 0.001);
  const bytes = atStop.receivers.reduce((sum, receiver) => sum + receiver.bytes, 0);
  const records = atStop.receivers.reduce((sum, receiver) => sum + receiver.records, 0);
  return {
    receivers: receivers.length,
    cut,
    lost,
    behind,
    reordered,
    missingBytes: missing,
    cutAfterBytes: cut === 0 ? 0 : cutAfter / cut,
    mbPerS: round(bytes / seconds / 1e6 / Math.max(1, receivers.length), 2),
    deliveriesPerS: Math.round(records / seconds),
    p50Ms: round(result.p50Us / 1000, 2),
    p99Ms: round(result.p99Us / 1000, 2),
    maxMs: round(result.maxUs / 1000, 1),
    drained: result.drained,
    sentMiB: mib(result.sentBytes),
  };
}

const free = (count: number): Pace[] => Array.from({ length: count }, () => null);
/**
 * The healthy broadcast of attacks whose attackers are members that read it too: 100 records of 200 B per
 * second in 10 writes, so that thousands of attackers reading it cost the server and this process little.
 */
const LIGHT: SenderConfig = { mode: 'paced', size: 200, writeBytes: 2000, bytesPerSecond: 20_000, intervalMs: 100 };
const paced = (bytesPerSecond: number, size = 256): SenderConfig => ({
  mode: 'paced',
  size,
  writeBytes: Math.max(size, 16 * 1024),
  bytesPerSecond,
});

/** Runs the probe for `seconds` (calling `during` meanwhile), then stops it and returns what it saw. */
async function measure(
  ctx: AttackContext,
  probe: Probe,
  seconds: number,
  during?: (until: number) => Promise<void>,
  drain: { quietMs: number; timeoutMs: number } = { quietMs: 2000, timeoutMs: 15_000 },
): Promise<Healthy> {
  await probe.ready();
  probe.start();
  const until = Date.now() + seconds * 1000;
  await Promise.all([
    during?.(until),
    (async () => {
      while (ctx.running(until)) await sleep(100);
    })(),
  ]);
  return healthyOf(await probe.stop(drain.quietMs, drain.timeoutMs));
}

function written(socket: net.Socket, data: Buffer | string): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(false);
    socket.write(data, (error) => resolve(error == null));
  });
}

function closedOf(socket: net.Socket, timeoutMs = 2000): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return Promise.race([new Promise<void>((resolve) => socket.once('close', () => resolve())), sleep(timeoutMs)]);
}

// ------------------------------------------------------------------ 8.1 rate limits

const RATE_FLAGS = ['--framing', 'line', '--max-messages-per-second', '10', '--max-clients', '10'];
/** The run: 16.5 MiB of empty lines, 64 KiB per connection. */
const RATE_RESET_CYCLES = 264;

const rateReset: Attack = {
  name: 'rate-reset',
  item: '8.1',
  what: 'rate-limited line clients send 64 KiB of \\n and reset (4 loops, 16.5 MiB or 10 s); then 5 s of quiet',
  timeoutMs: 60_000,
  async run(ctx) {
    const cli = await ctx.cli(RATE_FLAGS);
    const probe = ctx.probe({ port: cli.port, receivers: free(2), sender: { ...paced(5 * 64, 64), writeBytes: 64 } });
    const lines = Buffer.alloc(64 * 1024, 0x0a);
    let cycles = 0;
    let sent = 0;
    let refused = 0;
    await probe.ready();
    probe.start();
    const begun = Date.now();
    const until = begun + 10_000;
    const loop = async (): Promise<void> => {
      while (ctx.running(until) && cycles < RATE_RESET_CYCLES && cli.sample() < RSS_CAP) {
        // Spread over the 10 s, as in the run (16.5 MiB in 10 s).
        const due = begun + (cycles * 10_000) / RATE_RESET_CYCLES;
        cycles += 1;
        if (due > Date.now()) await sleep(due - Date.now());
        const socket = await ctx.pool.connect(cli.port).catch(() => null);
        if (socket === null || !(await written(socket, lines))) {
          refused += 1;
          continue;
        }
        sent += lines.length;
        await sleep(5);
        if (!socket.destroyed) socket.resetAndDestroy();
        await closedOf(socket);
      }
    };
    await Promise.all([loop(), loop(), loop(), loop()]);
    const stoppedAt = Date.now();
    ctx.figures.attack_s = round((stoppedAt - begun) / 1000);
    ctx.figures.cycles = cycles;
    ctx.figures.refused = refused;
    ctx.figures.sent_mib = mib(sent);
    ctx.figures.rss_at_stop_mib = mib(cli.sample());
    const linesSeen = async (): Promise<number> =>
      Math.max(...(await probe.snapshot()).receivers.map((receiver) => receiver.foreignLines));
    const before = await linesSeen();
    await sleep(5000);
    const after = await linesSeen();
    const quiet = (Date.now() - stoppedAt) / 1000;
    ctx.figures.rss_5s_after_mib = mib(cli.sample());
    ctx.figures.lines_after_stop = after - before;
    ctx.figures.lines_per_s_after = Math.round((after - before) / quiet);
    return healthyOf(await probe.stop(2000, 10_000));
  },
};

const rateStay: Attack = {
  name: 'rate-stay',
  item: '8.1',
  what: '8 rate-limited line clients send 64 KiB of \\n each and stay connected',
  timeoutMs: 40_000,
  async run(ctx) {
    const cli = await ctx.cli(RATE_FLAGS);
    const probe = ctx.probe({ port: cli.port, receivers: free(1), sender: { ...paced(5 * 64, 64), writeBytes: 64 } });
    const attackers = 8; // with the probe's 2 connections: --max-clients 10
    return measure(ctx, probe, 6, async () => {
      await sleep(500);
      const base = cli.sample();
      const lines = Buffer.alloc(64 * 1024, 0x0a);
      const { sockets } = await ctx.pool.connectMany(attackers, attackers, async () => {
        const socket = await ctx.pool.connect(cli.port);
        await written(socket, lines);
        return socket;
      });
      await sleep(3000);
      const held = cli.sample();
      ctx.figures.attackers = sockets.length;
      ctx.figures.rss_before_mib = mib(base);
      ctx.figures.rss_held_mib = mib(held);
      ctx.figures.mib_per_attacker = round((held - base) / Math.max(1, sockets.length) / MiB, 2);
      ctx.figures.bound_mib = 1; // maxPendingBytes
    });
  },
};

// ------------------------------------------------------------------ 8.2 a slow majority

function slowMajority(
  name: string,
  readers: readonly Pace[],
  floodBytesPerSecond: number,
  what: string,
  seconds = 8,
): Attack {
  return {
    name,
    item: '8.2',
    what,
    timeoutMs: 52_000 + seconds * 1000,
    async run(ctx) {
      const cli = await ctx.cli([]);
      const probe = ctx.probe({
        port: cli.port,
        receivers: readers,
        sender: { mode: 'paced', size: 4096, writeBytes: 64 * 1024, bytesPerSecond: floodBytesPerSecond },
      });
      const healthy = await measure(ctx, probe, seconds, undefined, { quietMs: 3000, timeoutMs: 25_000 });
      ctx.figures.readers_cut = `${healthy.cut}/${healthy.receivers}`;
      if (healthy.cut > 0) ctx.figures.cut_after_mib = mib(healthy.cutAfterBytes);
      ctx.figures.missing_mib = mib(healthy.missingBytes);
      return healthy;
    },
  };
}

const slowReaders = (bytesPerSecond: readonly number[], kind: 'rate' | 'chunk' = 'rate'): Pace[] =>
  bytesPerSecond.map((rate) => ({ kind, bytesPerSecond: rate }));

// ------------------------------------------------------------------ 8.3 a closed log pipe

const epipe: Attack = {
  name: 'epipe',
  item: '8.3',
  what: "the CLI's stderr reader goes away; a slow consumer is cut (a warning), then SIGTERM; and SIGTERM alone",
  timeoutMs: 60_000,
  async run(ctx) {
    const cli = await ctx.cli(['--max-queued-bytes', String(256 * 1024), '--high-water-mark', String(64 * 1024)], {
      stderr: 'raw',
    });
    cli.child.stderr?.destroy();
    const stalled = await ctx.pool.connect(cli.port, { paused: true });
    const probe = ctx.probe({
      port: cli.port,
      receivers: free(1),
      sender: { mode: 'flood', size: 4096, writeBytes: 64 * 1024 },
    });
    await probe.ready();
    probe.start();
    const begun = Date.now();
    // Until the stalled reader is cut (the warning is written) or the CLI dies of it, 15 s at most.
    while (ctx.running(begun + 15_000) && cli.alive && stillOpen(cli.port, [stalled]) === 1) await sleep(20);
    const warnedAt = Date.now();
    await sleep(1000);
    const healthy = healthyOf(await probe.stop(500, 5000));
    ctx.figures.alive_after_warning = cli.alive;
    if (!cli.alive) {
      ctx.figures.died_ms = warnedAt - begun;
      ctx.figures.exit_on_warning = cli.exit?.code ?? String(cli.exit?.signal);
    } else {
      ctx.figures.slow_consumer_cut = stillOpen(cli.port, [stalled]) === 0;
      const stop = await cli.stop(5000);
      ctx.figures.sigterm_exit_after_warning = stop.code ?? String(stop.signal);
    }
    const quiet = await ctx.cli([], { stderr: 'raw' });
    quiet.child.stderr?.destroy();
    await sleep(200);
    const stop = await quiet.stop(5000);
    ctx.figures.sigterm_exit_no_warning = stop.code ?? String(stop.signal);
    return healthy;
  },
};

// ------------------------------------------------------------------ 8.4 many stalled readers, line vs raw

/** The flood of the stalled-readers attacks: 64-byte lines at this rate (what the probe can check in one thread). */
const STALLED_FLOOD = 16e6;

function stalledReaders(name: string, count: number, framing: 'line' | 'raw'): Attack {
  return {
    name,
    item: '8.4',
    what: `${count.toLocaleString('en-US')} never-reading connections + one sender of 64 B lines at ${STALLED_FLOOD / 1e6} MB/s, ${framing} framing`,
    timeoutMs: 90_000,
    async run(ctx) {
      const cli = await ctx.cli(framing === 'line' ? ['--framing', 'line'] : []);
      const { sockets, failed } = await ctx.pool.connectMany(count, 100, () =>
        ctx.pool.connect(cli.port, { paused: true }),
      );
      ctx.figures.stalled = sockets.length;
      if (failed > 0) ctx.figures.connect_failed = failed;
      await sleep(500);
      ctx.figures.rss_idle_mib = mib(cli.sample());
      const probe = ctx.probe({
        port: cli.port,
        receivers: free(3),
        sender: { mode: 'paced', size: 64, writeBytes: 64 * 1024, bytesPerSecond: STALLED_FLOOD },
      });
      const healthy = await measure(ctx, probe, 10);
      ctx.figures.stalled_cut = sockets.length - stillOpen(cli.port, sockets);
      return healthy;
    },
  };
}

// ------------------------------------------------------------------ 8.5 never-reading joiners under drop policies

function lateJoiners(name: string, policy: 'drop-newest' | 'drop-oldest' | 'disconnect'): Attack {
  return {
    name,
    item: '8.5',
    what: `--slow-consumer ${policy}: 150 never-reading receivers join one every 120 ms during a 20 s flood`,
    timeoutMs: 80_000,
    async run(ctx) {
      const cli = await ctx.cli(['--slow-consumer', policy]);
      const probe = ctx.probe({
        port: cli.port,
        receivers: free(3),
        sender: { mode: 'flood', size: 16 * 1024, writeBytes: 64 * 1024 },
      });
      const joiners: net.Socket[] = [];
      const healthy = await measure(ctx, probe, 20, async (until) => {
        for (let i = 0; i < 150 && ctx.running(until); i += 1) {
          const next = Date.now() + 120;
          joiners.push(await ctx.pool.connect(cli.port, { paused: true }));
          await sleep(Math.max(0, next - Date.now()));
        }
        await sleep(Math.max(0, until - Date.now() - 200));
        ctx.figures.joiners = joiners.length;
        ctx.figures.joiners_cut = joiners.length - stillOpen(cli.port, joiners);
      });
      return healthy;
    },
  };
}

// ------------------------------------------------------------------ 8.6 newcomers that never read

function newcomers(name: string, attack: boolean): Attack {
  return {
    name,
    item: '8.6',
    what: attack
      ? 'a windowed broadcast to 3 receivers while one never-reading connection joins every 100 ms'
      : 'the same windowed broadcast without the attack',
    timeoutMs: 50_000,
    async run(ctx) {
      const cli = await ctx.cli([]);
      const probe = ctx.probe({
        port: cli.port,
        receivers: free(3),
        sender: { mode: 'windowed', size: 4096, writeBytes: 64 * 1024, windowBytes: MiB },
      });
      const joined: net.Socket[] = [];
      return measure(ctx, probe, 10, async (until) => {
        if (!attack) return;
        while (ctx.running(until - 100)) {
          const next = Date.now() + 100;
          void ctx.pool.connect(cli.port, { paused: true }).then(
            (socket) => joined.push(socket),
            () => undefined,
          );
          await sleep(Math.max(0, next - Date.now()));
        }
        ctx.figures.newcomers = joined.length;
        ctx.figures.newcomers_cut = joined.length - stillOpen(cli.port, joined);
      });
    },
  };
}

// ------------------------------------------------------------------ 8.7 TLS renegotiation

const tlsReneg: Attack = {
  name: 'tls-reneg',
  item: '8.7',
  what: '4 TLS 1.2 clients renegotiate in a loop for 10 s',
  timeoutMs: 40_000,
  async run(ctx) {
    const cli = await ctx.cli(TLS_FLAGS);
    const ca = CA();
    const probe = ctx.probe({ port: cli.port, tlsCa: ca, receivers: free(2), sender: paced(1e6) });
    let done = 0;
    let failures = 0;
    let firstError: string | null = null;
    const clients: tls.TLSSocket[] = [];
    const healthy = await measure(ctx, probe, 10, async (until) => {
      for (let i = 0; i < 4; i += 1) {
        const socket = ctx.pool.add(
          tls.connect({ port: cli.port, host: '127.0.0.1', ca, servername: 'localhost', maxVersion: 'TLSv1.2' }),
        );
        socket.on('data', () => undefined);
        socket.setNoDelay(true); // handshake messages are small: no Nagle delay on top of the server's delayed ACKs
        await new Promise<void>((resolve, reject) => {
          socket.once('secureConnect', () => resolve());
          socket.once('error', reject);
        });
        clients.push(socket);
      }
      const cpu = cli.cpu();
      const begun = Date.now();
      const loop = async (socket: tls.TLSSocket): Promise<void> => {
        // A server that cuts the connection mid-renegotiation never calls renegotiate()'s callback.
        const cut = new Promise<Error>((resolve) =>
          socket.once('close', () => resolve(new Error('connection closed'))),
        );
        while (ctx.running(until) && !socket.destroyed) {
          const renegotiated = new Promise<Error | null>((resolve) => {
            const started = socket.renegotiate({ rejectUnauthorized: true }, (err) => resolve(err ?? null));
            if (started === false) resolve(new Error('renegotiate() refused to start'));
          });
          const error = await Promise.race([renegotiated, cut]);
          if (error === null) done += 1;
          else {
            failures += 1;
            firstError ??= error.message;
            break;
          }
        }
      };
      await Promise.all(clients.map(loop));
      const seconds = (Date.now() - begun) / 1000;
      ctx.figures.renegotiations = done;
      ctx.figures.reneg_per_s = Math.round(done / seconds);
      ctx.figures.server_cores = round((cli.cpu() - cpu) / seconds, 2);
      await sleep(300);
      ctx.figures.clients_cut = `${clients.filter((socket) => socket.destroyed || socket.closed).length}/4`;
      if (firstError !== null) ctx.figures.first_error = firstError;
      ctx.figures.failures = failures;
    });
    return healthy;
  },
};

// ------------------------------------------------------------------ 8.9 partial lines one byte per packet

const partialBytes: Attack = {
  name: 'partial-bytes',
  item: '8.9',
  what: '500 clients each send one byte per packet of a long partial line (line framing), 10 s',
  timeoutMs: 50_000,
  async run(ctx) {
    const cli = await ctx.cli(['--framing', 'line']);
    const { sockets } = await ctx.pool.connectMany(500, 100, () => ctx.pool.connect(cli.port));
    for (const socket of sockets) socket.setNoDelay(true);
    const probe = ctx.probe({ port: cli.port, receivers: free(2), sender: LIGHT });
    return measure(ctx, probe, 12, async (until) => {
      await sleep(500);
      const base = cli.sample();
      let sent = 0;
      const byte = Buffer.from('x');
      // At most maxMessageBytes - 1 per client: the lines stay partial, never too long.
      for (let round = 0; round < 65_000 && ctx.running(until - 1500); round += 1) {
        for (const socket of sockets) if (!socket.destroyed && socket.write(byte)) sent += 1;
        await new Promise((resolve) => setImmediate(resolve));
      }
      await sleep(1000);
      const held = cli.sample();
      ctx.figures.clients = sockets.length;
      ctx.figures.bytes_held = sent;
      ctx.figures.rss_growth_mib = mib(held - base);
      ctx.figures.rss_bytes_per_byte = round((held - base) / Math.max(1, sent));
      ctx.figures.clients_cut = sockets.length - stillOpen(cli.port, sockets);
    });
  },
};

// ------------------------------------------------------------------ 8.10 the per-address limit from many addresses

function perPrefix(name: string, prefixFlags: readonly string[]): Attack {
  return {
    name,
    item: '8.10',
    what: `${['--max-connections-per-address 50', ...prefixFlags].join(' ')}: 5,000 connections from 127.0.0.1-100`,
    timeoutMs: 40_000,
    async run(ctx) {
      const cli = await ctx.cli(['--max-connections-per-address', '50', ...prefixFlags]);
      const { sockets, failed } = await ctx.pool.connectMany(5000, 200, (index) =>
        ctx.pool.connect(cli.port, { localAddress: `127.0.0.${1 + (index % 100)}` }),
      );
      await sleep(1500);
      const accepted = stillOpen(cli.port, sockets);
      ctx.figures.attempted = 5000;
      ctx.figures.connect_failed = failed;
      ctx.figures.accepted = accepted;
      ctx.figures.refused = 5000 - accepted;
      return null;
    },
  };
}

// ------------------------------------------------------------------ 8.11 SIGHUP

/** A receiver that does not read has 16 MiB queued for it; then `signal`; does it all arrive? */
async function queuedAtSignal(ctx: AttackContext, signal: NodeJS.Signals, key: string): Promise<void> {
  const cli = await ctx.cli(['--max-queued-bytes', String(64 * MiB)]);
  const receiver = await ctx.pool.connect(cli.port, { paused: true });
  const sender = await ctx.pool.connect(cli.port);
  await sleep(300);
  const total = 16 * MiB;
  const block = Buffer.alloc(64 * 1024, 0x61);
  for (let sent = 0; sent < total; sent += block.length) await written(sender, block);
  await sleep(800);
  let got = 0;
  let lastAt = Date.now();
  receiver.on('data', (chunk: Buffer) => {
    got += chunk.length;
    lastAt = Date.now();
  });
  cli.signal(signal);
  receiver.resume();
  const exit = await Promise.race([cli.exited, sleep(10_000, null)]);
  while (!receiver.closed && Date.now() - lastAt < 2000) await sleep(50);
  ctx.figures[`${key}_exit`] = exit === null ? 'still running' : (exit.code ?? String(exit.signal));
  ctx.figures[`${key}_arrived_mib`] = `${mib(got)}/${mib(total)}`;
}

const sighup: Attack = {
  name: 'sighup',
  item: '8.11',
  what: 'SIGHUP while a receiver has 16 MiB queued (and SIGTERM, for comparison)',
  timeoutMs: 60_000,
  async run(ctx) {
    await queuedAtSignal(ctx, 'SIGHUP', 'hup');
    await queuedAtSignal(ctx, 'SIGTERM', 'term');
    return null;
  },
};

// ------------------------------------------------------------------ 8.12 slowloris

const slowloris: Attack = {
  name: 'slowloris',
  item: '8.12',
  what: '3,000 connections send one byte of a partial line every 3 s (line framing), 15 s',
  timeoutMs: 70_000,
  async run(ctx) {
    const cli = await ctx.cli(['--framing', 'line']);
    const { sockets, failed } = await ctx.pool.connectMany(3000, 200, () => ctx.pool.connect(cli.port));
    ctx.figures.connections = sockets.length;
    if (failed > 0) ctx.figures.connect_failed = failed;
    const timers: NodeJS.Timeout[] = [];
    const probe = ctx.probe({ port: cli.port, receivers: free(2), sender: LIGHT });
    try {
      sockets.forEach((socket, index) => {
        const tick = (): void => {
          if (!socket.destroyed) socket.write('z');
        };
        timers.push(
          setTimeout(
            () => {
              tick();
              timers.push(setInterval(tick, 3000));
            },
            (index / sockets.length) * 3000,
          ),
        );
      });
      const healthy = await measure(ctx, probe, 15);
      ctx.figures.cut = sockets.length - stillOpen(cli.port, sockets);
      return healthy;
    } finally {
      for (const timer of timers) clearTimeout(timer);
    }
  },
};

// ------------------------------------------------------------------ round one again

const floodStalled: Attack = {
  name: 'flood-stalled',
  item: 'r1',
  what: 'one stalled reader under a 256 MiB flood to 10 receivers',
  timeoutMs: 90_000,
  async run(ctx) {
    const cli = await ctx.cli([]);
    const stalled = await ctx.pool.connect(cli.port, { paused: true });
    const total = 256 * MiB;
    const probe = ctx.probe({
      port: cli.port,
      receivers: free(10),
      sender: { mode: 'flood', size: 16 * 1024, writeBytes: 64 * 1024, maxBytes: total },
    });
    await probe.ready();
    probe.start();
    const until = Date.now() + 45_000;
    while (ctx.running(until) && (await probe.snapshot()).sentBytes < total) await sleep(250);
    const healthy = healthyOf(await probe.stop(2000, 20_000));
    ctx.figures.flood_mib = healthy.sentMiB;
    ctx.figures.stalled_cut = stillOpen(cli.port, [stalled]) === 0;
    return healthy;
  },
};

const resets: Attack = {
  name: 'resets',
  item: 'r1',
  what: 'connect, send a line and half of one, reset; 4 loops for 10 s (line framing)',
  timeoutMs: 40_000,
  async run(ctx) {
    const cli = await ctx.cli(['--framing', 'line']);
    const probe = ctx.probe({ port: cli.port, receivers: free(3), sender: paced(2e6, 128) });
    let cycles = 0;
    const healthy = await measure(ctx, probe, 10, async (until) => {
      const loop = async (which: number): Promise<void> => {
        for (let n = 0; ctx.running(until); n += 1) {
          const socket = await ctx.pool.connect(cli.port).catch(() => null);
          if (socket === null) continue;
          await sleep(10 + ((n * 37 + which * 11) % 60));
          if (n % 2 === 0) socket.write(`R${n} whole\n`);
          socket.write(`R${n} partial, never to be completed`);
          await sleep(5);
          if (!socket.destroyed) socket.resetAndDestroy();
          cycles += 1;
          await closedOf(socket);
        }
      };
      await Promise.all([0, 1, 2, 3].map(loop));
    });
    ctx.figures.cycles = cycles;
    return healthy;
  },
};

const idleCrowd: Attack = {
  name: 'idle-crowd',
  item: 'r1',
  what: '2,000 idle connections, then a 20 kB/s broadcast that they all read',
  timeoutMs: 50_000,
  async run(ctx) {
    const cli = await ctx.cli([]);
    await sleep(300);
    const base = cli.sample();
    const counts = new Map<net.Socket, number>();
    const { sockets } = await ctx.pool.connectMany(2000, 100, async () => {
      const socket = await ctx.pool.connect(cli.port);
      counts.set(socket, 0);
      socket.on('data', (chunk: Buffer) => counts.set(socket, (counts.get(socket) ?? 0) + chunk.length));
      return socket;
    });
    await sleep(1000);
    const crowd = cli.sample();
    ctx.figures.idle = sockets.length;
    ctx.figures.kib_per_idle = round((crowd - base) / Math.max(1, sockets.length) / 1024, 2);
    const probe = ctx.probe({ port: cli.port, receivers: free(2), sender: LIGHT });
    await probe.ready();
    probe.start();
    await sleep(5000);
    const result = await probe.stop(2000, 15_000);
    await sleep(1000);
    ctx.figures.idle_complete = sockets.filter((socket) => (counts.get(socket) ?? 0) >= result.wroteBytes).length;
    ctx.figures.idle_cut = sockets.length - stillOpen(cli.port, sockets);
    return healthyOf(result);
  },
};

/** The first bytes a TLS client sends (its ClientHello), caught by a plain TCP server. */
async function clientHello(): Promise<Buffer> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        resolve(chunk);
        socket.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') return reject(new Error('no address'));
      const client = tls.connect({ port: address.port, host: '127.0.0.1', servername: 'localhost' });
      client.on('error', () => undefined);
    });
  });
}

const tlsHandshakes: Attack = {
  name: 'tls-handshakes',
  item: 'r1',
  what: '2,000 TLS handshakes left half done (half a ClientHello), then a 1 MB/s TLS broadcast',
  timeoutMs: 50_000,
  async run(ctx) {
    const cli = await ctx.cli(TLS_FLAGS);
    const hello = await clientHello();
    const half = hello.subarray(0, Math.floor(hello.length / 2));
    await sleep(300);
    const base = cli.sample();
    const { sockets } = await ctx.pool.connectMany(2000, 100, async () => {
      const socket = await ctx.pool.connect(cli.port);
      socket.write(half);
      return socket;
    });
    await sleep(1000);
    const crowd = cli.sample();
    ctx.figures.half_done = sockets.length;
    ctx.figures.kib_per_handshake = round((crowd - base) / Math.max(1, sockets.length) / 1024, 2);
    const probe = ctx.probe({ port: cli.port, tlsCa: CA(), receivers: free(2), sender: paced(1e6) });
    const healthy = await measure(ctx, probe, 5);
    ctx.figures.half_done_open = stillOpen(cli.port, sockets);
    return healthy;
  },
};

/** Every attack, in the order of the default run. */
export const ATTACKS: readonly Attack[] = [
  rateReset,
  rateStay,
  slowMajority(
    'slow-majority',
    slowReaders([5e6, 5e6, 5e6]),
    30e6,
    '3 receivers read at 5 MB/s; one sender at 30 MB/s',
  ),
  slowMajority(
    'slow-majority-1',
    slowReaders([1e6, 1e6, 1e6]),
    3e6,
    '3 receivers read at 1 MB/s; one sender at 3 MB/s',
  ),
  slowMajority(
    'slow-majority-fast',
    slowReaders([10e6, 15e6, 20e6]),
    30e6,
    'receivers read at 10, 15 and 20 MB/s; one sender at 30 MB/s',
  ),
  slowMajority(
    'slow-majority-mixed',
    slowReaders([8e6, 12e6, 25e6]),
    30e6,
    'receivers read at 8, 12 and 25 MB/s; one sender at 30 MB/s (a variant)',
  ),
  slowMajority(
    'slow-majority-four',
    [...slowReaders([10e6, 15e6, 20e6]), null],
    30e6,
    'receivers read at 10, 15 and 20 MB/s and one as fast as it can; one sender at 30 MB/s (a variant)',
  ),
  slowMajority(
    'slow-majority-long',
    [...slowReaders([10e6, 15e6, 20e6]), null],
    30e6,
    'the four receivers of slow-majority-four for 30 s (past the 10 s a slow reader is remembered)',
    30,
  ),
  slowMajority(
    'slow-minority',
    [...slowReaders([5e6]), null, null],
    30e6,
    'the other side: one receiver reads at 5 MB/s, two as fast as they can; one sender at 30 MB/s (the slow one is cut)',
  ),
  slowMajority(
    'slow-majority-pausing',
    slowReaders([4e6, 4e6, 4e6], 'chunk'),
    30e6,
    '3 receivers pause after each chunk in proportion to it (4 MB/s); one sender at 30 MB/s',
  ),
  epipe,
  stalledReaders('line-stalled-2000', 2000, 'line'),
  stalledReaders('line-stalled-1000', 1000, 'line'),
  stalledReaders('raw-stalled-2000', 2000, 'raw'),
  lateJoiners('drop-newest-150', 'drop-newest'),
  lateJoiners('drop-oldest-150', 'drop-oldest'),
  lateJoiners('disconnect-150', 'disconnect'),
  newcomers('newcomer-baseline', false),
  newcomers('newcomer-stall', true),
  tlsReneg,
  partialBytes,
  perPrefix('per-prefix', []),
  perPrefix('per-prefix-24', ['--ipv4-prefix', '24']),
  sighup,
  slowloris,
  floodStalled,
  resets,
  idleCrowd,
  tlsHandshakes,
];
