/**
 * What the attacks of `npm run attacks` are built from: the CLI as a child process (with its peak RSS from
 * /proc), the healthy-client probe (a worker thread, bench/attack-probe.ts), plain sockets that are always
 * reset at the end, and the kernel's view of those sockets (/proc/net/tcp), which tells whether the server
 * still holds a connection that never reads.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { ProbeCommand, ProbeConfig, ProbeReport, ProbeResult, ProbeSnapshot } from './attack-probe';
export { stillOpen, tcpStates, TCP_ESTABLISHED } from './tcp-states';
import { spawnTracked } from './children';

export const MiB = 1024 * 1024;

/** The compiled CLI (dist/lib/cli.js). */
export const CLI_PATH = join(__dirname, '..', 'lib', 'cli.js');

/** VmRSS and VmHWM (peak RSS, kept by the kernel) of a process in bytes; zeroes once it is gone. */
export function memoryOf(pid: number): { rss: number; peak: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? 0);
    return { rss: field('VmRSS') * 1024, peak: field('VmHWM') * 1024 };
  } catch {
    return { rss: 0, peak: 0 };
  }
}

/** Raises this process's soft descriptor limit to the hard one (as lib/cli.ts does for the server). */
export function raiseDescriptorLimit(): void {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((text) => text.startsWith('Max open files'));
    const [soft, hard] = (line ?? '').split(/\s+/).slice(3, 5);
    if (soft !== undefined && hard !== undefined && soft !== hard)
      spawnSync('prlimit', [`--pid=${process.pid}`, `--nofile=${hard}:${hard}`], { stdio: 'ignore', timeout: 2000 });
  } catch {
    // Not Linux, or no prlimit: keep the limit we have.
  }
}

/** The CLI could not start: `flag` names an option it does not know (exit status 2, "Unknown option"). */
export class CliStartError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly flag: string | null,
  ) {
    super(message);
  }
}

export interface CliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The CLI running as a child process, its memory sampled every 100 ms. */
export class Cli {
  readonly pid: number;
  /** Largest VmHWM seen (bytes): the peak RSS even after the process is gone. */
  peak = 0;
  readonly exited: Promise<CliExit>;
  exit: CliExit | null = null;
  private err = '';
  private readonly sampler: NodeJS.Timeout;

  /**
   * @param readStderr keep the tail of its stderr (else the caller owns the pipe)
   * @param stderrSoFar what it wrote to stderr before its listening line
   */
  constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly args: readonly string[],
    readStderr: boolean,
    stderrSoFar: string,
  ) {
    this.err = stderrSoFar;
    this.pid = child.pid ?? 0;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null)
        resolve({ code: child.exitCode, signal: child.signalCode });
      else child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    void this.exited.then((exit) => (this.exit = exit));
    if (readStderr) child.stderr?.on('data', (text: string) => (this.err = (this.err + text).slice(-65536)));
    this.sampler = setInterval(() => this.sample(), 100);
    this.sample();
  }

  get alive(): boolean {
    return this.exit === null;
  }

  /** The last 64 KiB it wrote to stderr (while its stderr is read). */
  get stderr(): string {
    return this.err;
  }

  /** Current RSS in bytes (0 once gone); also updates the peak. */
  sample(): number {
    const { rss, peak } = memoryOf(this.pid);
    if (peak > this.peak) this.peak = peak;
    return rss;
  }

  /** CPU seconds (user + system) so far, or -1. */
  cpu(): number {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      return -1;
    }
  }

  signal(signal: NodeJS.Signals): void {
    if (this.alive) this.child.kill(signal);
  }

  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves with how it ended and how long it took. */
  async stop(graceMs = 5000, signal: NodeJS.Signals = 'SIGTERM'): Promise<CliExit & { ms: number; killed: boolean }> {
    this.sample();
    const begun = Date.now();
    let killed = false;
    if (this.alive) {
      this.child.kill(signal);
      const timer = setTimeout(() => {
        killed = true;
        this.child.kill('SIGKILL');
      }, graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    clearInterval(this.sampler);
    const exit = await this.exited;
    return { ...exit, ms: Date.now() - begun, killed };
  }
}

/** Options of {@link startCli}. */
export interface CliOptions {
  /** What to do with its stderr: read it (default), or leave the pipe to the caller. */
  readonly stderr?: 'read' | 'raw';
  readonly timeoutMs?: number;
}

/** Node flags for the CLI under attack (`CLI_NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` to profile it). */
const CLI_NODE_FLAGS = (process.env.CLI_NODE_FLAGS ?? '').split(/\s+/).filter((flag) => flag !== '');

/** Starts `node dist/lib/cli.js --host 127.0.0.1 --port 0 ...args` and resolves once it printed its listening line. */
export function startCli(args: readonly string[], options: CliOptions = {}): Promise<Cli> {
  const all = ['--host', '127.0.0.1', '--port', '0', ...args];
  const child = spawnTracked(process.execPath, [...CLI_NODE_FLAGS, CLI_PATH, ...all], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const collect = (text: string): void => {
    err = (err + text).slice(-65536);
  };
  // In raw mode too until it listens: a CLI that fails to start says why there.
  child.stderr?.setEncoding('utf8').on('data', collect);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new CliStartError(`the CLI printed no listening line: ${out} ${err}`, null, null));
    }, options.timeoutMs ?? 15_000);
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      const flag = /Unknown option '([^']+)'/.exec(err)?.[1] ?? null;
      const why =
        flag !== null ? `flag unknown: ${flag}` : `the CLI exited with ${code} before listening: ${err.trim()}`;
      reject(new CliStartError(why, code, flag));
    };
    child.once('exit', onExit);
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      out += text;
      const match = /listening on .*:(\d+)/.exec(out);
      if (match === null) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      child.stderr?.off('data', collect);
      resolve(new Cli(child, Number(match[1]), all, options.stderr !== 'raw', err));
    });
  });
}

/** Sockets opened by an attack: every one is reset (RST, no TIME_WAIT) when the attack ends. */
export class SocketPool {
  readonly sockets = new Set<net.Socket>();

  add<T extends net.Socket>(socket: T): T {
    this.sockets.add(socket);
    socket.on('error', () => undefined); // resets are what attacks are about
    socket.once('close', () => this.sockets.delete(socket));
    return socket;
  }

  /** Connects to 127.0.0.1:port (from `localAddress`); never reads when `paused`. Rejects on a failed connect. */
  connect(port: number, options: { localAddress?: string; paused?: boolean } = {}): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = this.add(net.connect({ port, host: '127.0.0.1', localAddress: options.localAddress }));
      if (options.paused === true) socket.pause();
      else socket.on('data', () => undefined);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  }

  /** Connects `count` sockets, `parallel` at a time; failed connects are counted, not thrown. */
  async connectMany(
    count: number,
    parallel: number,
    open: (index: number) => Promise<net.Socket>,
  ): Promise<{ sockets: net.Socket[]; failed: number }> {
    const sockets: net.Socket[] = [];
    let failed = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < count) {
        const index = next++;
        try {
          sockets.push(await open(index));
        } catch {
          failed += 1;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
    return { sockets, failed };
  }

  resetAll(): void {
    for (const socket of this.sockets) {
      if (socket.destroyed) continue;
      try {
        // A TLS socket has no TCP handle of its own to reset.
        if (!(socket instanceof tls.TLSSocket) && socket.readyState === 'open') socket.resetAndDestroy();
        else socket.destroy();
      } catch {
        socket.destroy();
      }
    }
    this.sockets.clear();
  }
}

/** The healthy clients of an attack, running in a worker thread (bench/attack-probe.ts). */
export class Probe {
  private readonly worker: Worker;
  private readonly waiting: Array<{ type: ProbeReport['type']; resolve: (report: ProbeReport) => void }> = [];
  private failure: string | null = null;
  private failed: ((message: string) => void)[] = [];

  constructor(config: Omit<ProbeConfig, 'epochNs' | 'host' | 'setupTimeoutMs'> & { setupTimeoutMs?: number }) {
    const full: ProbeConfig = { host: '127.0.0.1', epochNs: EPOCH.toString(), setupTimeoutMs: 15_000, ...config };
    this.worker = new Worker(join(__dirname, 'attack-probe.js'), { workerData: full });
    this.worker.on('message', (report: ProbeReport) => {
      if (report.type === 'failed') return this.fail(report.message);
      const index = this.waiting.findIndex((entry) => entry.type === report.type);
      if (index >= 0) this.waiting.splice(index, 1)[0].resolve(report);
    });
    this.worker.on('error', (error) => this.fail(String(error)));
    this.worker.on('exit', () => this.fail('the probe exited'));
  }

  private fail(message: string): void {
    if (this.failure !== null) return;
    this.failure = message;
    for (const reject of this.failed) reject(message);
  }

  private next<T extends ProbeReport['type']>(type: T, timeoutMs: number): Promise<Extract<ProbeReport, { type: T }>> {
    return new Promise((resolve, reject) => {
      if (this.failure !== null) return reject(new Error(`probe: ${this.failure}`));
      const timer = setTimeout(() => reject(new Error(`probe: no ${type} within ${timeoutMs} ms`)), timeoutMs);
      const onFail = (message: string): void => {
        clearTimeout(timer);
        reject(new Error(`probe: ${message}`));
      };
      this.failed.push(onFail);
      this.waiting.push({
        type,
        resolve: (report) => {
          clearTimeout(timer);
          this.failed = this.failed.filter((fn) => fn !== onFail);
          resolve(report as Extract<ProbeReport, { type: T }>);
        },
      });
    });
  }

  private send(command: ProbeCommand): void {
    this.worker.postMessage(command);
  }

  /** Resolves once every receiver got a warm-up record. */
  async ready(timeoutMs = 20_000): Promise<number> {
    return (await this.next('ready', timeoutMs)).setupMs;
  }

  start(): void {
    this.send({ cmd: 'start' });
  }

  async snapshot(timeoutMs = 10_000): Promise<ProbeSnapshot> {
    const reply = this.next('snapshot', timeoutMs);
    this.send({ cmd: 'snapshot' });
    return (await reply).snapshot;
  }

  async stop(quietMs = 2000, timeoutMs = 15_000): Promise<ProbeResult> {
    const reply = this.next('result', timeoutMs + 10_000);
    this.send({ cmd: 'stop', quietMs, timeoutMs });
    return (await reply).result;
  }

  async close(): Promise<void> {
    if (this.failure === null) this.send({ cmd: 'exit' });
    await Promise.race([new Promise((resolve) => this.worker.once('exit', resolve)), sleep(2000)]);
    await this.worker.terminate();
  }
}

/** The run's clock origin: send times in records are ns since then (hrtime is shared by all threads). */
export const EPOCH = process.hrtime.bigint();
