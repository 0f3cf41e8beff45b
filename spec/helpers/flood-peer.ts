/**
 * Child process of the flood specs: one sender, healthy receivers and stalled receivers, so that reading
 * and checking gigabytes does not compete with the server for the test process's event loop.
 *
 * Configured by PEER_CONFIG (a {@link FloodConfig}); reports {@link FloodReport}s over IPC and obeys
 * {@link FloodCommand}s. It exits when told to, or when its parent goes away.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { PatternStream, PatternVerifier, sendPattern } from './pattern';

export interface FloodConfig {
  port: number;
  host: string;
  /** Receivers that read everything and check it. */
  receivers: number;
  /** Receivers that stop reading once the flood starts. */
  stalled: number;
  /** Bytes the sender sends. */
  totalBytes: number;
  blockBytes: number;
  /** Connect with TLS, trusting this CA (PEM). */
  tlsCa?: string;
  /** Give up waiting for the healthy receivers after this many ms. */
  timeoutMs: number;
}

export interface ReceiverResult {
  received: number;
  /** Where the received stream first differs from what was sent; null when it is a faithful prefix. */
  errorAt: number | null;
  closed: boolean;
  error: string | null;
}

export type FloodReport =
  | { type: 'synced'; senderPort: number; receiverPorts: number[]; stalledPorts: number[] }
  | { type: 'progress'; sent: number; slowest: number }
  | { type: 'flooded'; sent: number; floodMs: number; healthy: ReceiverResult[]; timedOut: boolean }
  | { type: 'stalled'; stalled: ReceiverResult[] }
  | { type: 'probed'; healthy: boolean[]; stalled: boolean[] }
  | { type: 'failed'; message: string };

export type FloodCommand =
  /** Let the stalled receivers read again, then report them after `settleMs` of quiet or once closed. */
  | { cmd: 'resume-stalled'; settleMs: number; timeoutMs: number }
  /** The sender sends a marker; report who got it within `timeoutMs`. */
  | { cmd: 'probe'; timeoutMs: number }
  | { cmd: 'exit' };

const SYNC = Buffer.from('SYNC\n');
const PROBE = Buffer.from('PROBE-END\n');

class Receiver {
  readonly verifier: PatternVerifier;
  received = 0;
  synced = false;
  closed = false;
  error: string | null = null;
  lastDataAt = Date.now();
  tail = Buffer.alloc(0);
  private pending = Buffer.alloc(0);

  constructor(
    readonly socket: net.Socket,
    pattern: PatternStream,
  ) {
    this.verifier = new PatternVerifier(pattern);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => (this.error = error.code ?? error.message));
    socket.on('close', () => (this.closed = true));
  }

  private onData(chunk: Buffer): void {
    this.lastDataAt = Date.now();
    this.tail = Buffer.concat([this.tail, chunk.subarray(Math.max(0, chunk.length - PROBE.length))]).subarray(
      -PROBE.length,
    );
    if (!this.synced) {
      this.pending = Buffer.concat([this.pending, chunk]);
      if (this.pending.length < SYNC.length) return;
      if (!this.pending.subarray(0, SYNC.length).equals(SYNC)) {
        this.verifier.errorAt = 0;
        return;
      }
      this.synced = true;
      chunk = this.pending.subarray(SYNC.length);
      this.pending = Buffer.alloc(0);
    }
    this.received += chunk.length;
    this.verifier.push(chunk);
  }

  result(): ReceiverResult {
    return { received: this.received, errorAt: this.verifier.errorAt, closed: this.closed, error: this.error };
  }
}

function report(message: FloodReport): void {
  process.send?.(message);
}

function connect(config: FloodConfig): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      config.tlsCa === undefined
        ? net.connect({ port: config.port, host: config.host })
        : tls.connect({ port: config.port, host: config.host, ca: config.tlsCa, servername: 'localhost' });
    socket.once(config.tlsCa === undefined ? 'connect' : 'secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

function until(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
  const start = Date.now();
  return new Promise((resolve) => {
    const check = (): void => {
      if (predicate()) resolve(true);
      else if (Date.now() - start > timeoutMs) resolve(false);
      else setTimeout(check, 10);
    };
    check();
  });
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.PEER_CONFIG ?? '{}') as FloodConfig;
  const pattern = new PatternStream(config.blockBytes);
  const healthy: Receiver[] = [];
  const stalled: Receiver[] = [];
  for (let i = 0; i < config.receivers; i += 1) healthy.push(new Receiver(await connect(config), pattern));
  for (let i = 0; i < config.stalled; i += 1) stalled.push(new Receiver(await connect(config), pattern));
  const all = [...healthy, ...stalled];
  const sender = await connect(config);
  sender.on('error', () => undefined);
  sender.on('data', () => undefined);

  // Everyone has joined once everyone got the marker; only then do the stalled receivers stop reading.
  sender.write(SYNC);
  if (!(await until(() => all.every((receiver) => receiver.synced), 10_000))) {
    report({ type: 'failed', message: 'receivers did not get the sync marker' });
    return;
  }
  for (const receiver of stalled) receiver.socket.pause();
  report({
    type: 'synced',
    senderPort: sender.localPort ?? 0,
    receiverPorts: healthy.map((receiver) => receiver.socket.localPort ?? 0),
    stalledPorts: stalled.map((receiver) => receiver.socket.localPort ?? 0),
  });

  const start = Date.now();
  let sent = 0;
  const progress = setInterval(() => {
    report({ type: 'progress', sent, slowest: Math.min(...healthy.map((receiver) => receiver.received)) });
  }, 1000);
  sent = await sendPattern(sender, pattern, config.totalBytes, (count) => (sent = count));
  const complete = await until(
    () =>
      healthy.every(
        (receiver) => receiver.received >= config.totalBytes || receiver.verifier.errorAt !== null || receiver.closed,
      ),
    config.timeoutMs,
  );
  clearInterval(progress);
  report({
    type: 'flooded',
    sent,
    floodMs: Date.now() - start,
    healthy: healthy.map((receiver) => receiver.result()),
    timedOut: !complete,
  });

  process.on('message', (message: FloodCommand) => {
    void (async () => {
      if (message.cmd === 'exit') {
        for (const receiver of all) receiver.socket.destroy();
        sender.destroy();
        process.exit(0);
      }
      if (message.cmd === 'resume-stalled') {
        for (const receiver of stalled) receiver.socket.resume();
        await until(
          () => stalled.every((receiver) => receiver.closed || Date.now() - receiver.lastDataAt > message.settleMs),
          message.timeoutMs,
        );
        report({ type: 'stalled', stalled: stalled.map((receiver) => receiver.result()) });
      }
      if (message.cmd === 'probe') {
        sender.write(PROBE);
        const got = (receiver: Receiver): boolean => receiver.tail.equals(PROBE);
        await until(() => all.every((receiver) => receiver.closed || got(receiver)), message.timeoutMs);
        report({ type: 'probed', healthy: healthy.map(got), stalled: stalled.map(got) });
      }
    })();
  });
}

process.on('disconnect', () => process.exit(0));
main().catch((error: unknown) => {
  report({ type: 'failed', message: String(error) });
});
