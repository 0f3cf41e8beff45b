/**
 * The cases of the benchmark, named as in the issue: `d:N:B` one dedicated sender to N receivers with
 * B-byte lines; `all:N:B` N clients that all send and all receive; `paced:N:B[:R]` one sender at R msgs/s
 * (default 1000) to N receivers; `mem:N` server memory per idle connection with N connections;
 * `hold:N` N concurrent clients held with broadcast working; `rooms:N:B:R` the `all:N:B` load spread over R
 * rooms (client i in room i % R, joined with a first line `/room <i % R>`), each message going to the other
 * members of its sender's room only; `fwd:N:B` the `all:N:B` load against a server with a forward filter
 * registered (run by the peers made for it); `cluster-redis:K:N:B` and `cluster-nats:K:N:B` the `all:K*N:B`
 * load on a cluster of K nodes joined by a private redis-server or nats-server the bench starts for the run,
 * N clients on each node, every client receiving from all the others (same-node and cross-node latency apart);
 * with a fourth number R, each client sends R messages/s (latency off saturation).
 *
 * Prefixed `ws-`, every client speaks WebSocket (text frames of lines without their newline, or the
 * peer's own WebSocket protocol); prefixed `mix-`, a room of both: the first half of the clients (or
 * receivers) over WebSocket, the rest and any dedicated sender over TCP.
 */

/** Who the clients of a case are: all TCP, all WebSocket, or half and half in one room. */
export type CaseNet = 'tcp' | 'ws' | 'mix';

interface CaseBase {
  readonly name: string;
  readonly net: CaseNet;
}

export type BenchCase = CaseBase &
  (
    | { readonly kind: 'dedicated'; readonly receivers: number; readonly size: number }
    | { readonly kind: 'all'; readonly clients: number; readonly size: number }
    | { readonly kind: 'rooms'; readonly clients: number; readonly size: number; readonly rooms: number }
    | { readonly kind: 'fwd'; readonly clients: number; readonly size: number }
    | { readonly kind: 'paced'; readonly receivers: number; readonly size: number; readonly rate: number }
    | { readonly kind: 'mem'; readonly clients: number }
    | { readonly kind: 'hold'; readonly clients: number }
    | {
        readonly kind: 'cluster';
        readonly broker: ClusterBroker;
        readonly nodes: number;
        /** Clients on each node. */
        readonly perNode: number;
        readonly clients: number;
        readonly size: number;
        /** Messages per second per client (paced, for latency off saturation); 0: as fast as the window allows. */
        readonly rate: number;
      }
  );

/** What joins the nodes of a cluster case: a private redis-server or nats-server started for the run. */
export type ClusterBroker = 'redis' | 'nats';

export type CaseKind = BenchCase['kind'];

/** The kinds of case any broadcaster runs; `rooms` and `fwd` need a peer that knows rooms or forward filters. */
export const PLAIN_KINDS: readonly CaseKind[] = ['dedicated', 'all', 'paced', 'mem', 'hold'];

export const DEFAULT_CASES =
  'd:10:64 d:10:1024 d:100:64 d:100:1024 d:1000:64 d:1000:1024 all:100:64 rooms:100:64:10 fwd:100:64 paced:100:64 ' +
  'mem:1000 hold:10000 ' +
  'ws-all:100:64 ws-d:1000:64 mix-all:100:64 ws-mem:1000 ' +
  'cluster-redis:2:50:64 cluster-nats:2:50:64 cluster-redis:2:50:64:10 cluster-nats:2:50:64:10';

/** All-mode flow control, as in the measurements: 8 messages ahead at most, one per turn. */
export const ALL_WINDOW = 8;
export const ALL_BATCH = 1;

export function parseCase(text: string): BenchCase {
  const parts = text.split(':');
  const nums = parts.slice(1).map(Number);
  const bad = (): never => {
    throw new RangeError(
      `bad case ${text}: d:N:B, all:N:B, paced:N:B[:RATE], mem:N or hold:N, optionally prefixed ws- or mix-; ` +
        'rooms:N:B:ROOMS (at least 2 clients per room), fwd:N:B, cluster-redis:NODES:N:B[:RATE] or cluster-nats:NODES:N:B[:RATE]',
    );
  };
  if (nums.some((n) => !Number.isInteger(n) || n <= 0)) bad();
  const cluster = /^cluster-(redis|nats)$/.exec(parts[0]);
  if (cluster !== null) {
    if ((nums.length !== 3 && nums.length !== 4) || nums[0] < 2) bad();
    const [nodes, perNode, size, rate = 0] = nums;
    const broker = cluster[1] as ClusterBroker;
    return { kind: 'cluster', name: text, net: 'tcp', broker, nodes, perNode, clients: nodes * perNode, size, rate };
  }
  const prefix = /^(ws|mix)-/.exec(parts[0]);
  const net: CaseNet = prefix === null ? 'tcp' : (prefix[1] as CaseNet);
  const name = text;
  // A mixed room needs at least one client of each kind.
  const least = net === 'mix' ? 2 : 1;
  switch (prefix === null ? parts[0] : parts[0].slice(prefix[0].length)) {
    case 'd':
      if (nums.length !== 2 || nums[0] < least) bad();
      return { kind: 'dedicated', name, net, receivers: nums[0], size: nums[1] };
    case 'all':
      if (nums.length !== 2 || nums[0] < 2) bad();
      return { kind: 'all', name, net, clients: nums[0], size: nums[1] };
    case 'rooms':
      // TCP line clients only (the room is named by a first line); every room needs a sender and a receiver.
      if (net !== 'tcp' || nums.length !== 3 || nums[0] < 2 * nums[2]) bad();
      return { kind: 'rooms', name, net, clients: nums[0], size: nums[1], rooms: nums[2] };
    case 'fwd':
      if (net !== 'tcp' || nums.length !== 2 || nums[0] < 2) bad();
      return { kind: 'fwd', name, net, clients: nums[0], size: nums[1] };
    case 'paced':
      if ((nums.length !== 2 && nums.length !== 3) || nums[0] < least) bad();
      return { kind: 'paced', name, net, receivers: nums[0], size: nums[1], rate: nums[2] ?? 1000 };
    case 'mem':
      if (nums.length !== 1 || nums[0] < 2 + (net === 'mix' ? 1 : 0)) bad();
      return { kind: 'mem', name, net, clients: nums[0] };
    case 'hold':
      if (nums.length !== 1 || nums[0] < least) bad();
      return { kind: 'hold', name, net, clients: nums[0] };
    default:
      return bad();
  }
}

/** Whether a peer taking the clients in `nets` can run case `c`. */
export function serves(nets: readonly CaseNet[], c: BenchCase): boolean {
  return nets.includes(c.net);
}

export function parseCases(text: string): BenchCase[] {
  return text
    .split(/[\s,]+/)
    .filter((word) => word !== '')
    .map(parseCase);
}

/** Cases measured on long-running servers, interleaved across peers (the others get a fresh server each). */
export function isThroughput(c: BenchCase): boolean {
  return c.kind === 'dedicated' || c.kind === 'all' || c.kind === 'rooms' || c.kind === 'fwd' || c.kind === 'paced';
}

/**
 * Generator options of a case (besides host, ports, protocols, server PID): its load, and for `ws-` and
 * `mix-` cases how many receivers and dedicated senders speak WebSocket.
 */
export function generatorArgs(c: BenchCase, durationS: number): string[] {
  const load = loadArgs(c, durationS);
  if (c.net === 'tcp') return load;
  const receivers =
    c.kind === 'dedicated' || c.kind === 'paced' ? c.receivers : c.kind === 'mem' ? c.clients - 1 : c.clients;
  const wsReceivers = c.net === 'ws' ? receivers : Math.floor(receivers / 2);
  const wsSenders = c.kind === 'all' || c.net === 'mix' ? 0 : 1;
  return [...load, '--ws-clients', String(wsReceivers), '--ws-senders', String(wsSenders)];
}

function loadArgs(c: BenchCase, durationS: number): string[] {
  switch (c.kind) {
    case 'dedicated':
      return [
        '--mode',
        'dedicated',
        '--clients',
        String(c.receivers),
        '--senders',
        '1',
        '--size',
        String(c.size),
        '--duration',
        String(durationS),
      ];
    case 'all':
    case 'fwd':
      return allArgs(c.clients, c.size, durationS);
    case 'cluster':
      return [...allArgs(c.clients, c.size, durationS), ...(c.rate > 0 ? ['--rate', String(c.rate)] : [])];
    case 'rooms':
      return [...allArgs(c.clients, c.size, durationS), '--rooms', String(c.rooms)];
    case 'paced':
      return [
        '--mode',
        'dedicated',
        '--clients',
        String(c.receivers),
        '--senders',
        '1',
        '--size',
        String(c.size),
        '--rate',
        String(c.rate),
        '--window',
        String(c.rate),
        '--duration',
        String(durationS),
      ];
    case 'mem':
      // The sender is one of the N connections: N-1 receivers + 1 sender.
      return [
        '--mode',
        'dedicated',
        '--clients',
        String(c.clients - 1),
        '--senders',
        '1',
        '--size',
        '64',
        '--duration',
        '0',
        '--hold',
        '1',
      ];
    case 'hold':
      return [
        '--mode',
        'dedicated',
        '--clients',
        String(c.clients),
        '--senders',
        '1',
        '--size',
        '64',
        '--duration',
        String(durationS),
        '--hold',
        '0.5',
        '--idle-timeout',
        '10',
      ];
  }
}

/** The generator options of N clients all sending B-byte lines. */
function allArgs(clients: number, size: number, durationS: number): string[] {
  return [
    '--mode',
    'all',
    '--clients',
    String(clients),
    '--size',
    String(size),
    '--window',
    String(ALL_WINDOW),
    '--batch',
    String(ALL_BATCH),
    '--duration',
    String(durationS),
  ];
}

/** Connections a case opens. */
export function connectionsOf(c: BenchCase): number {
  switch (c.kind) {
    case 'dedicated':
    case 'paced':
      return c.receivers + 1;
    case 'all':
    case 'rooms':
    case 'fwd':
    case 'mem':
    case 'cluster':
      return c.clients;
    case 'hold':
      return c.clients + 1;
  }
}

/** Above this many connections, peers that accept slowly are cut down (see PeerSpec.slowAccept). */
export const SLOW_ACCEPT_CONNECTIONS = 200;
