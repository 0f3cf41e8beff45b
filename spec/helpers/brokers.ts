/**
 * Private brokers for the bus specs: `redis-server`, a 3-master Redis Cluster, `nats-server` and a 2-server
 * NATS cluster, each on free loopback ports, started by the test and killed by pid in its teardown. They
 * never touch the shared services on 6379/4222, and a restart comes back on the same port.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { delay } from './net';

/** Ports the harness must never use: the machine's shared services. */
const RESERVED = new Set([6379, 4222, 5432, 3306, 5672, 1883, 16379, 6222, 8222]);

/** True when nothing listens on 127.0.0.1:port and we may bind it. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

const claimed = new Set<number>();

/**
 * A free loopback port below 55000 (so that `port + 10000`, Redis Cluster's bus port, is valid too),
 * outside the kernel's ephemeral range, not reserved and not handed out before by this process.
 * @param withBusPort also require `port + 10000` to be free
 */
export async function freePort(withBusPort = false): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (RESERVED.has(port) || claimed.has(port) || (withBusPort && RESERVED.has(port + 10_000))) continue;
    if (!(await portFree(port)) || (withBusPort && !(await portFree(port + 10_000)))) continue;
    claimed.add(port);
    return port;
  }
  throw new Error('no free port found');
}

/** Every broker process started and not yet reaped, so a crashed spec still leaves none behind. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * One broker process that can be killed and started again with the same arguments (so on the same port).
 * Its output is kept for error messages.
 */
export class BrokerProcess {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  output = '';

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    /** A line in its output that says it accepts connections. */
    private readonly readyLine: RegExp,
    readonly name = command,
  ) {}

  /** The pid of the running process, or null when it is not running. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** Starts the process and waits until it printed its ready line. */
  async start(timeout = 10_000): Promise<void> {
    if (this.child !== null) throw new Error(`${this.name} is already running`);
    const child = spawn(this.command, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    live.add(child);
    let seen = '';
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} not ready in ${timeout} ms: ${seen}`)), timeout);
      const onData = (text: string): void => {
        seen += text;
        this.output = (this.output + text).slice(-20_000);
        if (this.readyLine.test(seen)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.setEncoding('utf8').on('data', onData);
      child.stderr?.setEncoding('utf8').on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code ?? signal}) before it was ready: ${seen}`));
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.exited.then(() => {
      live.delete(child);
      if (this.child === child) this.child = null;
    });
    try {
      await ready;
    } catch (error) {
      await this.kill('SIGKILL');
      throw error;
    }
  }

  /** Sends `signal` to the process (by its pid) and waits until it exited. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (child === null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
    this.child = null;
  }

  /** Kills (SIGKILL by default) and starts again on the same arguments. */
  async restart(signal: NodeJS.Signals = 'SIGKILL', downForMs = 0): Promise<void> {
    await this.kill(signal);
    if (downForMs > 0) await delay(downForMs);
    await this.start();
  }
}

/** Runs `redis-cli` against 127.0.0.1:port and returns its output; throws on a non-zero exit. */
export function redisCli(port: number, ...args: string[]): string {
  const result = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (result.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${result.stderr}${result.stdout}`);
  return result.stdout.trim();
}

/** A private `redis-server` on a free port: no persistence, killed after the test or the suite. */
export class RedisServer extends BrokerProcess {
  constructor(
    readonly port: number,
    extraArgs: readonly string[] = [],
  ) {
    super(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs],
      /Ready to accept connections/,
      `redis-server:${port}`,
    );
  }

  /** Starts a standalone server on a free port. */
  static async start(extraArgs: readonly string[] = []): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), extraArgs);
    await server.start();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** `redis-cli` against this server. */
  cli(...args: string[]): string {
    return redisCli(this.port, ...args);
  }
}

/** A Redis Cluster of `masters` masters and no replicas, each in its own directory under one temp dir. */
export class RedisCluster {
  private constructor(
    readonly nodes: readonly RedisServer[],
    private readonly dir: string,
  ) {}

  /** Starts the nodes, creates the cluster and waits until every node reports cluster_state:ok. */
  static async start(masters = 3): Promise<RedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'mux-redis-cluster-'));
    const nodes: RedisServer[] = [];
    const cluster = new RedisCluster(nodes, dir);
    try {
      for (let i = 0; i < masters; i++) {
        const port = await freePort(true);
        const nodeDir = join(dir, String(port));
        mkdirSync(nodeDir);
        const node = new RedisServer(port, [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(nodeDir, 'nodes.conf'),
          '--cluster-node-timeout',
          '2000',
          '--dir',
          nodeDir,
        ]);
        nodes.push(node);
        await node.start();
      }
      const addresses = nodes.map((node) => `127.0.0.1:${node.port}`);
      const created = spawnSync(
        'redis-cli',
        ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
        { encoding: 'utf8', timeout: 60_000 },
      );
      if (created.status !== 0) throw new Error(`redis-cli --cluster create: ${created.stdout}${created.stderr}`);
      await cluster.waitOk();
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /** Seed URLs, one per node. */
  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /** Waits until every running node says cluster_state:ok and knows every slot. */
  async waitOk(timeout = 30_000): Promise<void> {
    const start = Date.now();
    for (;;) {
      const ok = this.nodes.every((node) => {
        if (!node.running) return false;
        try {
          const info = node.cli('cluster', 'info');
          return /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info);
        } catch {
          return false;
        }
      });
      if (ok) return;
      if (Date.now() - start > timeout) throw new Error('the Redis Cluster did not reach cluster_state:ok');
      await delay(100);
    }
  }

  /** The node that serves `slot`, as CLUSTER NODES on a running node tells. */
  nodeForSlot(slot: number): RedisServer {
    const live = this.nodes.find((node) => node.running);
    if (live === undefined) throw new Error('no node is running');
    for (const line of live.cli('cluster', 'nodes').split('\n')) {
      const fields = line.trim().split(' ');
      const port = Number(/:(\d+)@/.exec(fields[1] ?? '')?.[1]);
      for (const range of fields.slice(8)) {
        const [from, to = from] = range.split('-').map(Number);
        if (slot >= from && slot <= to) {
          const node = this.nodes.find((each) => each.port === port);
          if (node !== undefined) return node;
        }
      }
    }
    throw new Error(`no node serves slot ${slot}`);
  }

  /** Kills every node and removes the directory. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.kill('SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A private `nats-server` on a free loopback port, optionally routed to others in a cluster. */
export class NatsServer extends BrokerProcess {
  constructor(
    readonly port: number,
    extraArgs: readonly string[] = [],
  ) {
    super(
      'nats-server',
      ['-a', '127.0.0.1', '-p', String(port), ...extraArgs],
      /Server is ready/,
      `nats-server:${port}`,
    );
  }

  /** Starts a standalone server on a free port. */
  static async start(extraArgs: readonly string[] = []): Promise<NatsServer> {
    const server = new NatsServer(await freePort(), extraArgs);
    await server.start();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }
}

/** Two (or more) `nats-server`s joined by routes. */
export class NatsCluster {
  private constructor(
    readonly nodes: readonly NatsServer[],
    private readonly monitorPorts: readonly number[],
  ) {}

  /** Starts `size` servers routed to each other and waits until each has a route to every other one. */
  static async start(size = 2): Promise<NatsCluster> {
    const ports: number[] = [];
    const routePorts: number[] = [];
    const monitorPorts: number[] = [];
    for (let i = 0; i < size; i++) {
      ports.push(await freePort());
      routePorts.push(await freePort());
      monitorPorts.push(await freePort());
    }
    const routes = routePorts.map((port) => `nats-route://127.0.0.1:${port}`).join(',');
    const nodes = ports.map(
      (port, i) =>
        new NatsServer(port, [
          '-m',
          String(monitorPorts[i]),
          '--cluster_name',
          'mux',
          '--cluster',
          `nats://127.0.0.1:${routePorts[i]}`,
          '--routes',
          routes,
          '--no_advertise',
        ]),
    );
    const cluster = new NatsCluster(nodes, monitorPorts);
    try {
      await Promise.all(nodes.map((node) => node.start()));
      await cluster.waitRouted();
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  get urls(): string[] {
    return this.nodes.map((node) => node.url);
  }

  /** Waits until every running server reports a route to each other running one (its /routez). */
  async waitRouted(timeout = 15_000): Promise<void> {
    const start = Date.now();
    for (;;) {
      const running = this.nodes.filter((node) => node.running).length;
      const counts = await Promise.all(
        this.nodes.map((node, i) => (node.running ? routeCount(this.monitorPorts[i]) : Promise.resolve(-1))),
      );
      if (counts.every((count) => count === -1 || count >= running - 1)) return;
      if (Date.now() - start > timeout) throw new Error(`the NATS servers did not route to each other: ${counts}`);
      await delay(50);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.kill('SIGKILL')));
  }
}

/** num_routes from a nats-server's monitoring endpoint; 0 when it does not answer. */
function routeCount(port: number): Promise<number> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/routez', timeout: 2000 }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (text: string) => (body += text));
      response.on('end', () => {
        try {
          const parsed = JSON.parse(body) as { num_routes?: number };
          resolve(parsed.num_routes ?? 0);
        } catch {
          resolve(0);
        }
      });
    });
    request.on('error', () => resolve(0));
    request.on('timeout', () => request.destroy());
  });
}
