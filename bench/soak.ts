/**
 * `npm run soak`: a bounded soak of the multiplexer under a mix of healthy and hostile clients, with
 * verified deliveries, peak server RSS, drops, disconnects by reason and leaked descriptors at the end.
 *
 * The server runs in a child process, so that its RSS and descriptors are its own and the load generated
 * here does not compete with it for an event loop. By default the child is this script started with
 * `--serve`: it builds the same Multiplexer as `multiplexer --framing line --max-message-bytes 65536
 * --max-queued-bytes 2097152 --high-water-mark 262144` and also answers `stats()` over IPC, which the
 * CLI cannot. `SOAK_SERVER=cli` runs the real CLI with those flags instead (stats are then not available;
 * everything measured from outside still is).
 *
 * The mix, all at once, until SOAK_SECONDS have passed:
 * - healthy receivers, connected for the whole run, that check every line of every broadcaster
 *   (sequence numbers and payload) and flag any line nobody should have sent them;
 * - steady broadcasters, paced to SOAK_RATE bytes per second together;
 * - one stalled reader at a time that never reads for SOAK_STALL_MS (it should be disconnected as a slow
 *   consumer by then);
 * - clients that reset their connection, after a whole line or in the middle of one;
 * - churn: connect, maybe send a line, close or destroy, again and again;
 * - idle connections that never send;
 * - clients that send a line longer than maxMessageBytes (they should be told and disconnected).
 *
 * Environment: SOAK_SECONDS (180), SOAK_SERVER (fork | cli), SOAK_RATE (1000000), SOAK_SENDERS (4),
 * SOAK_RECEIVERS (6), SOAK_IDLE (200), SOAK_CHURNERS (4), SOAK_STALL_MS (15000: long enough at that rate
 * to fill the socket buffers and then maxQueuedBytes), SOAK_MAX_RSS_MIB (256).
 * Exits 1 when a delivery was wrong, a healthy client was dropped, a descriptor leaked, the server died or
 * its RSS passed SOAK_MAX_RSS_MIB.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Multiplexer, type MultiplexerOptions, type MultiplexerStats } from '../lib';
import { rssKiB } from './procfs';

const MiB = 1024 * 1024;
const MAX_MESSAGE_BYTES = 65_536;

/** The server's settings, and the CLI flags that give the same. */
const SERVER_OPTIONS: MultiplexerOptions = {
  framing: 'line',
  maxMessageBytes: MAX_MESSAGE_BYTES,
  maxQueuedBytes: 2 * MiB,
  highWaterMark: 256 * 1024,
  debugLevel: 'error',
};
const CLI_FLAGS = [
  '--framing',
  'line',
  '--max-message-bytes',
  String(MAX_MESSAGE_BYTES),
  '--max-queued-bytes',
  String(2 * MiB),
  '--high-water-mark',
  String(256 * 1024),
  '--debug-level',
  'error',
];

interface SoakConfig {
  readonly seconds: number;
  readonly server: 'fork' | 'cli';
  readonly rate: number;
  readonly senders: number;
  readonly receivers: number;
  readonly idle: number;
  readonly churners: number;
  readonly stallMs: number;
  readonly maxRssMiB: number;
}

function envNumber(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a number >= 0; got ${text}`);
  return value;
}

function readConfig(): SoakConfig {
  const server = process.env.SOAK_SERVER ?? 'fork';
  if (server !== 'fork' && server !== 'cli') throw new RangeError(`SOAK_SERVER must be fork or cli; got ${server}`);
  return {
    seconds: envNumber('SOAK_SECONDS', 180),
    server,
    rate: envNumber('SOAK_RATE', 1_000_000),
    senders: Math.max(1, Math.floor(envNumber('SOAK_SENDERS', 4))),
    receivers: Math.max(1, Math.floor(envNumber('SOAK_RECEIVERS', 6))),
    idle: Math.floor(envNumber('SOAK_IDLE', 200)),
    churners: Math.floor(envNumber('SOAK_CHURNERS', 4)),
    stallMs: envNumber('SOAK_STALL_MS', 15_000),
    maxRssMiB: envNumber('SOAK_MAX_RSS_MIB', 256),
  };
}

// ------------------------------------------------------------------ the server child (--serve)

type ServerMessage = { type: 'listening'; port: number } | { type: 'stats'; id: number; stats: MultiplexerStats };
type ServerCommand = { cmd: 'stats'; id: number };

async function serve(): Promise<void> {
  const mux = new Multiplexer(SERVER_OPTIONS);
  const address = await mux.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`multiplexer listening on 127.0.0.1:${address.port} (line framing)\n`);
  process.send?.({ type: 'listening', port: address.port } satisfies ServerMessage);
  process.on('message', (message: ServerCommand) => {
    if (message.cmd === 'stats')
      process.send?.({ type: 'stats', id: message.id, stats: mux.stats() } satisfies ServerMessage);
  });
  const stop = (): void => {
    void mux.destroy({ timeout: 2_000 }).then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
}

// ------------------------------------------------------------------ the server, seen from the parent

interface ServerHandle {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  /** The server's stats, or null when it cannot tell them (the CLI). */
  stats(): Promise<MultiplexerStats | null>;
}

/** Resident set size of a process in bytes, or 0 when it cannot be read. */
function rssOf(pid: number): number {
  return Math.max(0, rssKiB(pid)) * 1024;
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

function startServer(kind: 'fork' | 'cli'): Promise<ServerHandle> {
  if (kind === 'cli') {
    const child = spawn(
      process.execPath,
      [join(__dirname, '..', 'lib', 'cli.js'), '--host', '127.0.0.1', '--port', '0', ...CLI_FLAGS],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    return new Promise((resolve, reject) => {
      let out = '';
      child.once('exit', (code) => reject(new Error(`the CLI exited with ${code} before listening`)));
      child.stdout.setEncoding('utf8').on('data', (text: string) => {
        out += text;
        const match = /listening on .*:(\d+)/.exec(out);
        if (match !== null && child.pid !== undefined)
          resolve({ child, pid: child.pid, port: Number(match[1]), stats: () => Promise.resolve(null) });
      });
    });
  }
  const child = fork(__filename, ['--serve'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  let nextId = 0;
  const waiting = new Map<number, (stats: MultiplexerStats) => void>();
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the server exited with ${code} before listening`)));
    child.on('message', (message: ServerMessage) => {
      if (message.type === 'stats') {
        waiting.get(message.id)?.(message.stats);
        waiting.delete(message.id);
      }
      if (message.type === 'listening' && child.pid !== undefined) {
        resolve({
          child,
          pid: child.pid,
          port: message.port,
          stats: () =>
            new Promise((done) => {
              if (!child.connected) return done(null);
              const id = nextId++;
              const timer = setTimeout(() => {
                waiting.delete(id);
                done(null);
              }, 2_000);
              waiting.set(id, (stats) => {
                clearTimeout(timer);
                done(stats);
              });
              child.send({ cmd: 'stats', id } satisfies ServerCommand);
            }),
        });
      }
    });
  });
}

// ------------------------------------------------------------------ clients

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

function closed(socket: net.Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([promise, sleep(ms, 'timeout' as const)]);
}

/** The line broadcaster `id` sends as number `seq` (without its newline): 100 to 999 bytes of payload. */
function broadcastLine(id: number, seq: number): string {
  const letter = String.fromCharCode(97 + ((id * 7 + seq) % 26));
  return `B${id} ${seq} ${letter.repeat(100 + ((seq * 7919) % 900))}`;
}

/** A healthy receiver: checks every line it gets. */
class CheckingReceiver {
  /** Last sequence number seen per broadcaster. */
  readonly lastSeq: number[];
  verified = 0;
  errors = 0;
  readonly firstErrors: string[] = [];
  foreign = 0;
  readonly kinds = { resetPartial: 0, probe: 0 };
  closed = false;
  private partial = '';

  constructor(
    readonly socket: net.Socket,
    senders: number,
  ) {
    this.lastSeq = Array.from({ length: senders }, () => -1);
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => this.onText(text));
    socket.on('close', () => (this.closed = true));
  }

  private fail(message: string): void {
    this.errors += 1;
    if (this.firstErrors.length < 5) this.firstErrors.push(message);
  }

  private onText(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    for (const line of lines) this.onLine(line);
  }

  private onLine(line: string): void {
    const kind = line[0];
    if (kind === 'B') {
      const match = /^B(\d+) (\d+) /.exec(line);
      const id = match === null ? -1 : Number(match[1]);
      const seq = match === null ? -1 : Number(match[2]);
      if (match === null || !(id >= 0 && id < this.lastSeq.length))
        return this.fail(`malformed line ${JSON.stringify(line.slice(0, 40))}`);
      if (seq !== this.lastSeq[id] + 1) this.fail(`broadcaster ${id}: got ${seq} after ${this.lastSeq[id]}`);
      else if (line !== broadcastLine(id, seq)) this.fail(`broadcaster ${id}: line ${seq} corrupted`);
      else this.verified += 1;
      this.lastSeq[id] = seq;
    } else if ((kind === 'C' && /^C\d+$/.test(line)) || (kind === 'R' && /^R\d+ whole$/.test(line))) {
      // A churner's line, or the whole line of a client that reset afterwards: expected, nothing to check.
    } else if (kind === 'R' && /^R\d+ partial, never to be completed$/.test(line)) {
      // The half line of a client that reset right after writing it: Linux then reports EOF, not a reset,
      // to the server, and line framing completes an unfinished line at EOF. Counted, not an error.
      this.kinds.resetPartial += 1;
    } else if (kind === 'P' && /^P\d+$/.test(line)) this.kinds.probe += 1;
    else {
      // Part of an over-long line, the half line of a reset client, or anything else nobody sent whole.
      this.foreign += 1;
      this.fail(`foreign line ${JSON.stringify(line.slice(0, 40))} (${line.length} bytes)`);
    }
  }
}

interface Counters {
  sentLines: number[];
  sentBytes: number;
  stalls: number;
  stallsDisconnected: number;
  resets: number;
  churnCycles: number;
  churnFailures: number;
  overlong: number;
  overlongDisconnected: number;
  overlongTold: number;
  /** How the connections of over-long senders that were not told ended: end (FIN) or an error code. */
  overlongUntold: Record<string, number>;
}

// ------------------------------------------------------------------ the soak

async function soak(config: SoakConfig): Promise<number> {
  const server = await startServer(config.server);
  const { port, pid } = server;
  process.on('exit', () => server.child.kill('SIGKILL'));
  let serverDied = false;
  server.child.once('exit', () => (serverDied = true));
  await sleep(200);
  const fdsAtStart = fdCount(pid);
  let peakRss = rssOf(pid);
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, rssOf(pid))), 100);
  const counters: Counters = {
    sentLines: Array.from({ length: config.senders }, () => 0),
    sentBytes: 0,
    stalls: 0,
    stallsDisconnected: 0,
    resets: 0,
    churnCycles: 0,
    churnFailures: 0,
    overlong: 0,
    overlongDisconnected: 0,
    overlongTold: 0,
    overlongUntold: {},
  };
  process.stdout.write(
    `soak: ${config.seconds} s against ${config.server === 'fork' ? 'a forked server (this script --serve)' : 'the CLI'} pid ${pid} on port ${port}; ` +
      `${config.senders} broadcasters at ${config.rate} B/s, ${config.receivers} checking receivers, ${config.idle} idle, ${config.churners} churners\n`,
  );

  // Receivers first, then idle connections, then the broadcasters, each of which probes until every
  // receiver heard it: from then on every line it sends must reach every receiver.
  const receivers: CheckingReceiver[] = [];
  for (let i = 0; i < config.receivers; i += 1)
    receivers.push(new CheckingReceiver(await connect(port), config.senders));
  const idle: net.Socket[] = [];
  let idleBytes = 0;
  for (let i = 0; i < config.idle; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, config.idle - i) }, () => connect(port)));
    for (const socket of batch) socket.on('data', (chunk: Buffer) => (idleBytes += chunk.length));
    idle.push(...batch);
  }
  const senders: net.Socket[] = [];
  for (let id = 0; id < config.senders; id += 1) {
    const socket = await connect(port);
    socket.on('data', () => undefined);
    senders.push(socket);
    const heard = (): boolean => receivers.every((receiver) => receiver.kinds.probe > id);
    for (let attempt = 0; !heard(); attempt += 1) {
      if (attempt > 200) throw new Error(`broadcaster ${id} was never heard`);
      socket.write(`P${id}\n`);
      await sleep(25);
    }
  }

  const start = Date.now();
  const deadline = start + config.seconds * 1000;
  const running = (): boolean => Date.now() < deadline && !serverDied;

  const broadcaster = async (id: number): Promise<void> => {
    const socket = senders[id];
    const rate = config.rate / config.senders;
    const begun = Date.now();
    let bytes = 0;
    while (running() && !socket.destroyed) {
      const budget = ((Date.now() - begun) / 1000) * rate;
      while (bytes < budget) {
        const line = `${broadcastLine(id, counters.sentLines[id])}\n`;
        counters.sentLines[id] += 1;
        bytes += line.length;
        counters.sentBytes += line.length;
        if (!socket.write(line)) await new Promise<void>((resolve) => socket.once('drain', () => resolve()));
      }
      await sleep(10);
    }
  };

  const staller = async (): Promise<void> => {
    while (running()) {
      const socket = net.connect({ port, host: '127.0.0.1' });
      socket.pause();
      socket.on('error', () => undefined);
      const until = Date.now() + config.stallMs;
      while (Date.now() < until && running()) await sleep(100);
      if (Date.now() < until) {
        socket.destroy(); // the soak ended first: not an episode
        break;
      }
      counters.stalls += 1;
      socket.on('data', () => undefined);
      socket.resume();
      if ((await within(closed(socket), 5_000)) !== 'timeout') counters.stallsDisconnected += 1;
      socket.destroy();
      await sleep(500);
    }
  };

  const resetter = async (): Promise<void> => {
    for (let n = 0; running(); n += 1) {
      const socket = await connect(port).catch(() => null);
      if (socket === null) continue;
      socket.on('data', () => undefined);
      await sleep(50 + ((n * 37) % 250));
      if (n % 2 === 0) socket.write(`R${n} whole\n`);
      socket.write(`R${n} partial, never to be completed`);
      await sleep(5);
      socket.resetAndDestroy();
      counters.resets += 1;
      await sleep(300);
    }
  };

  const churner = async (which: number): Promise<void> => {
    for (let n = 0; running(); n += 1) {
      const socket = await connect(port).catch(() => null);
      if (socket === null) {
        counters.churnFailures += 1;
        continue;
      }
      socket.on('data', () => undefined);
      const mode = (n + which) % 3;
      if (mode === 0) socket.end(`C${n}\n`);
      else if (mode === 1) socket.end();
      else socket.destroy();
      if ((await within(closed(socket), 5_000)) === 'timeout') {
        counters.churnFailures += 1;
        socket.destroy();
      }
      counters.churnCycles += 1;
      await sleep(20);
    }
  };

  const overlong = async (): Promise<void> => {
    const line = Buffer.from(`L${'x'.repeat(100 * 1024)}\n`);
    while (running()) {
      const socket = await connect(port).catch(() => null);
      if (socket === null) continue;
      let text = '';
      let how = 'open';
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => (text = (text + chunk).slice(-4096)));
      socket.once('end', () => (how = how === 'open' ? 'end' : how));
      socket.once('error', (error: NodeJS.ErrnoException) => (how = how === 'open' ? (error.code ?? 'error') : how));
      counters.overlong += 1;
      for (let at = 0; at < line.length && !socket.destroyed; at += 8192) {
        socket.write(line.subarray(at, at + 8192));
        await sleep(1);
      }
      if ((await within(closed(socket), 5_000)) !== 'timeout') counters.overlongDisconnected += 1;
      if (text.includes(`error: message longer than ${MAX_MESSAGE_BYTES} bytes; closing`)) counters.overlongTold += 1;
      else counters.overlongUntold[how] = (counters.overlongUntold[how] ?? 0) + 1;
      socket.destroy();
      await sleep(1_000);
    }
  };

  const progress = setInterval(() => {
    const elapsed = Math.round((Date.now() - start) / 1000);
    const verified = receivers.reduce((sum, receiver) => sum + receiver.verified, 0);
    process.stdout.write(
      `  ${elapsed} s: RSS ${(rssOf(pid) / MiB).toFixed(1)} MiB (peak ${(peakRss / MiB).toFixed(1)}), ${verified} deliveries verified, ` +
        `${counters.stallsDisconnected}/${counters.stalls} stalled readers cut, ${counters.churnCycles} churn cycles\n`,
    );
  }, 15_000);

  await Promise.all([
    ...senders.map((_, id) => broadcaster(id)),
    staller(),
    resetter(),
    overlong(),
    ...Array.from({ length: config.churners }, (_, which) => churner(which)),
  ]);
  clearInterval(progress);
  const activeSeconds = (Date.now() - start) / 1000;

  // Let the healthy receivers catch up, then check that each got every line of every broadcaster.
  const complete = (): boolean =>
    receivers.every((receiver) => receiver.lastSeq.every((seq, id) => seq === counters.sentLines[id] - 1));
  for (let waited = 0; !complete() && waited < 15_000; waited += 100) await sleep(100);
  const stats = await server.stats();
  const idleOpen = idle.filter((socket) => !socket.destroyed).length;
  const receiversOpen = receivers.filter((receiver) => !receiver.closed).length;

  // Everyone leaves; the server must be back to the descriptors it had before the first client.
  const everyone = [...idle, ...senders, ...receivers.map((receiver) => receiver.socket)];
  for (const socket of everyone) socket.end();
  await within(Promise.all(everyone.map(closed)), 10_000);
  let fdsAtEnd = fdCount(pid);
  for (let waited = 0; fdsAtEnd > fdsAtStart && waited < 10_000; waited += 100) {
    await sleep(100);
    fdsAtEnd = fdCount(pid);
  }
  const finalStats = await server.stats();
  clearInterval(rssTimer);

  const deliveries = receivers.reduce((sum, receiver) => sum + receiver.verified, 0);
  const expectedDeliveries = counters.sentLines.reduce((sum, lines) => sum + lines, 0) * config.receivers;
  const errors = receivers.reduce((sum, receiver) => sum + receiver.errors, 0);
  const foreign = receivers.reduce((sum, receiver) => sum + receiver.foreign, 0);
  const leaked = fdsAtEnd - fdsAtStart;
  const reasons = (record: Record<string, number> | undefined): string =>
    record === undefined
      ? 'n/a (CLI)'
      : Object.entries(record)
          .filter(([, count]) => count > 0)
          .map(([reason, count]) => `${reason} ${count}`)
          .join(', ') || 'none';

  const rows: Array<[string, string]> = [
    [
      'duration',
      `${activeSeconds.toFixed(0)} s of load (${config.server === 'fork' ? 'forked server' : 'CLI'}, pid ${pid})`,
    ],
    ['peak server RSS', `${(peakRss / MiB).toFixed(1)} MiB (limit ${config.maxRssMiB} MiB)`],
    [
      'broadcast lines sent',
      `${counters.sentLines.reduce((a, b) => a + b, 0)} (${(counters.sentBytes / MiB).toFixed(1)} MiB by ${config.senders} broadcasters)`,
    ],
    ['deliveries verified', `${deliveries} of ${expectedDeliveries} expected (${config.receivers} receivers)`],
    [
      'delivery errors',
      `${errors} (foreign lines ${foreign})${
        errors > 0
          ? `: ${receivers
              .flatMap((receiver) => receiver.firstErrors)
              .slice(0, 3)
              .join('; ')}`
          : ''
      }`,
    ],
    ['healthy receivers still connected', `${receiversOpen} of ${config.receivers}`],
    [
      'idle connections still connected',
      `${idleOpen} of ${config.idle} (${(idleBytes / MiB).toFixed(1)} MiB received)`,
    ],
    ['stalled readers disconnected', `${counters.stallsDisconnected} of ${counters.stalls}`],
    [
      'over-long senders told / disconnected',
      `${counters.overlongTold} / ${counters.overlongDisconnected} of ${counters.overlong}` +
        (counters.overlongTold < counters.overlong
          ? ` (not told, closed by: ${Object.entries(counters.overlongUntold)
              .map(([how, n]) => `${how} ${n}`)
              .join(', ')})`
          : ''),
    ],
    [
      'resets',
      `${counters.resets} (half lines delivered because the server saw EOF: ${Math.max(0, ...receivers.map((receiver) => receiver.kinds.resetPartial))})`,
    ],
    ['churn cycles', `${counters.churnCycles} (${counters.churnFailures} failed)`],
    ['server messages in / out', stats === null ? 'n/a (CLI)' : `${stats.messagesIn} / ${stats.messagesOut}`],
    ['drops', stats === null ? 'n/a (CLI)' : String(stats.drops)],
    ['disconnects by reason', reasons(finalStats?.disconnects)],
    ['limits acted', reasons(finalStats?.limits)],
    ['denials', reasons(finalStats?.denials)],
    ['hook errors', finalStats === null ? 'n/a (CLI)' : String(finalStats.hookErrors)],
    ['server descriptors start / end', `${fdsAtStart} / ${fdsAtEnd} (leaked ${leaked})`],
    ['server connections at end', finalStats === null ? 'n/a (CLI)' : String(finalStats.connections)],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  process.stdout.write(`\n${rows.map(([name, value]) => `${name.padEnd(width)}  ${value}`).join('\n')}\n`);

  const failures: string[] = [];
  if (serverDied) failures.push('the server died');
  if (errors > 0 || deliveries !== expectedDeliveries)
    failures.push('deliveries to healthy receivers were wrong or missing');
  if (receiversOpen !== config.receivers || idleOpen !== config.idle)
    failures.push('healthy or idle clients were disconnected');
  if (leaked > 0) failures.push(`${leaked} descriptors leaked`);
  if (peakRss > config.maxRssMiB * MiB) failures.push(`peak RSS above ${config.maxRssMiB} MiB`);
  if (counters.overlongDisconnected !== counters.overlong) failures.push('over-long senders were not all disconnected');
  if (finalStats !== null && finalStats.connections !== 0)
    failures.push(`${finalStats.connections} connections left on the server`);
  process.stdout.write(failures.length === 0 ? '\nsoak: OK\n' : `\nsoak: FAILED: ${failures.join('; ')}\n`);

  server.child.kill('SIGTERM');
  if ((await within(new Promise((resolve) => server.child.once('exit', resolve)), 5_000)) === 'timeout')
    server.child.kill('SIGKILL');
  return failures.length === 0 ? 0 : 1;
}

if (process.argv.includes('--serve')) {
  serve().catch((error: unknown) => {
    process.stderr.write(`soak server: ${String(error)}\n`);
    process.exit(1);
  });
} else {
  soak(readConfig()).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`soak: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
