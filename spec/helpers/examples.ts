import { spawn, type ChildProcess } from 'node:child_process';
import type * as net from 'node:net';
import { join } from 'node:path';
import { ensureBuilt, ROOT } from './build';
import { onTeardown, type TestClient, waitFor } from './net';

/** Registers a started example's server for destruction after the test, and returns it with its port. */
export async function started<M extends { destroy(options?: { timeout?: number }): Promise<void> }>(
  starting: Promise<{ mux: M; address: net.AddressInfo }>,
): Promise<{ mux: M; port: number }> {
  const { mux, address } = await starting;
  onTeardown(() => mux.destroy({ timeout: 200 }));
  return { mux, port: address.port };
}

/** Sends a line and waits until `reader` has received `expected`. */
export async function say(client: TestClient, line: string, reader: TestClient, expected: string): Promise<void> {
  await client.write(`${line}\n`);
  await reader.waitForText(expected);
}

/** Compiles dist/ (see {@link ensureBuilt}) unless dist/examples/<name>.js are newer than every source. */
export function buildExamples(names: readonly string[]): void {
  ensureBuilt(names.map((name) => join(ROOT, 'dist', 'examples', `${name}.js`)));
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
