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
 * Writes `count` lines `"<tag> <i><pad>"` (i from 0) to `client`, `batch` lines every `everyMs` ms, so that a
 * fault in the middle hits the stream in flight. Resolves once all were written. A pad begins with a space.
 */
export async function sendNumbered(
  client: TestClient,
  tag: string,
  count: number,
  batch = 20,
  everyMs = 10,
  pad = '',
): Promise<void> {
  for (let i = 0; i < count; i += batch) {
    let text = '';
    for (let j = i; j < Math.min(count, i + batch); j += 1) text += `${tag} ${j}${pad}\n`;
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
    const rest = line.slice(prefix.length).split(' ')[0];
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

/** A sender on a node, with the tag of its lines. */
export interface Sender {
  readonly node: CliNode;
  readonly client: TestClient;
  readonly tag: string;
}

/** A client that receives on a node. */
export interface Receiver {
  readonly node: CliNode;
  readonly client: TestClient;
}

/**
 * Waits until every receiver has, of every remote node's streams, all lines but those its node reported
 * lost from that node, and of every local sender's stream all lines (a client never gets its own); then
 * waits a second (heartbeats would reveal a lost tail by then) and checks that this still holds.
 */
export async function settleStreams(
  receivers: readonly Receiver[],
  senders: readonly Sender[],
  count: number,
  timeout = 30_000,
): Promise<void> {
  const complete = (): boolean =>
    receivers.every(({ node, client }) => {
      const lines = linesOf(client);
      return senders.every((sender) => {
        if (sender.client === client) return true;
        if (sender.node === node) return account(lines, sender.tag, count).received === count;
        // The node reports a loss per origin node: sum the missing lines of that node's senders.
        const fromNode = senders.filter((each) => each.node === sender.node && each.client !== client);
        const missing = fromNode.reduce((sum, each) => sum + account(lines, each.tag, count).missing, 0);
        return missing === node.lostFrom(sender.node.id);
      });
    });
  await waitFor(complete, 'every receiver to have each stream but what its node reported lost', timeout);
  await delay(1000);
  expect(complete()).toBe(true);
}

/**
 * Checks every receiver's lines of every stream: none twice, none out of order, none foreign; every local
 * stream whole; and of each remote node's streams exactly as many missing as its node reported lost.
 * Returns the missing lines per `receiver<-origin` node, for the report.
 */
export function expectExactStreams(
  receivers: readonly Receiver[],
  senders: readonly Sender[],
  nodes: readonly CliNode[],
  count: number,
): Record<string, number> {
  const figures: Record<string, number> = {};
  for (const { node, client } of receivers) {
    const lines = linesOf(client);
    for (const sender of senders) {
      if (sender.client === client) continue;
      const got = account(lines, sender.tag, count);
      expect([sender.tag, got.duplicates, got.reordered, got.foreign]).toEqual([sender.tag, 0, 0, 0]);
      if (sender.node === node) expect([sender.tag, got.received]).toEqual([sender.tag, count]);
    }
    for (const other of nodes) {
      if (other === node) continue;
      const missing = senders
        .filter((sender) => sender.node === other)
        .reduce((sum, sender) => sum + account(lines, sender.tag, count).missing, 0);
      expect([`${node.id}<-${other.id}`, missing]).toEqual([`${node.id}<-${other.id}`, node.lostFrom(other.id)]);
      figures[`${node.id}<-${other.id}`] = missing;
    }
  }
  return figures;
}

/**
 * Makes sure every client is admitted on its node and hears every other one across the cluster: each says
 * `hi <n>`, again every round, until every client has heard every other one (a line sent before a client
 * was admitted never reaches it); then waits for stragglers and forgets what they received.
 */
export async function meet(clients: readonly TestClient[], timeout = 15_000): Promise<void> {
  const start = Date.now();
  const heard = (client: TestClient, n: number): boolean => client.text.includes(`hi ${n}\n`);
  for (;;) {
    await Promise.all(clients.map((client, n) => client.write(`hi ${n}\n`)));
    await delay(100);
    if (clients.every((client, i) => clients.every((_, n) => n === i || heard(client, n)))) break;
    if (Date.now() - start > timeout) throw new Error('the clients did not all hear each other');
  }
  await delay(300);
  for (const client of clients) {
    client.chunks.length = 0;
    client.received = 0;
  }
}
