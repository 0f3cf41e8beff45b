/**
 * Worker thread of `npm run attacks`: the healthy clients of an attack, in their own event loop so that the
 * attackers (in the main thread) do not delay what they measure.
 *
 * One sender and some receivers connect to the server under attack. The sender sends warm-up records until
 * every receiver got one, then (on `start`) measured records: fixed-size lines in the load generator's format
 * (bench/message.ts) carrying a sequence number and the send time, flooded, paced or windowed. Receivers check
 * each record's sequence (lost, reordered) and latency, may read slowly on purpose (paced or chunk-proportional
 * pauses), and count lines nobody of theirs sent (an attacker's). On `stop` the sender stops and the probe
 * waits until the receivers still connected got everything, then reports.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import { Histogram } from './histogram';
import { KIND_DATA, KIND_WARM, NEWLINE, readSeq, readTime, stamp, template, timeDigits, wellFormed } from './message';
import { TCP_ESTABLISHED, tcpStates } from './tcp-states';

/** How a receiver reads: as fast as it can (null), at most `bytesPerSecond` on average, or pausing after each chunk in proportion to it. */
export type Pace = { readonly kind: 'rate' | 'chunk'; readonly bytesPerSecond: number } | null;

/** How the sender sends measured records. */
export interface SenderConfig {
  /** `flood`: as fast as the socket takes them; `paced`: at `bytesPerSecond`; `windowed`: at most `windowBytes` ahead of the slowest connected receiver. */
  readonly mode: 'flood' | 'paced' | 'windowed';
  /** Bytes per record, newline included (at least 19). */
  readonly size: number;
  /** Bytes per write (whole records, at least one). */
  readonly writeBytes: number;
  readonly bytesPerSecond?: number;
  /** How often a paced sender writes what it owes (ms, default 5): longer makes fewer, larger writes. */
  readonly intervalMs?: number;
  readonly windowBytes?: number;
  /** Stop sending after this many bytes (0: until told). */
  readonly maxBytes?: number;
}

export interface ProbeConfig {
  readonly host: string;
  readonly port: number;
  /** Connect with TLS, trusting this CA (PEM), server name `localhost`. */
  readonly tlsCa?: string;
  readonly receivers: readonly Pace[];
  readonly sender: SenderConfig;
  /** process.hrtime.bigint() of the run's epoch, as a decimal string: send times are ns since then. */
  readonly epochNs: string;
  readonly setupTimeoutMs: number;
}

export interface ReceiverSnapshot {
  /** Measured records received (in order or not). */
  records: number;
  /** Bytes of measured records received. */
  bytes: number;
  /** Every byte read, warm-ups and foreign lines included. */
  rawBytes: number;
  /** Records skipped over (a later one came first). */
  lost: number;
  /** Records that came after a later one, or twice. */
  reordered: number;
  /** Lines that are not records of this probe (an attacker's), after sync. */
  foreignLines: number;
  closed: boolean;
  /** How the server ended it: `end`, an error code, or null while connected. */
  closedBy: string | null;
  /** Measured bytes sent when the server cut it (seen from the server's side of the connection); 0 while connected. */
  sentAtCut: number;
}

export interface ProbeSnapshot {
  /** Measured records and bytes sent so far. */
  sentRecords: number;
  sentBytes: number;
  /** Everything the sender wrote, warm-ups included. */
  wroteBytes: number;
  receivers: ReceiverSnapshot[];
}

export interface ProbeResult extends ProbeSnapshot {
  /** From `start` to `stop`, seconds. */
  measuredS: number;
  /** Snapshot taken at `stop`: what was received during the measured period. */
  atStop: ProbeSnapshot;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** Whether every receiver still connected got every record sent (false: the drain timed out or went quiet). */
  drained: boolean;
}

export type ProbeReport =
  | { type: 'ready'; setupMs: number }
  | { type: 'snapshot'; snapshot: ProbeSnapshot }
  | { type: 'result'; result: ProbeResult }
  | { type: 'failed'; message: string };

export type ProbeCommand =
  | { cmd: 'start' }
  | { cmd: 'snapshot' }
  /** Stop sending; report once every connected receiver has everything, nothing arrived for `quietMs`, or after `timeoutMs`. */
  | { cmd: 'stop'; quietMs: number; timeoutMs: number }
  | { cmd: 'exit' };

/** Longest foreign line kept across reads while looking for its end. */
const MAX_CARRY = 1024 * 1024;

function runProbe(config: ProbeConfig, post: (report: ProbeReport) => void): void {
  const epoch = BigInt(config.epochNs);
  const nowNs = (): number => Number(process.hrtime.bigint() - epoch);
  const { size } = config.sender;
  const perWrite = Math.max(1, Math.floor(config.sender.writeBytes / size));
  const histogram = new Histogram();
  const sockets: net.Socket[] = [];

  class Receiver {
    synced = false;
    next = 0;
    records = 0;
    bytes = 0;
    rawBytes = 0;
    lost = 0;
    reordered = 0;
    foreignLines = 0;
    closed = false;
    closedBy: string | null = null;
    sentAtCut = 0;
    private carry: Buffer | null = null;
    private readBytes = 0;
    private readStart = 0;

    constructor(
      readonly socket: net.Socket,
      private readonly pace: Pace,
    ) {
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.on('end', () => (this.closedBy ??= 'end'));
      socket.on('error', (error: NodeJS.ErrnoException) => (this.closedBy ??= error.code ?? error.message));
      socket.on('close', () => {
        this.closed = true;
        this.markCut();
        this.closedBy ??= 'close';
      });
    }

    snapshot(): ReceiverSnapshot {
      const { records, bytes, rawBytes, lost, reordered, foreignLines, closed, closedBy, sentAtCut } = this;
      return { records, bytes, rawBytes, lost, reordered, foreignLines, closed, closedBy, sentAtCut };
    }

    /** The server let it go: what was sent by then is what it should have had. */
    markCut(): void {
      if (this.sentAtCut === 0) this.sentAtCut = Math.max(1, sender.sentBytes);
    }

    private onData(chunk: Buffer): void {
      this.rawBytes += chunk.length;
      this.paceAfter(chunk.length);
      const buf = this.carry === null ? chunk : Buffer.concat([this.carry, chunk]);
      this.carry = null;
      const now = nowNs();
      let at = 0;
      while (at < buf.length) {
        const kind = buf[at];
        if (kind === KIND_DATA || kind === KIND_WARM) {
          if (buf.length - at < size) {
            this.carry = Buffer.from(buf.subarray(at));
            return;
          }
          if (wellFormed(buf, at, size)) {
            if (kind === KIND_WARM) this.synced = true;
            else if (this.synced) this.deliver(buf, at, now);
            at += size;
            continue;
          }
        }
        // Not a record of ours: an attacker's line, or (before sync) the tail of something sent before we joined.
        const newline = buf.indexOf(NEWLINE, at);
        if (newline < 0) {
          if (buf.length - at <= MAX_CARRY) this.carry = Buffer.from(buf.subarray(at));
          return;
        }
        if (this.synced) this.foreignLines += 1;
        at = newline + 1;
      }
    }

    private deliver(buf: Buffer, at: number, now: number): void {
      const seq = readSeq(buf, at);
      if (seq < this.next) {
        this.reordered += 1;
        return;
      }
      if (seq > this.next) this.lost += seq - this.next;
      this.next = seq + 1;
      this.records += 1;
      this.bytes += size;
      histogram.record(now - readTime(buf, at));
      sender.kick();
    }

    private paceAfter(bytes: number): void {
      const pace = this.pace;
      if (pace === null) return;
      if (pace.kind === 'chunk') {
        this.socket.pause();
        setTimeout(() => this.socket.resume(), (bytes / pace.bytesPerSecond) * 1000);
        return;
      }
      const now = Date.now();
      if (this.readStart === 0) this.readStart = now;
      this.readBytes += bytes;
      const due = this.readStart + (this.readBytes / pace.bytesPerSecond) * 1000;
      if (due > now + 1) {
        this.socket.pause();
        setTimeout(() => this.socket.resume(), due - now);
      }
    }
  }

  class Sender {
    socket: net.Socket | null = null;
    measuring = false;
    sentRecords = 0;
    sentBytes = 0;
    wroteBytes = 0;
    private seq = 0;
    private blocked = false;
    private startedAt = 0;
    private timer: NodeJS.Timeout | null = null;
    private readonly record = template(size, 0, KIND_DATA);
    private readonly time = new Uint8Array(8);

    warm(): void {
      const record = template(size, 0, KIND_WARM);
      this.socket?.write(record);
      this.wroteBytes += record.length;
    }

    start(): void {
      this.measuring = true;
      this.startedAt = Date.now();
      if (config.sender.mode === 'paced') this.timer = setInterval(() => this.pump(), config.sender.intervalMs ?? 5);
      this.pump();
    }

    stop(): void {
      this.measuring = false;
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
    }

    /** A receiver made progress: a windowed sender may go on. */
    kick(): void {
      if (config.sender.mode === 'windowed' && this.measuring && !this.blocked) this.pump();
    }

    private records(count: number): Buffer {
      const buf = Buffer.allocUnsafe(count * size);
      buf.fill(this.record);
      timeDigits(nowNs(), this.time);
      for (let i = 0; i < count; i += 1) stamp(buf, i * size, this.seq++, this.time);
      return buf;
    }

    /** How many records may go now. */
    private allowance(): number {
      const { mode, bytesPerSecond = 0, windowBytes = 0, maxBytes = 0 } = config.sender;
      let count = perWrite;
      if (maxBytes > 0) count = Math.min(count, Math.floor((maxBytes - this.sentBytes) / size));
      if (mode === 'paced') {
        // Owed bytes, with at most 100 ms of debt: a paced source that was held back does not burst to catch up.
        const debt = Math.max(bytesPerSecond / 10, perWrite * size);
        const owed = Math.min((bytesPerSecond * (Date.now() - this.startedAt)) / 1000 - this.sentBytes, debt);
        if (owed < size) return 0;
        count = Math.min(count, Math.floor(owed / size));
      } else if (mode === 'windowed') {
        let slowest = Infinity;
        for (const receiver of receivers) if (!receiver.closed) slowest = Math.min(slowest, receiver.next);
        if (slowest === Infinity) return 0;
        count = Math.min(count, Math.floor(windowBytes / size) - (this.sentRecords - slowest));
      }
      return Math.max(0, count);
    }

    private pump(): void {
      const socket = this.socket;
      if (socket === null || socket.destroyed) return;
      while (this.measuring && !this.blocked) {
        const count = this.allowance();
        if (count <= 0) {
          const { maxBytes = 0 } = config.sender;
          if (maxBytes > 0 && this.sentBytes + size > maxBytes) this.stop(); // all sent
          return;
        }
        const buf = this.records(count);
        this.sentRecords += count;
        this.sentBytes += buf.length;
        this.wroteBytes += buf.length;
        if (!socket.write(buf)) {
          this.blocked = true;
          const go = (): void => {
            socket.off('drain', go);
            socket.off('close', go);
            this.blocked = false;
            // Flood and windowed senders go on from a later turn, so that receivers in this thread get to read.
            setImmediate(() => this.pump());
          };
          socket.on('drain', go);
          socket.on('close', go);
          return;
        }
        if (config.sender.mode === 'flood') {
          setImmediate(() => this.pump());
          return;
        }
      }
    }
  }

  const receivers: Receiver[] = [];
  const sender = new Sender();
  // A slow reader sees the server's close only after the data before it: watch the server's side instead.
  const watch = setInterval(() => {
    if (receivers.every((receiver) => receiver.sentAtCut > 0)) return;
    const states = tcpStates(config.port);
    for (const receiver of receivers) {
      const key = `${receiver.socket.localAddress}:${receiver.socket.localPort}`;
      const state = states.get(key);
      if (receiver.synced && state !== undefined && state !== TCP_ESTABLISHED) receiver.markCut();
    }
  }, 100);

  const connect = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const socket =
        config.tlsCa === undefined
          ? net.connect({ host: config.host, port: config.port, noDelay: true })
          : tls.connect({ host: config.host, port: config.port, ca: config.tlsCa, servername: 'localhost' });
      sockets.push(socket);
      socket.once(config.tlsCa === undefined ? 'connect' : 'secureConnect', () => {
        socket.off('error', reject);
        socket.on('error', () => undefined);
        resolve(socket);
      });
      socket.once('error', reject);
    });

  const snapshot = (): ProbeSnapshot => ({
    sentRecords: sender.sentRecords,
    sentBytes: sender.sentBytes,
    wroteBytes: sender.wroteBytes,
    receivers: receivers.map((receiver) => receiver.snapshot()),
  });

  let startedAt = 0;

  const stop = async (quietMs: number, timeoutMs: number): Promise<void> => {
    const stoppedAt = Date.now();
    sender.stop();
    const atStop = snapshot();
    const done = (): boolean => receivers.every((receiver) => receiver.closed || receiver.next >= sender.sentRecords);
    let lastProgress = Date.now();
    let lastRaw = -1;
    while (!done() && Date.now() - stoppedAt < timeoutMs) {
      const raw = receivers.reduce((sum, receiver) => sum + receiver.rawBytes, 0);
      if (raw !== lastRaw) {
        lastRaw = raw;
        lastProgress = Date.now();
      } else if (Date.now() - lastProgress > quietMs) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    post({
      type: 'result',
      result: {
        ...snapshot(),
        measuredS: (stoppedAt - startedAt) / 1000,
        atStop,
        p50Us: histogram.percentile(0.5),
        p99Us: histogram.percentile(0.99),
        maxUs: histogram.maxUs,
        drained: done(),
      },
    });
  };

  const setup = async (): Promise<void> => {
    const begun = Date.now();
    for (const pace of config.receivers) receivers.push(new Receiver(await connect(), pace));
    const socket = await connect();
    socket.on('data', () => undefined); // what others broadcast reaches the sender too: it must read it
    sender.socket = socket;
    while (!receivers.every((receiver) => receiver.synced)) {
      if (Date.now() - begun > config.setupTimeoutMs) throw new Error('the receivers never got a warm-up record');
      sender.warm();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    post({ type: 'ready', setupMs: Date.now() - begun });
  };

  parentPort?.on('message', (command: ProbeCommand) => {
    if (command.cmd === 'start') {
      startedAt = Date.now();
      sender.start();
    } else if (command.cmd === 'snapshot') post({ type: 'snapshot', snapshot: snapshot() });
    else if (command.cmd === 'stop') void stop(command.quietMs, command.timeoutMs);
    else if (command.cmd === 'exit') {
      clearInterval(watch);
      sender.stop();
      for (const socket of sockets) socket.destroy();
      parentPort?.close();
    }
  });

  setup().catch((error: unknown) => post({ type: 'failed', message: String(error) }));
}

if (parentPort !== null) {
  const port = parentPort;
  runProbe(workerData as ProbeConfig, (report) => port.postMessage(report));
}
