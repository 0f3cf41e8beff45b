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
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnTracked, stopChild } from './children';
import { type CaseKind, type CaseNet, PLAIN_KINDS } from './cases';
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
