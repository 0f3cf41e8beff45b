import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { onTeardown, TestClient, waitFor } from './net';

const ROOT = join(__dirname, '..', '..');

/** Registers a started example's server for destruction after the test, and returns it with its port. */
export async function started<M extends { destroy(options?: { timeout?: number }): Promise<void> }>(
  starting: Promise<{ mux: M; address: net.AddressInfo }>,
): Promise<{ mux: M; port: number }> {
  const { mux, address } = await starting;
  onTeardown(() => mux.destroy({ timeout: 200 }));
  return { mux, port: address.port };
}

/** A TCP client to 127.0.0.1:port from the given local address (any of 127.0.0.0/8 on Linux). */
export async function connectFrom(port: number, localAddress: string): Promise<TestClient> {
  const client = new TestClient(net.connect({ port, host: '127.0.0.1', localAddress }));
  await new Promise<void>((resolve, reject) => {
    client.socket.once('connect', () => resolve());
    client.socket.once('error', reject);
  });
  return client;
}

/** Sends a line and waits until `reader` has received `expected`. */
export async function say(client: TestClient, line: string, reader: TestClient, expected: string): Promise<void> {
  await client.write(`${line}\n`);
  await reader.waitForText(expected);
}

function newestChange(dir: string): number {
  return Math.max(...readdirSync(dir).filter((name) => name.endsWith('.ts')).map((name) => statSync(join(dir, name)).mtimeMs));
}

function outdated(outputs: readonly string[]): boolean {
  const sources = Math.max(newestChange(join(ROOT, 'lib')), newestChange(join(ROOT, 'examples')));
  return outputs.some((file) => !existsSync(file) || statSync(file).mtimeMs < sources);
}

/** The lock directory that spec/helpers/build.ts takes too, so that workers never build dist/ at once. */
const LOCK = join(ROOT, 'dist', '.spec-build-lock');

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Compiles lib/ and examples/ into dist/ (as `npm run build` does) unless dist/examples/<name>.js are newer
 * than every source they depend on. tsc emits even when another part of the project (bench) has type
 * errors; only examples that are still missing or stale afterwards fail.
 */
export function buildExamples(names: readonly string[]): void {
  const outputs = names.map((name) => join(ROOT, 'dist', 'examples', `${name}.js`));
  if (!outdated(outputs)) return;
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  const deadline = Date.now() + 120_000;
  while (!tryLock()) {
    // A lock left behind by a killed run is taken over, as spec/helpers/build.ts does.
    if (Date.now() - (statSync(LOCK, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > 120_000) rmdirSync(LOCK);
    if (Date.now() > deadline) throw new Error(`another build holds ${LOCK}`);
    sleep(200);
  }
  try {
    if (!outdated(outputs)) return;
    const tsc = require.resolve('typescript/bin/tsc');
    const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    if (outdated(outputs)) throw new Error(`build failed (exit ${result.status}):\n${result.stdout}${result.stderr}`);
  } finally {
    rmdirSync(LOCK);
  }
}

function tryLock(): boolean {
  try {
    mkdirSync(LOCK);
    return true;
  } catch {
    return false;
  }
}

/** A compiled example running as a child process, with what it printed. */
export class ExampleProcess {
  stdout = '';
  stderr = '';
  exitCode: number | null = null;
  signal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;

  constructor(script: string, args: string[], env: Record<string, string>) {
    this.child = spawn(process.execPath, [join(ROOT, script), ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.setEncoding('utf8').on('data', (text: string) => (this.stdout += text));
    this.child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.exited = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        this.exitCode = code;
        this.signal = signal;
        resolve();
      }),
    );
    onTeardown(() => {
      if (this.exitCode === null && this.signal === null) this.child.kill('SIGKILL');
      return this.exited;
    });
  }

  /** Waits for the line that says where it listens, and returns the port from it. */
  async listeningPort(): Promise<number> {
    await waitFor(
      () => /listening.* port (\d+)/.test(this.stdout) || this.exitCode !== null,
      `a "listening" line (stdout ${JSON.stringify(this.stdout)}, stderr ${JSON.stringify(this.stderr)})`,
      15_000,
    );
    const match = /listening.* port (\d+)/.exec(this.stdout);
    if (match === null) throw new Error(`exited with ${this.exitCode} before listening: ${this.stderr}`);
    return Number(match[1]);
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}
