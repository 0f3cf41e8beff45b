/**
 * The peers of the benchmark: what they are, whether they can run here, and starting / stopping them.
 *
 * Always: the project's CLI in raw (`mux`) and line framing (`mux-line`), a chat server on the library with
 * a nick filter (`mux-nick`), the library with rooms (`mux-rooms`, for `rooms:` cases) and with a forward
 * filter (`mux-forward`, for `fwd:` cases), and the bench's own naive and corked Node loops (which know
 * the bench's rooms too). When installed: the Tcllib multiplexer, ncat --broker, redis-server (pub/sub),
 * nats-server. More line-protocol servers can be added with BENCH_EXTRA_PEERS="name=command args {port};...".
 *
 * WebSocket cases (`ws-`, `mix-`): the CLI with `--ws-port` (`mux-ws`), a naive and a
 * corked `ws` loop, and socket.io 4. A peer runs the cases whose clients it takes (`nets`).
 *
 * Cluster cases (`cluster-redis:`, `cluster-nats:`): K CLI nodes joined by `--bus` (`mux-cluster`), and
 * socket.io 4 with @socket.io/redis-adapter (`socketio-redis`, redis only), each node on a port of its own,
 * joined by a private redis-server or nats-server started on a free port for the run and stopped by PID.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnTracked, stopChild } from './children';
import { type BenchCase, type CaseKind, type CaseNet, type ClusterBroker, PLAIN_KINDS } from './cases';
import type { ProtocolName } from './protocols';

export interface PeerSpec {
  readonly name: string;
  /** Protocol of its TCP clients. */
  readonly proto: ProtocolName;
  readonly description: string;
  /** The clients it takes: `tcp` on its port, `ws` on its WebSocket port, `mix` both in one room. */
  readonly nets: readonly CaseNet[];
  /** Protocol of its WebSocket clients (`ws-text`, `socketio`), or null when it takes none. */
  readonly wsProto: ProtocolName | null;
  /** Port of its WebSocket clients when it serves on `port`: the same one, or `port + WS_PORT_OFFSET`. */
  wsPort(port: number): number;
  /**
   * The kinds of case it runs: the plain ones (PLAIN_KINDS), only `all` (the line-framing variants of the
   * issue), `rooms` when it knows the bench's rooms, `fwd` for the forward-filter peer.
   */
  readonly kinds: readonly CaseKind[];
  /** Lines come back prefixed with `nick: `. */
  readonly stripPrefix: boolean;
  /** Why connecting many clients to it takes very long (such cases are cut down), or null. */
  readonly slowAccept: string | null;
  /** Why it cannot run on this machine, or null. */
  unavailable(): string | null;
  /** The command that serves on 127.0.0.1:`port`. */
  command(port: number, workDir: string): { file: string; args: string[] };
  /** A peer of cluster cases: the brokers it joins its nodes with, and the command of node `index`. */
  readonly cluster?: ClusterPeer;
}

/** How a peer runs as a cluster of nodes on one broker. */
export interface ClusterPeer {
  readonly brokers: readonly ClusterBroker[];
  /** Node `index` serving on 127.0.0.1:`port` (its WebSocket clients on the same port), joined by `busUrl`. */
  node(port: number, index: number, busUrl: string): { file: string; args: string[] };
}

/** A peer with a TCP and a WebSocket port takes its WebSocket clients this far above its TCP port. */
export const WS_PORT_OFFSET = 50;

const DIST = __dirname; // dist/bench
const CLI = join(DIST, '..', 'lib', 'cli.js');
const server = (name: string): string => join(DIST, 'servers', `${name}.js`);

function commandPath(name: string): string | null {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return found.status === 0 && found.stdout.trim() !== '' ? found.stdout.trim() : null;
}

function missing(command: string, packageName: string): string | null {
  return commandPath(command) === null ? `${command} not installed (apt-get install ${packageName})` : null;
}

function nodeScript(
  name: string,
  description: string,
  file: string,
  extra: string[] = [],
  options: Partial<PeerSpec> = {},
): PeerSpec {
  return {
    name,
    proto: 'line',
    description,
    nets: ['tcp'],
    wsProto: null,
    wsPort: (port) => port,
    kinds: PLAIN_KINDS,
    stripPrefix: false,
    slowAccept: null,
    ...options,
    unavailable: () => (existsSync(file) ? null : `${file} missing (npm run build)`),
    command: (port) => ({
      file: process.execPath,
      args: [file, '--host', '127.0.0.1', '--port', String(port), ...extra],
    }),
  };
}

/** A WebSocket-only server on its port (WebSocket clients speak text frames of lines unless told). */
const WS_ONLY: Partial<PeerSpec> = { nets: ['ws'], wsProto: 'ws-text' };

let cliHelp: string | null = null;

/** Why the CLI cannot be the WebSocket peer: missing, or its --help does not list --ws-port. */
function cliWithoutWebSocket(): string | null {
  if (!existsSync(CLI)) return `${CLI} missing (npm run build)`;
  cliHelp ??= spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8', timeout: 10_000 }).stdout ?? '';
  return cliHelp.includes('--ws-port')
    ? null
    : 'dist/lib/cli.js --help does not list --ws-port (no WebSocket transport yet)';
}

/** The Tcllib multiplexer, unmodified: create, Init on the port, serve forever. */
const TCL_SCRIPT =
  'package require multiplexer\nset mp [multiplexer::create]\n${mp}::Init [lindex $argv 0]\nvwait forever\n';

export const BUILTIN_PEERS: readonly PeerSpec[] = [
  nodeScript('naive', 'naive Node loop: one write per chunk per receiver', server('naive'), [], {
    kinds: [...PLAIN_KINDS, 'rooms'],
  }),
  nodeScript('corked', 'naive loop + per-turn cork/uncork + TCP_NODELAY, no features', server('corked'), [], {
    kinds: [...PLAIN_KINDS, 'rooms'],
  }),
  nodeScript('mux', 'this project: CLI, raw framing, all features on', CLI),
  nodeScript('mux-line', 'this project: CLI, --framing line, no filter', CLI, ['--framing', 'line'], {
    kinds: ['all'],
  }),
  nodeScript(
    'mux-nick',
    'this project: line framing + a filter prefixing `nick: ` to every line',
    server('mux-nick'),
    [],
    { kinds: ['all'], stripPrefix: true },
  ),
  nodeScript(
    'mux-rooms',
    'this project: line framing, `/room` lines join a room (a filter), broadcast() delivers to the room',
    server('mux-rooms'),
    [],
    { kinds: ['rooms'] },
  ),
  nodeScript(
    'mux-forward',
    'this project: raw framing, a forward filter returning undefined for every delivery',
    server('mux-forward'),
    [],
    { kinds: ['fwd'] },
  ),
  {
    name: 'tcl',
    nets: ['tcp'],
    wsProto: null,
    wsPort: (port) => port,
    proto: 'line',
    description: 'Tcllib multiplexer (tclsh)',
    kinds: PLAIN_KINDS,
    stripPrefix: false,
    slowAccept: null,
    unavailable: () => {
      const absent = missing('tclsh', 'tcl tcllib');
      if (absent !== null) return absent;
      const probe = spawnSync('tclsh', [], { input: 'package require multiplexer\n', encoding: 'utf8', timeout: 5000 });
      return probe.status === 0 ? null : 'tcllib multiplexer package not found (apt-get install tcllib)';
    },
    command: (port, workDir) => {
      const script = join(workDir, 'tcl-multiplexer.tcl');
      writeFileSync(script, TCL_SCRIPT);
      return { file: 'tclsh', args: [script, String(port)] };
    },
  },
  {
    name: 'ncat',
    nets: ['tcp'],
    wsProto: null,
    wsPort: (port) => port,
    proto: 'line',
    description: 'ncat --broker',
    kinds: PLAIN_KINDS,
    stripPrefix: false,
    slowAccept: 'accepts a few dozen connections/s (listen backlog 10): 1,000 clients take ~45 s to connect',
    unavailable: () => missing('ncat', 'ncat'),
    command: (port) => ({ file: 'ncat', args: ['-l', '127.0.0.1', String(port), '--broker', '-m', '20000'] }),
  },
  {
    name: 'redis',
    nets: ['tcp'],
    wsProto: null,
    wsPort: (port) => port,
    proto: 'redis',
    description: 'redis-server pub/sub',
    kinds: PLAIN_KINDS,
    stripPrefix: false,
    slowAccept: null,
    unavailable: () => missing('redis-server', 'redis-server'),
    command: (port) => ({
      file: 'redis-server',
      args: [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--loglevel',
        'warning',
        '--maxclients',
        '20000',
      ],
    }),
  },
  {
    name: 'nats',
    nets: ['tcp'],
    wsProto: null,
    wsPort: (port) => port,
    proto: 'nats',
    description: 'nats-server',
    kinds: PLAIN_KINDS,
    stripPrefix: false,
    slowAccept: null,
    unavailable: () => missing('nats-server', 'nats-server'),
    command: (port) => ({ file: 'nats-server', args: ['-a', '127.0.0.1', '-p', String(port)] }),
  },
  nodeScript('ws-naive', 'naive ws loop: ws.send per message per receiver', server('ws-naive'), [], WS_ONLY),
  nodeScript(
    'ws-corked',
    "naive ws loop + per-turn cork/uncork of each receiver's socket",
    server('ws-corked'),
    [],
    WS_ONLY,
  ),
  nodeScript('socketio', 'socket.io 4: socket.broadcast.emit, one prebuilt frame per message', server('socketio'), [], {
    ...WS_ONLY,
    wsProto: 'socketio',
  }),
  {
    name: 'mux-ws',
    proto: 'line',
    description: `this project: CLI, --framing line, WebSocket clients on --ws-port (TCP port + ${WS_PORT_OFFSET})`,
    nets: ['ws', 'mix'],
    wsProto: 'ws-text',
    wsPort: (port) => port + WS_PORT_OFFSET,
    kinds: PLAIN_KINDS,
    stripPrefix: false,
    slowAccept: null,
    unavailable: cliWithoutWebSocket,
    command: (port) => ({
      file: process.execPath,
      args: [
        CLI,
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '--framing',
        'line',
        '--ws-port',
        String(port + WS_PORT_OFFSET),
      ],
    }),
  },
];

/** Fields of a cluster peer that are not about one server (it never runs the other cases). */
const CLUSTER_ONLY = {
  wsPort: (port: number) => port,
  kinds: ['cluster'] as const,
  stripPrefix: false,
  slowAccept: null,
  command: (): never => {
    throw new Error('a cluster peer starts nodes (startCluster), not one server');
  },
};

/** Cluster peers: the CLI joined by --bus, and socket.io with the Redis adapter. */
export const CLUSTER_PEERS: readonly PeerSpec[] = [
  {
    ...CLUSTER_ONLY,
    name: 'mux-cluster',
    proto: 'line',
    description: 'this project: CLI nodes, raw framing (as mux), joined by --bus to a private broker',
    nets: ['tcp'],
    wsProto: null,
    unavailable: () => (existsSync(CLI) ? null : `${CLI} missing (npm run build)`),
    cluster: {
      brokers: ['redis', 'nats'],
      node: (port, index, busUrl) => ({
        file: process.execPath,
        args: [CLI, '--host', '127.0.0.1', '--port', String(port), '--bus', busUrl, '--node-id', `bench${index}`],
      }),
    },
  },
  {
    ...CLUSTER_ONLY,
    name: 'socketio-redis',
    proto: 'line',
    description: 'socket.io 4 nodes with @socket.io/redis-adapter (node-redis clients) on a private redis-server',
    nets: ['ws'],
    wsProto: 'socketio',
    unavailable: () => {
      const file = server('socketio-redis');
      if (!existsSync(file)) return `${file} missing (npm run build)`;
      try {
        require.resolve('@socket.io/redis-adapter');
        return null;
      } catch {
        return '@socket.io/redis-adapter not installed (npm install)';
      }
    },
    cluster: {
      brokers: ['redis'],
      node: (port, _index, busUrl) => ({
        file: process.execPath,
        args: [server('socketio-redis'), '--host', '127.0.0.1', '--port', String(port), '--redis', busUrl],
      }),
    },
  },
];

/** BENCH_EXTRA_PEERS="name=command args {port};...": external line-protocol broadcasters. */
export function extraPeers(text: string | undefined): PeerSpec[] {
  if (text === undefined || text.trim() === '') return [];
  return text
    .split(';')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
    .map((entry) => {
      const eq = entry.indexOf('=');
      if (eq <= 0) throw new RangeError(`BENCH_EXTRA_PEERS entry must be name=command: ${entry}`);
      const name = entry.slice(0, eq).trim();
      const words = entry
        .slice(eq + 1)
        .trim()
        .split(/\s+/);
      return {
        name,
        proto: 'line' as const,
        description: `external: ${words.join(' ')}`,
        nets: ['tcp'] as const,
        wsProto: null,
        wsPort: (port: number) => port,
        kinds: PLAIN_KINDS,
        stripPrefix: false,
        slowAccept: null,
        unavailable: () => (commandPath(words[0]) === null ? `${words[0]} not found` : null),
        command: (port: number) => ({
          file: words[0],
          args: words.slice(1).map((word) => word.replace('{port}', String(port))),
        }),
      };
    });
}

/** A peer server started by the bench. */
export class RunningPeer {
  constructor(
    readonly spec: PeerSpec,
    readonly port: number,
    readonly child: ChildProcess,
    readonly logFile: string,
  ) {}

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Every process of the peer (a cluster's nodes and broker), for CPU time. */
  get pids(): number[] {
    return [this.pid];
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts a peer on `port` and resolves once it accepts connections. */
export async function startPeer(spec: PeerSpec, port: number, workDir: string): Promise<RunningPeer> {
  const ports = spec.nets.includes('tcp') || spec.nets.includes('mix') ? [port] : [];
  if (spec.wsProto !== null && !ports.includes(spec.wsPort(port))) ports.push(spec.wsPort(port));
  for (const p of ports) if (await canConnect(p)) throw new Error(`port ${p} is already in use: set BENCH_PORT_BASE`);
  const { file, args } = spec.command(port, workDir);
  const logFile = join(workDir, `${spec.name}-${port}.log`);
  const log = openSync(logFile, 'a');
  const child = spawnTracked(file, args, { stdio: ['ignore', log, log] });
  closeSync(log);
  const peer = new RunningPeer(spec, port, child, logFile);
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (!peer.alive) throw new Error(`${spec.name} exited at start (see ${logFile})`);
    if ((await Promise.all(ports.map(canConnect))).every(Boolean)) return peer;
    await sleep(50);
  }
  await peer.stop();
  throw new Error(`${spec.name} did not listen on ${ports.join(' and ')} within 15 s (see ${logFile})`);
}

/** A free TCP port of 127.0.0.1 (the kernel's pick, released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** The private broker of a cluster run, on `port`. */
function brokerCommand(broker: ClusterBroker, port: number): { file: string; args: string[] } {
  if (broker === 'redis') {
    return {
      file: 'redis-server',
      args: [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--loglevel',
        'warning',
      ],
    };
  }
  return { file: 'nats-server', args: ['-a', '127.0.0.1', '-p', String(port)] };
}

/** Why a cluster case cannot run here (its broker is not installed), or null. */
export function brokerMissing(broker: ClusterBroker): string | null {
  return broker === 'redis' ? missing('redis-server', 'redis-server') : missing('nats-server', 'nats-server');
}

/** A cluster started by the bench: its nodes (the first is `child`) and its private broker, stopped by PID. */
export class RunningCluster extends RunningPeer {
  constructor(
    spec: PeerSpec,
    readonly ports: readonly number[],
    readonly nodes: readonly ChildProcess[],
    readonly broker: ChildProcess,
    logFile: string,
  ) {
    super(spec, ports[0], nodes[0], logFile);
  }

  override get pids(): number[] {
    return [...this.nodes, this.broker].map((child) => child.pid ?? 0);
  }

  override get alive(): boolean {
    return [...this.nodes, this.broker].every((child) => child.exitCode === null && child.signalCode === null);
  }

  override async stop(): Promise<void> {
    await Promise.all(this.nodes.map((child) => stopChild(child)));
    await stopChild(this.broker);
  }
}

function spawnLogged(name: string, command: { file: string; args: string[] }, workDir: string): [ChildProcess, string] {
  const logFile = join(workDir, `${name}.log`);
  const log = openSync(logFile, 'a');
  const child = spawnTracked(command.file, command.args, { stdio: ['ignore', log, log] });
  closeSync(log);
  return [child, logFile];
}

async function listening(children: readonly ChildProcess[], ports: readonly number[], what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (children.some((child) => child.exitCode !== null || child.signalCode !== null))
      throw new Error(`${what} exited at start`);
    if ((await Promise.all(ports.map(canConnect))).every(Boolean)) return;
    await sleep(50);
  }
  throw new Error(`${what} did not listen on ${ports.join(', ')} within 15 s`);
}

/**
 * Starts a cluster case's private broker on a free port, then the peer's nodes on free ports joined by it;
 * resolves once every node accepts connections.
 */
export async function startCluster(spec: PeerSpec, benchCase: BenchCase, workDir: string): Promise<RunningCluster> {
  if (spec.cluster === undefined || benchCase.kind !== 'cluster') throw new Error(`${spec.name}: not a cluster peer`);
  const brokerPort = await freePort();
  const [broker, brokerLog] = spawnLogged(
    `${spec.name}-${benchCase.broker}-${brokerPort}`,
    brokerCommand(benchCase.broker, brokerPort),
    workDir,
  );
  const nodes: ChildProcess[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((child) => stopChild(child)));
    await stopChild(broker);
  };
  try {
    await listening([broker], [brokerPort], `${benchCase.broker}-server (see ${brokerLog})`);
    const busUrl = `${benchCase.broker}://127.0.0.1:${brokerPort}`;
    const ports: number[] = [];
    let firstLog = '';
    for (let i = 0; i < benchCase.nodes; i += 1) {
      const port = await freePort();
      const [child, logFile] = spawnLogged(
        `${spec.name}-node${i}-${port}`,
        spec.cluster.node(port, i, busUrl),
        workDir,
      );
      if (i === 0) firstLog = logFile;
      nodes.push(child);
      ports.push(port);
    }
    await listening([...nodes, broker], ports, `${spec.name} nodes (see ${workDir})`);
    return new RunningCluster(spec, ports, nodes, broker, firstLog);
  } catch (error) {
    await stopAll();
    throw error;
  }
}
