/**
 * Shared steps of the end-to-end cluster specs: CLI nodes joined over a real broker, their log lines with the
 * time each arrived, numbered streams of lines, and the exact accounting of what a receiver got of them.
 */
import * as http from 'node:http';
import type { NatsServer } from './brokers';
import { delay, TestClient, waitFor } from './net';
import { startCli, type CliProcess } from './process';

/** One log line of a CLI, with the time the spec read it. */
export interface LogLine {
  readonly at: number;
  readonly text: string;
}

/** A CLI process joined to a bus, with its stderr split into timed lines. */
export class CliNode {
  readonly log: LogLine[] = [];
  private partial = '';

  constructor(
    readonly id: string,
    readonly cli: CliProcess,
  ) {
    // What startCli already read (before this listener) comes first, stamped now.
    this.take(cli.stderr());
    cli.child.stderr?.on('data', (text: string) => this.take(text));
  }

  get port(): number {
    return this.cli.port;
  }

  private take(text: string): void {
    const now = Date.now();
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop() ?? '';
    for (const part of parts) if (part !== '') this.log.push({ at: now, text: part });
  }

  /** The log lines that match `pattern`. */
  lines(pattern: RegExp): LogLine[] {
    return this.log.filter((line) => pattern.test(line.text));
  }

  /** Waits for a log line matching `pattern` after index `from` of the log, and returns it. */
  async waitLog(pattern: RegExp, what: string, timeout = 15_000, from = 0): Promise<LogLine> {
    await waitFor(
      () => this.log.slice(from).some((line) => pattern.test(line.text)),
      `${this.id}: ${what} (log: ${this.log
        .slice(-8)
        .map((line) => line.text)
        .join(' | ')})`,
      timeout,
    );
    return this.log.slice(from).find((line) => pattern.test(line.text)) as LogLine;
  }

  /** Messages this node's CLI logged as lost from `node` (its warn lines, summed). */
  lostFrom(node: string): number {
    let total = 0;
    for (const line of this.log) {
      const match = /lost (\d+) messages from node (\S+) on the \w+ bus/.exec(line.text);
      if (match !== null && match[2] === node) total += Number(match[1]);
    }
    return total;
  }

  /** Every loss this node's CLI logged, from any node. */
  lostLines(): string[] {
    return this.lines(/lost \d+ messages from node/).map((line) => line.text);
  }

  /** Messages this node's CLI logged as shed from its own outbox. */
  shed(): number {
    let total = 0;
    for (const line of this.log) {
      const match = /shed \d+ frames \((\d+) messages\) from the outbox/.exec(line.text);
      if (match !== null) total += Number(match[1]);
    }
    return total;
  }

  /** Connects `count` TCP clients to this node. */
  connect(count: number): Promise<TestClient[]> {
    return Promise.all(Array.from({ length: count }, () => TestClient.connect(this.port)));
  }
}

/** Starts one CLI node in line framing, on an ephemeral port of 127.0.0.1, logging at info level. */
export async function startNode(
  id: string,
  bus: string,
  channel: string,
  extra: readonly string[] = [],
): Promise<CliNode> {
  const cli = await startCli([
    '--bus',
    bus,
    '--channel',
    channel,
    '--node-id',
    id,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--framing',
    'line',
    '--debug-level',
    'info',
    ...extra,
  ]);
  return new CliNode(id, cli);
}

/** Waits until every node logged every other one as up (each has heard the others at least once). */
export async function waitMeshed(nodes: readonly CliNode[], timeout = 15_000): Promise<void> {
  for (const node of nodes) {
    for (const other of nodes) {
      if (other !== node) await node.waitLog(new RegExp(`node ${other.id} up$`), `node ${other.id} up`, timeout);
    }
  }
}

/** A unique channel name for one test. */
export function channelName(prefix: string): string {
  return `${prefix}-${Math.random().toString(16).slice(2, 10)}`;
}

/** Lines received by a client, in order (a partial last line left out). */
export function linesOf(client: TestClient): string[] {
  const text = client.text;
  const end = text.lastIndexOf('\n');
  return end < 0 ? [] : text.slice(0, end).split('\n');
}

/**
 * Writes `count` lines `"<tag> <i>"` (i from 0) to `client`, `batch` lines every `everyMs` ms, so that a
 * fault in the middle hits the stream in flight. Resolves once all were written.
 */
export async function sendNumbered(
  client: TestClient,
  tag: string,
  count: number,
  batch = 20,
  everyMs = 10,
): Promise<void> {
  for (let i = 0; i < count; i += batch) {
    let text = '';
    for (let j = i; j < Math.min(count, i + batch); j += 1) text += `${tag} ${j}\n`;
    await client.write(text);
    if (everyMs > 0) await delay(everyMs);
  }
}

/** What one receiver got of one origin's numbered stream. */
export interface StreamAccount {
  received: number;
  missing: number;
  duplicates: number;
  /** Lines that came after a higher number from the same origin. */
  reordered: number;
  /** Lines of the tag that are not `"<tag> <n>"` with 0 <= n < count. */
  foreign: number;
}

/**
 * Accounts for the lines of `tag` among `lines`: `count` were sent, numbered from 0. A perfect stream has
 * received === count and every other figure 0; a stream with losses has missing > 0 and nothing else.
 */
export function account(lines: readonly string[], tag: string, count: number): StreamAccount {
  const result: StreamAccount = { received: 0, missing: 0, duplicates: 0, reordered: 0, foreign: 0 };
  const seen = new Set<number>();
  let last = -1;
  const prefix = `${tag} `;
  for (const line of lines) {
    if (!line.startsWith(prefix)) continue;
    const rest = line.slice(prefix.length);
    const n = Number(rest);
    if (!/^\d+$/.test(rest) || n >= count) {
      result.foreign += 1;
      continue;
    }
    if (seen.has(n)) {
      result.duplicates += 1;
      continue;
    }
    seen.add(n);
    result.received += 1;
    if (n < last) result.reordered += 1;
    last = Math.max(last, n);
  }
  result.missing = count - seen.size;
  return result;
}

/** The monitoring port of a nats-server started with `-m PORT` (as NatsCluster does). */
export function monitorPort(server: NatsServer): number {
  const at = server.args.indexOf('-m');
  if (at < 0) throw new Error(`${server.name} has no monitoring port`);
  return Number(server.args[at + 1]);
}

/** How many client connections a nats-server has now (its /connz), or -1 when it does not answer. */
export function natsConnections(server: NatsServer): Promise<number> {
  return new Promise((resolve) => {
    const request = http.get(
      { host: '127.0.0.1', port: monitorPort(server), path: '/connz', timeout: 2000 },
      (response) => {
        let body = '';
        response.setEncoding('utf8').on('data', (text: string) => (body += text));
        response.on('end', () => {
          try {
            resolve((JSON.parse(body) as { num_connections?: number }).num_connections ?? 0);
          } catch {
            resolve(-1);
          }
        });
      },
    );
    request.on('error', () => resolve(-1));
    request.on('timeout', () => request.destroy());
  });
}
