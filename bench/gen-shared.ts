/** What the generator's coordinator and its worker threads share: configuration, memory layout, messages. */
import { cpus } from 'node:os';
import type { ProtocolName } from './protocols';

export type GenMode = 'all' | 'dedicated';

/** How WebSocket clients are made: the generator's own codec (cheap), or the `ws` / socket.io-client packages. */
export type WsClientKind = 'own' | 'library';

export interface GenConfig {
  readonly host: string;
  readonly port: number;
  readonly proto: ProtocolName;
  /** `dedicated`: separate sender connections; `all`: every receiving client also sends. */
  readonly mode: GenMode;
  readonly receivers: number;
  /** Senders (in `all` mode, equal to receivers). */
  readonly senders: number;
  /** Bytes per message, newline included. */
  readonly size: number;
  /**
   * All-mode: clients spread over this many rooms (client i in room i % rooms, named by a first line
   * `/room <n>`), each message meant for the other members of its sender's room only; 0: one room of all.
   */
  readonly rooms: number;
  /** Most messages a sender may be ahead of the slowest of its receivers; 0: no limit. */
  readonly window: number;
  /** Most messages a sender writes per event-loop turn; 0: as many as the window allows. */
  readonly batch: number;
  /** Messages per second per sender; 0: as fast as the window allows. */
  readonly rate: number;
  /** How long senders send; 0: no measured run (connect, warm up, hold, leave). */
  readonly durationMs: number;
  /** Connecting, handshakes and warm-up must be done within this long. */
  readonly setupTimeoutMs: number;
  /** Give up when no delivery arrives for this long. */
  readonly idleTimeoutMs: number;
  /** After warm-up, hold the connections idle this long, then read the server's RSS. */
  readonly holdMs: number;
  /** The server's PIDs (every process of a cluster: nodes and broker), for CPU time and RSS; empty if unknown. */
  readonly serverPids: readonly number[];
  /** Lines come back as `nick: <message>`: check what follows the first `: `. */
  readonly stripPrefix: boolean;
  readonly workers: number;
  /** Connections a worker has in progress at once while connecting. */
  readonly connectConcurrency: number;
  readonly tag: string;
  /** Protocol of the WebSocket clients (`ws-text`, `ws-binary`, `socketio`); null: every client speaks `proto`. */
  readonly wsProto: ProtocolName | null;
  /** Port of the WebSocket clients (the same as `port` unless the server has one of each). */
  readonly wsPort: number;
  /**
   * A cluster: the TCP port of each node (`port` is the first), and of its WebSocket clients; client i
   * (all-mode) or receiver i is on node {@link nodeOf}. One node: `[port]` and `[wsPort]`.
   */
  readonly ports: readonly number[];
  readonly wsPorts: readonly number[];
  /** Receivers (all-mode: clients) that speak WebSocket: the first `wsClients`; the others speak `proto`. */
  readonly wsClients: number;
  /** Dedicated senders that speak WebSocket: the first `wsSenders`. */
  readonly wsSenders: number;
  readonly wsClient: WsClientKind;
}

/** The settings a result repeats, to tell which run it is of. */
export type GenIdentity = Pick<
  GenConfig,
  'tag' | 'proto' | 'mode' | 'receivers' | 'senders' | 'size' | 'window' | 'batch' | 'rate' | 'workers'
>;

/** Generator threads when not told: two, or one on a single core. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(2, cpus().length));
}

/** The room of client (or sender) `index` when there are `rooms` rooms (0: everyone in room 0). */
export function roomOf(index: number, rooms: number): number {
  return rooms > 0 ? index % rooms : 0;
}

/** Clients in room `room` of `rooms` among `clients` (all of them when there are no rooms). */
export function roomSize(room: number, rooms: number, clients: number): number {
  return rooms > 0 ? Math.floor(clients / rooms) + (room < clients % rooms ? 1 : 0) : clients;
}

/** The line that puts a client in room `room` (the first thing it sends). */
export function roomLine(room: number): string {
  return `/room ${room}\n`;
}

/** Sentinel of an empty minimum (a worker with no receiver of that sender). */
export const NO_MINIMUM = 0x7fffffff;

/** Shared memory: written by workers with Atomics, read by everyone. */
export interface SharedBuffers {
  /** [worker * senders + sender]: the fewest messages of that sender any of the worker's receivers has. */
  readonly localMin: SharedArrayBuffer;
  /** [sender]: messages sent so far. */
  readonly sent: SharedArrayBuffer;
  /** [worker]: deliveries counted so far. */
  readonly delivered: SharedArrayBuffer;
  /** [worker]: receivers that got a warm-up message. */
  readonly warm: SharedArrayBuffer;
  /** [worker]: bumped (and notified) when another worker's progress may let this worker's senders go on. */
  readonly wake: SharedArrayBuffer;
  /** [worker]: time of the last delivery, ns since the epoch (Float64). */
  readonly lastRx: SharedArrayBuffer;
}

export interface SharedViews {
  readonly localMin: Int32Array;
  readonly sent: Int32Array;
  readonly delivered: Int32Array;
  readonly warm: Int32Array;
  readonly wake: Int32Array;
  readonly lastRx: Float64Array;
}

export function allocateShared(workers: number, senders: number): SharedBuffers {
  const ints = (n: number): SharedArrayBuffer => new SharedArrayBuffer(4 * n);
  return {
    localMin: ints(workers * senders),
    sent: ints(senders),
    delivered: ints(workers),
    warm: ints(workers),
    wake: ints(workers),
    lastRx: new SharedArrayBuffer(8 * workers),
  };
}

export function viewsOf(buffers: SharedBuffers): SharedViews {
  return {
    localMin: new Int32Array(buffers.localMin),
    sent: new Int32Array(buffers.sent),
    delivered: new Int32Array(buffers.delivered),
    warm: new Int32Array(buffers.warm),
    wake: new Int32Array(buffers.wake),
    lastRx: new Float64Array(buffers.lastRx),
  };
}

/** The worker thread's `workerData`. */
export interface WorkerInit {
  readonly config: GenConfig;
  readonly index: number;
  /** process.hrtime.bigint() of the generator's epoch, as a decimal string. */
  readonly epochNs: string;
  readonly shared: SharedBuffers;
}

/** The node of client (all-mode) or receiver `index` of `clients` on `nodes` nodes: the first share on node 0. */
export function nodeOf(index: number, clients: number, nodes: number): number {
  return Math.min(nodes - 1, Math.floor((index * nodes) / clients));
}

/** Which worker owns a client index (receiver and, in `all` mode, its sender) or a sender. */
export function ownerOf(index: number, workers: number): number {
  return index % workers;
}

export type CoordinatorMessage =
  | { readonly type: 'warmup'; readonly on: boolean }
  | { readonly type: 'run'; readonly startNs: number }
  | { readonly type: 'stop' }
  | { readonly type: 'finish' };

export interface WorkerStats {
  readonly deliveries: number;
  /** A sequence number past the one expected: a message lost (or reordered). */
  readonly gaps: number;
  /** A sequence number before the one expected: a duplicate (or reordered). */
  readonly backsteps: number;
  readonly malformed: number;
  /** Own messages a subscriber got back (Redis), not counted. */
  readonly selfDeliveries: number;
  /** Messages sent that a receiver never got. */
  readonly lost: number;
  /** Connections the server closed or reset. */
  readonly serverClosed: number;
  readonly errors: readonly string[];
  readonly histogram: Uint32Array;
  readonly maxUs: number;
  /** On a cluster: latency of deliveries from a sender on another node, and on the receiver's own node. */
  readonly crossHistogram: Uint32Array;
  readonly sameHistogram: Uint32Array;
}

export type WorkerMessage =
  | { readonly type: 'connected' }
  | { readonly type: 'stopped' }
  | { readonly type: 'result'; readonly stats: WorkerStats }
  | { readonly type: 'fatal'; readonly message: string };
