import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, ensureBuilt, ROOT } from './build';
import type { FloodCommand, FloodConfig, FloodReport, ReceiverResult } from './flood-peer';
import { onTeardown, waitFor } from './net';

/** Resident set size of a process, in bytes (VmRSS of /proc/PID/status); 0 once it is gone. */
function rssOf(pid: number | 'self'): number {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? 0 : Number(match[1]) * 1024;
  } catch {
    return 0;
  }
}

/** Open file descriptors of a process (entries of /proc/PID/fd). */
export function fdCount(pid: number | 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Samples a process's RSS until stopped; `peak` is the largest value seen. */
export class RssSampler {
  peak = 0;
  samples = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly pid: number | 'self',
    intervalMs = 25,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    onTeardown(() => {
      this.stop();
    });
  }

  sample(): number {
    const rss = rssOf(this.pid);
    this.samples += 1;
    if (rss > this.peak) this.peak = rss;
    return rss;
  }

  stop(): number {
    clearInterval(this.timer);
    return this.peak;
  }
}

/** A child process killed (SIGKILL) after the test unless it already exited. */
function killAfterTest(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  onTeardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return exited;
}

/** The CLI running as a child process. */
export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The port from the `listening` line. */
  readonly port: number;
  /** The whole `listening` line. */
  readonly banner: string;
  /** What it wrote to stdout and stderr so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
}

/**
 * Runs `node dist/lib/cli.js ...args` (building dist first if needed) and waits for the listening line.
 * @param wrapper a command that execs the rest, such as `['prlimit', '--nofile=64:64', '--']`
 */
export async function startCli(
  args: readonly string[],
  { timeout = 15_000, wrapper = [] as readonly string[] } = {},
): Promise<CliProcess> {
  const result = runCli(args, wrapper);
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`CLI did not print a listening line: ${result.stdout()} ${result.stderr()}`)),
      timeout,
    );
    const check = (): void => {
      const found = result
        .stdout()
        .split('\n')
        .find((text) => text.includes('listening'));
      if (found !== undefined && result.stdout().includes(`${found}\n`)) {
        clearTimeout(timer);
        resolve(found);
      }
    };
    result.child.stdout?.on('data', check);
    void result.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`CLI exited with ${code} before listening: ${result.stderr()}`));
    });
  });
  const match = /:(\d+)\b/.exec(line);
  if (match === null) throw new Error(`no port in ${JSON.stringify(line)}`);
  return { ...result, port: Number(match[1]), banner: line };
}

/** Runs the CLI without waiting for anything; for flags that make it exit. */
export function runCli(args: readonly string[], wrapper: readonly string[] = []): Omit<CliProcess, 'port' | 'banner'> {
  ensureBuilt();
  const command = [...wrapper, process.execPath, CLI, ...args];
  const child = spawn(command[0], command.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (err += text));
  const exited = killAfterTest(child);
  if (child.pid === undefined) throw new Error('could not start the CLI');
  return { child, pid: child.pid, stdout: () => out, stderr: () => err, exited };
}

/** A TypeScript helper script running in a child process, talking over IPC. */
export class Peer<Out extends { type: string }, In extends { cmd: string }> {
  readonly child: ChildProcess;
  readonly messages: Out[] = [];
  readonly exited: Promise<number | null>;
  stderr = '';

  /**
   * @param script path relative to spec/helpers, run with ts-node (transpile only)
   * @param config passed as JSON in the PEER_CONFIG environment variable
   */
  constructor(script: string, config: unknown) {
    this.child = fork(join(__dirname, script), [], {
      cwd: ROOT,
      execArgv: ['-r', 'ts-node/register/transpile-only'],
      env: { ...process.env, PEER_CONFIG: JSON.stringify(config), TS_NODE_PROJECT: join(ROOT, 'tsconfig.json') },
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    this.child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.child.on('message', (message) => this.messages.push(message as Out));
    this.exited = killAfterTest(this.child);
  }

  send(message: In): void {
    this.child.send(message);
  }

  /** Waits for the oldest message of `type` not yet taken, and takes it; fails early if the peer dies. */
  async next<T extends Out['type']>(type: T, timeout: number): Promise<Extract<Out, { type: T }>> {
    let dead = false;
    void this.exited.then(() => (dead = true));
    await waitFor(
      () => dead || this.messages.some((message) => message.type === type),
      `peer message ${type}`,
      timeout,
    );
    const index = this.messages.findIndex((message) => message.type === type);
    if (index < 0) throw new Error(`peer exited before sending ${type}: ${this.stderr}`);
    const [found] = this.messages.splice(index, 1);
    return found as Extract<Out, { type: T }>;
  }
}

/**
 * The flood peer (spec/helpers/flood-peer.ts) against 127.0.0.1:port: by default 10 healthy receivers and
 * 1 stalled one, 256 MiB in 64 KiB blocks, and 120 s for the healthy receivers to get it all.
 */
export function floodPeer(port: number, config: Partial<FloodConfig>): Peer<FloodReport, FloodCommand> {
  const full: FloodConfig = {
    port,
    host: '127.0.0.1',
    receivers: 10,
    stalled: 1,
    totalBytes: 256 * 1024 * 1024,
    blockBytes: 64 * 1024,
    timeoutMs: 120_000,
    ...config,
  };
  return new Peer<FloodReport, FloodCommand>('flood-peer.ts', full);
}

/** Expects every receiver to have got all `total` bytes intact, still connected and without error. */
export function expectWhole(results: readonly ReceiverResult[], total: number): void {
  for (const result of results) {
    expect(result).toEqual({ received: total, errorAt: null, closed: false, error: null });
  }
}
