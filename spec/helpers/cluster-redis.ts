/**
 * The outside view of a cluster of CLI processes joined over a bus: start a node (`multiplexer --bus ...`),
 * read what it logs (bus up/down, nodes up/down, losses, sheds, with their timestamps), and talk to it with
 * line clients that send and check numbered lines (`#origin seq [padding]`) without keeping every byte.
 */
import * as net from 'node:net';
import { type CliProcess, startCli } from './process';
import { delay, onTeardown, waitFor } from './net';

/** One line of a node's log, as `debug` writes it without a TTY: `ISO-date namespace:level text`. */
export interface LogLine {
  readonly at: number;
  readonly level: string;
  readonly text: string;
}

/** Settings every node of these specs runs with: line framing on loopback, quick heartbeats, info logs. */
const BASE_ARGS = ['--host', '127.0.0.1', '--port', '0', '--framing', 'line', '--debug-level', 'info'];

/** One CLI process on the bus, with what it logged. */
export class ClusterNode {
  private constructor(
    readonly id: string,
    readonly cli: CliProcess,
    readonly args: readonly string[],
  ) {}

  /**
   * Starts `multiplexer --bus <bus> --node-id <id>` on a free loopback port (line framing, info logs,
   * heartbeats every 200 ms unless `extra` says otherwise); killed after the test.
   */
  static async start(bus: string, id: string, extra: readonly string[] = []): Promise<ClusterNode> {
    const args = [...BASE_ARGS, '--heartbeat-interval', '200', ...extra, '--bus', bus, '--node-id', id];
    const cli = await startCli(args);
    return new ClusterNode(id, cli, args);
  }

  get port(): number {
    return this.cli.port;
  }

  get pid(): number {
    return this.cli.pid;
  }

  /** Starts a new process with the same arguments (the same node id: a new incarnation, a new port). */
  restart(): Promise<ClusterNode> {
    return startCli(this.args).then((cli) => new ClusterNode(this.id, cli, this.args));
  }

  /** Sends `signal` to the process; with SIGKILL/SIGTERM, waits until it exited. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.cli.child.kill(signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') await this.cli.exited;
  }

  /** Every log line so far. */
  logs(): LogLine[] {
    const out: LogLine[] = [];
    for (const line of this.cli.stderr().split('\n')) {
      const match = /^(\S+Z) multiplexer:\S+?:(\w+) (.*)$/.exec(line);
      if (match !== null) out.push({ at: Date.parse(match[1]), level: match[2], text: match[3] });
    }
    return out;
  }

  /** Log lines whose text matches `pattern`. */
  logged(pattern: RegExp): LogLine[] {
    return this.logs().filter((line) => pattern.test(line.text));
  }

  /** The losses it reported (warn: `lost N messages from node X`), summed per origin node. */
  losses(): Map<string, number> {
    const sums = new Map<string, number>();
    for (const line of this.logged(/^lost \d+ messages from node /)) {
      const [, count, node] = /^lost (\d+) messages from node (\S+) /.exec(line.text) ?? [];
      sums.set(node, (sums.get(node) ?? 0) + Number(count));
    }
    return sums;
  }

  /** Messages it reported lost from `node`. */
  lostFrom(node: string): number {
    return this.losses().get(node) ?? 0;
  }

  /** Messages it shed from its own outbox (warn: `shed N frames (M messages)`), summed. */
  shedMessages(): number {
    let sum = 0;
    for (const line of this.logged(/ shed \d+ frames \(\d+ messages\)/)) {
      sum += Number(/\((\d+) messages\)/.exec(line.text)?.[1]);
    }
    return sum;
  }

  /** When it said its bus was up (notice) and down (warn). */
  busUps(): number[] {
    return this.logged(/^\w+ bus up$/).map((line) => line.at);
  }

  busDowns(): number[] {
    return this.logged(/^\w+ bus down: /).map((line) => line.at);
  }

  /** When it said `node` was up (info) or down (warn). */
  nodeUps(node: string): number[] {
    return this.logged(new RegExp(`^node ${node} up$`)).map((line) => line.at);
  }

  nodeDowns(node: string): number[] {
    return this.logged(new RegExp(`^node ${node} down: `)).map((line) => line.at);
  }
}

/** Starts one node per id on `bus` and waits until each has heard every other one. */
export async function startNodes(
  bus: string,
  ids: readonly string[],
  extra: readonly string[] = [],
): Promise<ClusterNode[]> {
  const nodes = await Promise.all(ids.map((id) => ClusterNode.start(bus, id, extra)));
  await waitJoined(nodes);
  return nodes;
}

/** Waits until every node logged every other one up at least `times` times. */
export function waitJoined(nodes: readonly ClusterNode[], timeout = 15_000, times = 1): Promise<void> {
  return waitFor(
    () => nodes.every((node) => nodes.every((other) => other === node || node.nodeUps(other.id).length >= times)),
    'every node to hear every other one',
    timeout,
  );
}

/** What a receiver got from one origin of numbered lines. */
export interface OriginReport {
  readonly received: number;
  /** Lines that came again after a later or equal number had come (duplicates or reordering). */
  readonly outOfOrder: number;
  readonly duplicates: number;
  /** Numbers in [0, sent) that never came. */
  readonly missing: number;
  readonly last: number;
}

/**
 * A TCP client of a line-framed node. Numbered lines (`#origin seq ...`) are kept as numbers per origin;
 * other lines as text. Nothing else of what arrives is kept, so floods cost little memory here.
 */
export class LineClient {
  private partial = '';
  /** Numbers per origin, in arrival order. */
  readonly numbered = new Map<string, number[]>();
  /** Lines that are not numbered, in arrival order. */
  readonly texts: string[] = [];
  bytes = 0;
  closed = false;
  private readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => this.take(text));
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        resolve();
      }),
    );
    onTeardown(() => {
      socket.destroy();
      return this.closedPromise;
    });
  }

  /** Connects to a node on 127.0.0.1. */
  static async connect(port: number): Promise<LineClient> {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const client = new LineClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return client;
  }

  /** Connects `count` clients to a node. */
  static all(port: number, count: number): Promise<LineClient[]> {
    return Promise.all(Array.from({ length: count }, () => LineClient.connect(port)));
  }

  private take(text: string): void {
    this.bytes += Buffer.byteLength(text);
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) {
      if (line.startsWith('#')) {
        const space = line.indexOf(' ');
        const origin = line.slice(1, space);
        const end = line.indexOf(' ', space + 1);
        const seq = Number(line.slice(space + 1, end === -1 ? undefined : end));
        let list = this.numbered.get(origin);
        if (list === undefined) this.numbered.set(origin, (list = []));
        list.push(seq);
      } else {
        this.texts.push(line);
      }
    }
  }

  write(data: string): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (error) => (error ? reject(error) : resolve())));
  }

  /** Numbers received from `origin`, in arrival order. */
  seqs(origin: string): number[] {
    return this.numbered.get(origin) ?? [];
  }

  /** Count of numbered lines received from `origin`. */
  count(origin: string): number {
    return this.numbered.get(origin)?.length ?? 0;
  }

  /** The largest number received from `origin` (-1: none). */
  last(origin: string): number {
    const list = this.numbered.get(origin);
    return list === undefined || list.length === 0 ? -1 : Math.max(...list.slice(-64));
  }

  /** What came from `origin`, given that it sent the numbers 0 to `sent - 1`. */
  report(origin: string, sent: number): OriginReport {
    const list = this.seqs(origin);
    let outOfOrder = 0;
    let previous = -1;
    const seen = new Uint8Array(sent);
    let duplicates = 0;
    let distinct = 0;
    for (const seq of list) {
      if (seq <= previous) outOfOrder += 1;
      previous = Math.max(previous, seq);
      if (seq >= 0 && seq < sent) {
        if (seen[seq] === 1) duplicates += 1;
        else {
          seen[seq] = 1;
          distinct += 1;
        }
      }
    }
    return { received: list.length, outOfOrder, duplicates, missing: sent - distinct, last: previous };
  }

  /** Numbers in [0, sent) not received from `origin`. */
  missingFrom(origin: string, sent: number): number[] {
    const seen = new Set(this.seqs(origin));
    const out: number[] = [];
    for (let seq = 0; seq < sent; seq += 1) if (!seen.has(seq)) out.push(seq);
    return out;
  }
}

/** The numbered line `seq` of `origin`, padded with `pad` bytes of filler. */
export function numberedLine(origin: string, seq: number, pad = 0): string {
  return pad > 0 ? `#${origin} ${seq} ${'x'.repeat(pad)}\n` : `#${origin} ${seq}\n`;
}

/**
 * Waits until every client is admitted on its node and hears the whole cluster: the first client of each
 * group (one group per node) says a token, again every 250 ms (a client not admitted yet misses it), until
 * every client has heard the token of every other group's sender.
 */
export async function syncClients(groups: readonly (readonly LineClient[])[], timeout = 15_000): Promise<void> {
  const token = `sync-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const heardAll = (): boolean =>
    groups.every((group, g) =>
      group.every((client, k) =>
        groups.every((_, from) => (from === g && k === 0) || client.texts.includes(`${token} ${from}`)),
      ),
    );
  const start = Date.now();
  while (!heardAll()) {
    if (Date.now() - start > timeout)
      throw new Error(`timed out after ${timeout} ms: not every client heard every node`);
    await Promise.all(groups.map((group, index) => group[0].write(`${token} ${index}\n`)));
    await waitFor(heardAll, 'sync', 250).catch(() => undefined);
  }
}

/** Lines that are not sync tokens. */
export function plainTexts(client: LineClient): string[] {
  return client.texts.filter((text) => !text.startsWith('sync-'));
}

/** A sender of numbered lines on a timer, until stopped. */
export class LineStream {
  /** The next number to send: the count sent so far. */
  sent = 0;
  private stopped = false;
  private readonly done: Promise<void>;

  /**
   * @param perTick lines written per tick, in one write
   * @param tickMs pause between ticks (after the write's callback)
   * @param pad filler bytes per line
   */
  constructor(
    readonly client: LineClient,
    readonly origin: string,
    { perTick = 5, tickMs = 5, pad = 0 }: { perTick?: number; tickMs?: number; pad?: number } = {},
  ) {
    this.done = (async () => {
      while (!this.stopped && !client.closed) {
        let text = '';
        for (let i = 0; i < perTick; i += 1) text += numberedLine(origin, this.sent + i, pad);
        this.sent += perTick;
        try {
          await client.write(text);
        } catch {
          return; // the node went away: what was sent is counted, the caller checks the rest
        }
        await delay(tickMs);
      }
    })();
    onTeardown(() => this.stop().then(() => undefined));
  }

  /** Stops after the write under way; resolves with the count sent. */
  async stop(): Promise<number> {
    this.stopped = true;
    await this.done;
    return this.sent;
  }
}
